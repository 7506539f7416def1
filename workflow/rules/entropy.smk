"""Stage 5, entropy: one teacher-forced pass per answer, then safe vs unsafe per judge."""


rule entropy:
    input:
        unpack(entropy_inputs),
    output:
        entropy="results/entropy/{model}/{shard}.jsonl",
        meta="results/entropy/{model}/{shard}.meta.json",
    log:
        "logs/entropy/{model}/{shard}.log",
    conda:
        "../../envs/entropy.yaml"
    threads: model_threads
    resources:
        mem_mb=lambda w, attempt: shard_resources(w, attempt)["mem_mb"],
        runtime=lambda w, attempt: shard_resources(w, attempt)["runtime"],
        gpu=lambda w, attempt: shard_resources(w, attempt)["gpu"],
    params:
        model=lambda w: config["models"][w.model],
        options=lambda w: {k: config["entropy"][k] for k in ("selection", "first_n")},
        dataset_dir=lambda w: dataset_dir(),
    script:
        "../scripts/entropy.py"


rule entropy_compare:
    input:
        entropy=lambda w: entropy_outputs(),
        judgments=lambda w: judgment_outputs(w.judge, models=entropy_models()),
    output:
        comparison=report(
            "results/analysis/{judge}/entropy_comparison.csv",
            caption="../report/entropy_comparison.rst",
            category="Attention entropy",
        ),
        layers="results/analysis/{judge}/entropy_layers.csv",
        mixed="results/analysis/{judge}/entropy_mixed.csv",
    log:
        "logs/analysis/entropy_{judge}.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        metric=config["entropy"]["metric"],
    script:
        "../scripts/entropy_compare.py"
