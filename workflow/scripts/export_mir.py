"""Rule `export_mir`: generations and judgments in the released MIR code's layout, verified."""

from mirsafety.core import logs
from mirsafety.interop.mir import export_and_check
from mirsafety.core.records import read_jsonl

logs.to_file(snakemake.log[0])
export_and_check(
    [r for path in snakemake.input.generations for r in read_jsonl(path)],
    [r for path in snakemake.input.judgments for r in read_jsonl(path)],
    read_jsonl(snakemake.input.instances),
    snakemake.output.export,
)
