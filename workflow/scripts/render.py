"""Rule `render`: every figure, LaTeX table and quoted number, from the analysis tables."""

from pathlib import Path

import pandas as pd

from mirsafety.core import logs
from mirsafety.render.figures import write_figures
from mirsafety.render.numbers import collect_numbers, write_numbers
from mirsafety.render.tables import write_tables

logs.to_file(snakemake.log[0])
inputs, params = snakemake.input, snakemake.params
frames = {name: pd.read_csv(getattr(inputs, name)) for name in
          ("asr", "safe_kinds", "capability", "correlation", "comparison", "layers",
           "by_condition", "paired", "audit")}
write_figures(Path(snakemake.output.asr_vs_reasoning).parent, frames["asr"],
              frames["capability"], frames["correlation"], frames["safe_kinds"],
              frames["comparison"], frames["layers"], judge=params.judge, primary=params.primary,
              by_condition=frames["by_condition"])
write_tables(Path(snakemake.output.asr_main).parent, frames["asr"], frames["correlation"],
             frames["comparison"], judge=params.judge, paired=frames["paired"],
             audit=frames["audit"])
numbers = collect_numbers(frames["asr"], frames["correlation"], frames["comparison"],
                          frames["capability"], inputs.manifest, safe_kinds=frames["safe_kinds"],
                          judge=params.judge, primary=params.primary)
write_numbers(snakemake.output.numbers, numbers)
