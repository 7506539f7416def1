"""The model rules: the seam between Snakemake and the model library.

One function per rule, named after it (the contract: ``core.logs.rule_entry``).
"""

from pathlib import Path

import yaml

from mirsafety.core.logs import rule_entry
from mirsafety.models import tiny


@rule_entry
def build_tiny_model(smk) -> None:
    spec = yaml.safe_load(Path(smk.input.spec).read_text())
    tiny.build_tiny_model(smk.wildcards.tiny, spec, Path(smk.output.config).parent)
