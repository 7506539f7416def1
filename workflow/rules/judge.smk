"""Stage 4, judging: a verdict for every answer, per (judge, model, condition, shard)."""


rule build_tiny_judge:
    """The HarmBench stand-in, trained on the zoo's answer texts (a spec change retrains it)."""
    input:
        spec=config["tiny_models"]["judges_spec"],
        zoo=config["zoo"]["spec"],
        sample=config["sample"]["spec"],
        prompt="resources/harmbench_cls_prompt.txt",
        prompt_contextual="resources/harmbench_cls_prompt_contextual.txt",
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
    log:
        "logs/judge/{judge}/{model}/{condition}/{shard}.log",
    conda:
        "../../envs/judge.yaml"
    threads: judge_threads
    resources:
        mem_mb=lambda w, attempt: judge_resources(w, attempt)["mem_mb"],
        runtime=lambda w, attempt: judge_resources(w, attempt)["runtime"],
        gpu=lambda w, attempt: judge_resources(w, attempt)["gpu"],
    params:
        judge=lambda w: config["judges"][w.judge],
        model_dir=lambda w: mir_model_dir(w.model),
    script:
        "../scripts/judge.py"
