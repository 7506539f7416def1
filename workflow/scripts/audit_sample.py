"""Rule `audit_sample`: the blind sheet people label, and the key with the judges' labels."""
from mirsafety.analysis.rules import audit_sample

audit_sample(snakemake)  # noqa: F821 - injected by Snakemake
