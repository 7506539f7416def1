"""Rule `build_tiny_judge`: build one tiny offline judge of resources/tiny_judges.yaml."""
from mirsafety.judging.rules import build_tiny_judge

build_tiny_judge(snakemake)  # noqa: F821 - injected by Snakemake
