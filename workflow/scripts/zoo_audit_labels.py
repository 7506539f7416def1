"""Rule `zoo_audit_labels`: the audit sheet labelled from the zoo's ground truth."""
from mirsafety.analysis.rules import zoo_audit_labels

zoo_audit_labels(snakemake)  # noqa: F821 - injected by Snakemake
