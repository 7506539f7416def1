"""Rule `cost_report`: the run's GPU-hours per model and stage, for both engines."""
from mirsafety.core.rules import cost_report

cost_report(snakemake)  # noqa: F821 - injected by Snakemake
