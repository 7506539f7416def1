"""Rule `correlation`: ASR against every capability score, per relation and category, and LOFO."""
from mirsafety.analysis.rules import correlation

correlation(snakemake)  # noqa: F821 - injected by Snakemake
