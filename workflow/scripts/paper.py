"""Rule `paper`: compile paper/main.tex with the generated figures and tables (latexmk)."""

from pathlib import Path

from mirsafety.core import logs
from mirsafety.render.paper import build_paper

logs.to_file(snakemake.log[0])
build_paper(Path(snakemake.input.tex).parent, "results", snakemake.output.pdf)
