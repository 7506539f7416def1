"""Rule `entropy`: attention entropy of every answer of one generation shard."""

from mirsafety.core import logs
from mirsafety.entropy.stage import entropy_shard

logs.to_file(snakemake.log[0])
entropy_shard(
    model_name=snakemake.wildcards.model,
    model=snakemake.params.model,
    options=snakemake.params.options,
    generations_path=snakemake.input.generations,
    instances_path=snakemake.input.instances,
    dataset_dir=snakemake.params.dataset_dir,
    out_path=snakemake.output.entropy,
    meta_path=snakemake.output.meta,
    threads=snakemake.threads,
)
