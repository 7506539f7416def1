"""The judging rules: the seam between Snakemake and the judging library.

One function per rule, named after it (the contract: ``core.logs.rule_entry``). The tiny
judges are built here, with the judges, as the tiny models are built with the models. The
builder imports torch and transformers, which a refusal or API judge never needs, so only the
build rule imports it: every judge job would otherwise pay seconds of start-up.
"""

from pathlib import Path

import yaml

from mirsafety.core.logs import rule_entry
from mirsafety.judging.loop import judge_shard
from mirsafety.models.factory import built_weights


@rule_entry
def build_tiny_judge(smk) -> None:
    from mirsafety.judging.harmbench import load_templates
    from mirsafety.judging.tiny_classifier import build_tiny_classifier
    from mirsafety.models.zoo.spec import load_zoo

    spec = yaml.safe_load(Path(smk.input.spec).read_text())
    keywords = yaml.safe_load(Path(smk.input.sample).read_text())["keywords"]
    build_tiny_classifier(spec, Path(smk.output.config).parent, name=smk.wildcards.tiny,
                          zoo=load_zoo(smk.input.zoo), keywords=keywords,
                          templates=load_templates(Path(smk.input.prompt).parent))


@rule_entry
def judge(smk) -> None:
    judge_shard(
        judge_name=smk.wildcards.judge,
        judge_spec=smk.params.judge,
        generations_path=smk.input.generations,
        generations_meta_path=smk.input.generations_meta,
        instances_path=smk.input.instances,
        out_path=smk.output.judgments,
        meta_path=smk.output.meta,
        model_dir=smk.params.model_dir,
        threads=smk.threads,
        built=built_weights(smk.input),
    )
