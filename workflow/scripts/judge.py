"""Rule `judge`: one judge over one generation shard."""
from mirsafety.judging.rules import judge

judge(snakemake)  # noqa: F821 - injected by Snakemake
