"""The render rules: the seam between Snakemake and the render library.

One function per rule, named after it (the contract: ``core.logs.rule_entry``).
"""

from pathlib import Path

import pandas as pd

from mirsafety.core.logs import rule_entry
from mirsafety.render.figures import write_figures
from mirsafety.render.numbers import collect_numbers, write_numbers
from mirsafety.render.paper import build_paper
from mirsafety.render.tables import write_tables

#: The analysis tables the render rule reads, by input name.
FRAMES = ("asr", "safe_kinds", "capability", "correlation", "comparison", "layers",
          "by_condition", "paired", "audit", "power")


@rule_entry
def render(smk) -> None:
    frames = {name: pd.read_csv(getattr(smk.input, name)) for name in FRAMES}
    judge, primary = smk.params.judge, smk.params.primary
    write_figures(Path(smk.output.asr_vs_reasoning).parent, frames["asr"],
                  frames["capability"], frames["correlation"], frames["safe_kinds"],
                  frames["comparison"], frames["layers"], judge=judge, primary=primary,
                  by_condition=frames["by_condition"], power=frames["power"])
    write_tables(Path(smk.output.asr_main).parent, frames["asr"], frames["correlation"],
                 frames["comparison"], judge=judge, paired=frames["paired"],
                 audit=frames["audit"], excluded=smk.params.excluded,
                 no_entropy=smk.params.no_entropy)
    numbers = collect_numbers(frames["asr"], frames["correlation"], frames["comparison"],
                              frames["capability"], smk.input.manifest,
                              safe_kinds=frames["safe_kinds"], judge=judge, primary=primary,
                              power=frames["power"], planted_rho=smk.params.planted_rho)
    write_numbers(smk.output.numbers, numbers)


@rule_entry
def paper(smk) -> None:
    """The generated folder is the one holding ``tables/`` and ``figures/`` (the layout
    ``render.paper.REQUIRED`` names), so it is read off the rule's input tables."""
    build_paper(Path(smk.input.tex).parent, Path(smk.input.tables[0]).parents[1],
                smk.output.pdf)
