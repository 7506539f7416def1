"""Rule `reasoning_set`: the reasoning items with known answers (embedded set or MuirBench)."""
from mirsafety.reasoning.rules import reasoning_set

reasoning_set(snakemake)  # noqa: F821 - injected by Snakemake
