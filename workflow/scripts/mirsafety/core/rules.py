"""Rule functions of the core package (the contract: ``core.logs.rule_entry``)."""

import logging
import sys
from pathlib import Path

from mirsafety.core.cost import cost_table, render, write_table
from mirsafety.core.logs import rule_entry


@rule_entry
def cost_report(smk) -> None:
    """Write the GPU-hours table and print it, so the choice is seen before submitting."""
    rows = cost_table(dict(smk.params.models), dict(smk.params.judges), dict(smk.params.run))
    Path(smk.output.table).parent.mkdir(parents=True, exist_ok=True)
    write_table(rows, smk.output.table)
    text = render(rows)
    logging.info("GPU-hours (H100-class):\n%s", text)
    print(text, file=sys.__stdout__)
