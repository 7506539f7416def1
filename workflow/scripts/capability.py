"""Rule `capability`: measured and published capability scores in one long table."""
from mirsafety.reasoning.rules import capability

capability(snakemake)  # noqa: F821 - injected by Snakemake
