"""Rule `generate`: one model over one shard of the prepared instances (resumable)."""

from mirsafety.core import logs
from mirsafety.generation.generate import generate_shard

logs.to_file(snakemake.log[0])
generate_shard(
    model_name=snakemake.wildcards.model,
    model=snakemake.params.model,
    shard=snakemake.wildcards.shard,
    instances_path=snakemake.input.instances,
    manifest_path=snakemake.input.manifest,
    dataset_dir=snakemake.params.dataset_dir,
    out_path=snakemake.output.shard,
    meta_path=snakemake.output.meta,
    condition=snakemake.params.condition,
    threads=snakemake.threads,
)
