"""Stage 4, judging, and the ASR part of stage 7: verdicts per (judge, model, shard), then tables."""


rule build_tiny_judge:
    input:
        spec=config["tiny_models"]["judges_spec"],
    output:
        config="results/models/tiny-judges/{tiny}/config.json",
    log:
        "logs/models/build_judge_{tiny}.log",
    conda:
        "../../envs/judge.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/build_tiny_classifier.py"


rule judge:
    input:
        unpack(judge_inputs),
    output:
        judgments="results/judgments/{judge}/{model}/{condition}/{shard}.jsonl",
        meta="results/judgments/{judge}/{model}/{condition}/{shard}.meta.json",
    params:
        judge=lambda w: config["judges"][w.judge],
        model_dir=lambda w: mir_model_dir(w.model),
    threads: 2
    resources:
        mem_mb=lambda w, attempt: judge_resources(w, attempt)["mem_mb"],
        runtime=lambda w, attempt: judge_resources(w, attempt)["runtime"],
        gpu=lambda w, attempt: judge_resources(w, attempt)["gpu"],
    log:
        "logs/judge/{judge}/{model}/{condition}/{shard}.log",
    conda:
        "../../envs/judge.yaml"
    script:
        "../scripts/judge.py"


rule asr:
    input:
        judgments=lambda w: judgment_outputs(w.judge, conditions="all"),
        metas=lambda w: judgment_outputs(w.judge, "meta", conditions="all"),
        instances=str(Path(dataset_dir(), "instances.jsonl")),
    output:
        asr=report(
            "results/asr/{judge}/asr.csv",
            caption="../report/asr.rst",
            category="Attack success",
        ),
        seed_macro="results/asr/{judge}/seed_macro.csv",
        safe_kinds="results/asr/{judge}/safe_kinds.csv",
        conditions="results/asr/{judge}/asr_by_condition.csv",
        paired="results/asr/{judge}/conditions_paired.csv",
    log:
        "logs/asr/{judge}.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/asr.py"


rule judge_agreement:
    input:
        judgments=[path for judge in config["judges"] for path in judgment_outputs(judge)],
        instances=str(Path(dataset_dir(), "instances.jsonl")),
    output:
        report(
            "results/asr/judge_agreement.csv",
            caption="../report/agreement.rst",
            category="Attack success",
        ),
    log:
        "logs/asr/judge_agreement.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/judge_agreement.py"


rule export_mir:
    """Our generations and judgments in the authors' layout, checked against their statics.py."""
    input:
        generations=lambda w: generation_outputs(conditions=["multi_image"]),
        judgments=lambda w: judgment_outputs(w.judge),
        instances=str(Path(dataset_dir(), "instances.jsonl")),
    output:
        export=directory("results/mir_export/{judge}"),
    log:
        "logs/mir_export/{judge}.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/export_mir.py"


rule audit_sample:
    """A blind, stratified sample of answers for people to label, and its key."""
    input:
        instances=str(Path(dataset_dir(), "instances.jsonl")),
        generations=lambda w: generation_outputs(conditions=["multi_image"]),
        judgments=[path for judge in config["judges"] for path in judgment_outputs(judge)],
    output:
        sheet="results/audit/audit_sample.csv",
        key="results/audit/audit_key.csv",
    params:
        per_stratum=config["audit"]["per_stratum"],
        disagreement_boost=config["audit"]["disagreement_boost"],
        seed=config["audit"]["seed"],
    log:
        "logs/audit/sample.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/audit_sample.py"


rule judge_vs_people:
    """Every judge against the people's labels: precision, recall, Cohen's kappa."""
    input:
        labels=config["audit"]["labels"] or [],
        judgments=[path for judge in config["judges"] for path in judgment_outputs(judge)],
    output:
        report(
            "results/analysis/judge_vs_people.csv",
            caption="../report/judge_vs_people.rst",
            category="Attack success",
        ),
    log:
        "logs/audit/judge_vs_people.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/judge_vs_people.py"
