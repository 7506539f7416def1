"""MIR-SafetyBench as a workflow: data -> generation -> judging -> entropy -> analysis -> paper.

    snakemake --cores 2                       # the embedded offline default (config.yaml)
    snakemake results/data/sample/manifest.json
"""


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"


rule all:
    input:
        dataset_manifest(),
    default_target: True
