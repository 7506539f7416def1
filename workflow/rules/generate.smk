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


rule train_zoo_model:
    """A zoo model: its base tiny model trained on CPU to answer as the zoo spec plants (the
    sample's attack prompts under every condition, a held-out draw of the reasoning tasks)."""
    input:
        unpack(train_zoo_inputs),
    output:
        config="results/models/zoo/{zoo}/config.json",
    log:
        "logs/models/train_{zoo}.log",
    conda:
        "../../envs/generate.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=15,
    params:
        model=lambda w: zoo_registry_entry(w.zoo),
    script:
        "../scripts/train_zoo_model.py"


rule zoo_truth:
    """The zoo's ground truth: what each registered zoo model was trained to answer on each
    instance (behaviour, and unsafe = it complies)."""
    input:
        spec=config["zoo"]["spec"],
        instances=str(Path(dataset_dir(), "instances.jsonl")),
        manifest=dataset_manifest(),
    output:
        truth="results/zoo/truth.csv",
    log:
        "logs/models/zoo_truth.log",
    conda:
        "../../envs/generate.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        models=lambda w: zoo_models(),
    script:
        "../scripts/zoo_truth.py"


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
