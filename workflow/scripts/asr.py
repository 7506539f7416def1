"""Rule `asr`: ASR tables with Wilson intervals, the per-seed macro average, safe-answer kinds."""
from mirsafety.analysis.rules import asr

asr(snakemake)  # noqa: F821 - injected by Snakemake
