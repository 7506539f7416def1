"""Rule `entropy_compare`: safe vs unsafe entropy per model, across models, and per layer."""
from mirsafety.entropy.rules import entropy_compare

entropy_compare(snakemake)  # noqa: F821 - injected by Snakemake
