"""Rule `export_mir`: generations and judgments in the released MIR code's layout, verified."""
from mirsafety.interop.rules import export_mir

export_mir(snakemake)  # noqa: F821 - injected by Snakemake
