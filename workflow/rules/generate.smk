"""Stages 2-3, models and generation: tiny offline models, then one job per model, condition and shard."""


rule build_tiny_model:
    input:
        spec=config["tiny_models"]["spec"],
    output:
        config="results/models/tiny/{tiny}/config.json",
    log:
        "logs/models/build_{tiny}.log",
    conda:
        "../../envs/generate.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/build_tiny_model.py"


rule generate:
    input:
        unpack(generation_inputs),
    output:
        shard="results/generations/{model}/{condition}/{shard}.jsonl",
        meta="results/generations/{model}/{condition}/{shard}.meta.json",
    log:
        "logs/generate/{model}/{condition}/{shard}.log",
    conda:
        generation_env
    threads: model_threads
    resources:
        mem_mb=lambda w, attempt: shard_resources(w, attempt)["mem_mb"],
        runtime=lambda w, attempt: shard_resources(w, attempt)["runtime"],
        gpu=lambda w, attempt: shard_resources(w, attempt)["gpu"],
    params:
        model=lambda w: config["models"][w.model],
        condition=lambda w: w.condition,
        dataset_dir=lambda w: dataset_dir(),
    script:
        "../scripts/generate.py"
