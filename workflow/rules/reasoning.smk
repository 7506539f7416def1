"""Stage 6, reasoning capability: measured on a benchmark with known answers, and published."""


rule reasoning_set:
    input:
        unpack(reasoning_set_inputs),
    output:
        item_list="results/reasoning/set/items.jsonl",
    log:
        "logs/reasoning/set.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        benchmark=config["reasoning"]["benchmark"],
    script:
        "../scripts/reasoning_set.py"


rule reasoning_generate:
    input:
        unpack(reasoning_generate_inputs),
    output:
        summary="results/reasoning/models/{model}/summary.json",
        records="results/reasoning/models/{model}/records.jsonl",
    log:
        "logs/reasoning/{model}.log",
    conda:
        generation_env
    threads: model_threads
    resources:
        mem_mb=lambda w, attempt: reasoning_resources(w, attempt)["mem_mb"],
        runtime=lambda w, attempt: reasoning_resources(w, attempt)["runtime"],
        gpu=lambda w, attempt: reasoning_resources(w, attempt)["gpu"],
    params:
        model=lambda w: reasoning_model_entry(w.model),
    script:
        "../scripts/reasoning_generate.py"


rule capability:
    input:
        summaries=expand(rules.reasoning_generate.output.summary, model=reasoning_models()),
        scores=config["reasoning"]["published_scores"],
        sources=config["reasoning"]["published_sources"],
        aliases=config["reasoning"]["model_aliases"],
    output:
        table=report(
            "results/reasoning/capability.csv",
            caption="../report/capability.rst",
            category="Reasoning capability",
        ),
        unmatched="results/reasoning/unmatched.json",
    log:
        "logs/reasoning/capability.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        models=list(config["models"]),
    script:
        "../scripts/capability.py"
