"""Rule `judge_vs_people`: precision, recall and kappa of every judge against people's labels."""
from mirsafety.analysis.rules import judge_vs_people

judge_vs_people(snakemake)  # noqa: F821 - injected by Snakemake
