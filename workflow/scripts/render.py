"""Rule `render`: every figure, LaTeX table and quoted number, from the analysis tables."""
from mirsafety.render.rules import render

render(snakemake)  # noqa: F821 - injected by Snakemake
