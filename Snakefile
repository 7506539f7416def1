"""MIR-SafetyBench as a workflow: data -> generation -> judging -> entropy -> analysis -> paper.

snakemake --cores 2                       # the embedded offline default (config.yaml)
snakemake results/data/sample/manifest.json
"""

# config.yaml is the default; a --configfile replaces it instead of being merged into it, so a
# study config never inherits the default run's tiny models.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/judge.smk"
include: "workflow/rules/entropy.smk"
include: "workflow/rules/reasoning.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/interop.smk"
include: "workflow/rules/render.smk"
include: "workflow/rules/cost.smk"


rule all:
    default_target: True
    input:
        dataset_manifest(),
        generation_outputs(),
        analysis_outputs(),
        zoo_outputs(),
        final_outputs(),
