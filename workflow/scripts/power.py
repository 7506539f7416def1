"""Rule `power`: simulated power of the ASR-capability correlation test."""
from mirsafety.analysis.rules import power

power(snakemake)  # noqa: F821 - injected by Snakemake
