"""Rule `zoo_truth`: what each zoo model was trained to answer on each instance (the known answers)."""
from mirsafety.models.rules import zoo_truth

zoo_truth(snakemake)  # noqa: F821 - injected by Snakemake
