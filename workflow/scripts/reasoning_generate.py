"""Rule `reasoning_generate`: one model answers the reasoning items; scored strictly."""
from mirsafety.reasoning.rules import reasoning_generate

reasoning_generate(snakemake)  # noqa: F821 - injected by Snakemake
