"""Rule `export_mir`: generations and judgments in the released MIR code's layout, verified."""

from mirsafety import logs
from mirsafety.mir_interop import export_and_check
from mirsafety.records import read_jsonl

logs.to_file(snakemake.log[0])
export_and_check(
    [r for path in snakemake.input.generations for r in read_jsonl(path)],
    [r for path in snakemake.input.judgments for r in read_jsonl(path)],
    read_jsonl(snakemake.input.instances),
    snakemake.output.export,
)
