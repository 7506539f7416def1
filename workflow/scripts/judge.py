"""Rule `judge`: one judge over one generation shard."""

from mirsafety.core import logs
from mirsafety.judging.loop import judge_shard

logs.to_file(snakemake.log[0])
judge_shard(
    judge_name=snakemake.wildcards.judge,
    judge_spec=snakemake.params.judge,
    generations_path=snakemake.input.generations,
    generations_meta_path=snakemake.input.generations_meta,
    instances_path=snakemake.input.instances,
    out_path=snakemake.output.judgments,
    meta_path=snakemake.output.meta,
    model_dir=snakemake.params.model_dir,
    threads=snakemake.threads,
)
