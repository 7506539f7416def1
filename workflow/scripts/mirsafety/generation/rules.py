"""The generation rule: the seam between Snakemake and the generation library.

One function per rule, named after it (the contract: ``core.logs.rule_entry``).
"""

from mirsafety.core.logs import rule_entry
from mirsafety.generation.generate import generate_shard
from mirsafety.models.factory import built_weights


@rule_entry
def generate(smk) -> None:
    generate_shard(
        model_name=smk.wildcards.model,
        model=smk.params.model,
        shard=smk.wildcards.shard,
        instances_path=smk.input.instances,
        manifest_path=smk.input.manifest,
        dataset_dir=smk.params.dataset_dir,
        out_path=smk.output.shard,
        meta_path=smk.output.meta,
        condition=smk.params.condition,
        threads=smk.threads,
        built=built_weights(smk.input),
    )
