"""Stage 7, analysis: the ASR-reasoning correlation (per judge) and the entropy comparison."""


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
    params:
        model_info=lambda w: model_info(),
        primary_capability=lambda w: primary_capability(),
        n_boot=config["analysis"]["n_boot"],
        n_perm=config["analysis"]["n_perm"],
        seed=config["analysis"]["seed"],
    log:
        "logs/analysis/correlation_{judge}.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=2000,
        runtime=20,
    script:
        "../scripts/correlation.py"
