"""What the run costs in GPU-hours, per model and stage, before anything is submitted."""


rule cost_report:
    output:
        table="results/cost/gpu_hours.csv",
    log:
        "logs/cost/gpu_hours.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        models=config["models"],
        judges=config["judges"],
        run=lambda w: {
            "items": dataset_total(),
            "reasoning_items": reasoning_total(),
            "reasoning_max_new_tokens": config["reasoning"]["max_new_tokens"],
            "entropy_models": entropy_models(),
        },
    script:
        "../scripts/cost_report.py"
