"""The authors' layouts: our generations and judgments exported as their released code writes them.

Importing their results needs no rule of its own: it is the generate and judge rules with the
`mir_import` backend and judge kind."""


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
