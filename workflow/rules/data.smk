"""Stage 1, data: the embedded sample, the hub download, and prepare (any source -> one form)."""

# HF_TOKEN is checked when a run starts (onstart), not when the workflow is parsed, so a dry run,
# --lint and --report work without it; when set, it is passed on to remote jobs.
if uses_hub() and "HF_TOKEN" in os.environ:

    envvars:
        "HF_TOKEN",


onstart:
    require_hub_token()


rule sample_dataset:
    input:
        spec=config["sample"]["spec"],
    output:
        parquet="results/raw/sample/data/train-00000-of-00001.parquet",
    log:
        "logs/data/sample_dataset.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/sample_dataset.py"


rule download_dataset:
    output:
        snapshot=directory(HUB_SNAPSHOT),
    log:
        "logs/data/download_dataset.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=180,
    params:
        repo_id=config["dataset"]["repo_id"],
        revision=config["dataset"]["revision"],
        split=config["dataset"]["split"],
    script:
        "../scripts/download_dataset.py"


rule prepare_dataset:
    input:
        source=dataset_source_input,
    output:
        instances="results/data/{dataset}/instances.jsonl",
        images=directory("results/data/{dataset}/images"),
        manifest="results/data/{dataset}/manifest.json",
    log:
        "logs/data/prepare_{dataset}.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        source_dir=dataset_source_dir,
        split=lambda w: dataset_settings(w)["split"],
        expected=lambda w: dataset_settings(w)["expected"],
        enforce_counts=lambda w: dataset_settings(w)["enforce_counts"],
        provenance=lambda w: dataset_settings(w)["provenance"],
        max_image_pixels=config["dataset"]["max_image_pixels"],
    script:
        "../scripts/prepare_dataset.py"
