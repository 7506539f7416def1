"""Stage 7, analysis: ASR tables, judge agreement, the judge audit, and the ASR-reasoning
correlation (per judge). The entropy comparison sits with its stage in entropy.smk."""


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


rule correlation:
    input:
        asr=rules.asr.output.asr,
        capability=rules.capability.output.table,
    output:
        table=report(
            "results/analysis/{judge}/correlation.csv",
            caption="../report/correlation.rst",
            category="ASR and reasoning",
        ),
        groups="results/analysis/{judge}/correlation_groups.csv",
        lofo="results/analysis/{judge}/correlation_lofo.csv",
    log:
        "logs/analysis/correlation_{judge}.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        model_info=lambda w: model_info(),
        primary_capability=lambda w: primary_capability(),
        n_boot=config["analysis"]["n_boot"],
        n_perm=config["analysis"]["n_perm"],
        seed=config["analysis"]["seed"],
    script:
        "../scripts/correlation.py"


rule power:
    """How likely the primary judge's ASR-capability correlation is to be detected, simulated
    from this run's per-model counts (mirsafety/analysis/power.py)."""
    input:
        asr=lambda w: rules.asr.output.asr.format(judge=primary_judge()),
        capability=rules.capability.output.table,
        correlation=lambda w: rules.correlation.output.table.format(judge=primary_judge()),
    output:
        table=report(
            "results/analysis/power.csv",
            caption="../report/power.rst",
            category="ASR and reasoning",
        ),
    log:
        "logs/analysis/power.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        primary_capability=lambda w: primary_capability(),
        power=config["analysis"]["power"],
        n_perm=config["analysis"]["n_perm"],
        seed=config["analysis"]["seed"],
    script:
        "../scripts/power.py"


rule audit_sample:
    """A blind, stratified sample of answers for people to label, and its key."""
    input:
        instances=str(Path(dataset_dir(), "instances.jsonl")),
        generations=lambda w: generation_outputs(conditions=["multi_image"]),
        judgments=[path for judge in config["judges"] for path in judgment_outputs(judge)],
    output:
        sheet="results/audit/audit_sample.csv",
        key="results/audit/audit_key.csv",
    log:
        "logs/audit/sample.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        per_stratum=config["audit"]["per_stratum"],
        disagreement_boost=config["audit"]["disagreement_boost"],
        seed=config["audit"]["seed"],
    script:
        "../scripts/audit_sample.py"


rule zoo_audit_labels:
    """The audit sheet labelled from the zoo's ground truth (what each answer was trained to
    be): the default run's labels, so the judges are measured against truth."""
    input:
        sheet=rules.audit_sample.output.sheet,
        truth=rules.zoo_truth.output.truth,
    output:
        labels="results/zoo/audit_labels.csv",
    log:
        "logs/audit/zoo_labels.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/zoo_audit_labels.py"


rule judge_vs_people:
    """Every judge against the people's labels on the sample drawn: precision, recall, Cohen's
    kappa, and the sampled answers left unlabelled (per judge, and per judge and stratum)."""
    input:
        labels=config["audit"]["labels"] or [],
        key=rules.audit_sample.output.key,
        judgments=[path for judge in config["judges"] for path in judgment_outputs(judge)],
    output:
        report(
            "results/analysis/judge_vs_people.csv",
            caption="../report/judge_vs_people.rst",
            category="Attack success",
        ),
        strata="results/analysis/judge_vs_people_strata.csv",
    log:
        "logs/audit/judge_vs_people.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/judge_vs_people.py"
