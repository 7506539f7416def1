"""The interop rule: the seam between Snakemake and the MIR interop library.

One function per rule, named after it (the contract: ``core.logs.rule_entry``).
"""

from mirsafety.core.logs import rule_entry
from mirsafety.core.records import read_jsonl
from mirsafety.interop.mir_export import export_and_check


@rule_entry
def export_mir(smk) -> None:
    export_and_check(
        [r for path in smk.input.generations for r in read_jsonl(path)],
        [r for path in smk.input.judgments for r in read_jsonl(path)],
        read_jsonl(smk.input.instances),
        smk.output.export,
    )
