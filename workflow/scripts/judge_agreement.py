"""Rule `judge_agreement`: Cohen's kappa and confusion counts for every pair of judges."""
from mirsafety.analysis.rules import judge_agreement

judge_agreement(snakemake)  # noqa: F821 - injected by Snakemake
