"""Rule `reasoning_set`: the reasoning items with known answers (embedded set or MuirBench)."""

from pathlib import Path

from mirsafety.core import logs
from mirsafety.reasoning.item_set import load_spec, read_muirbench, write_reasoning_set

logs.to_file(snakemake.log[0])
set_dir = Path(snakemake.output.item_list).parent
if snakemake.params.benchmark == "muirbench":
    read_muirbench(snakemake.input.source, set_dir)
else:
    write_reasoning_set(load_spec(snakemake.input.spec), set_dir)
