"""Rule `paper`: compile paper/main.tex with the generated figures and tables (latexmk)."""
from mirsafety.render.rules import paper

paper(snakemake)  # noqa: F821 - injected by Snakemake
