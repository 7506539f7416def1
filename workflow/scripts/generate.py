"""Rule `generate`: one model over one shard of the prepared instances (resumable)."""
from mirsafety.generation.rules import generate

generate(snakemake)  # noqa: F821 - injected by Snakemake
