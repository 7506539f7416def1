"""Rule `build_tiny_model`: build one tiny offline model of resources/tiny_models.yaml."""

from pathlib import Path

import yaml
from mirsafety.core import logs
from mirsafety.models.tiny import build_tiny_model

logs.to_file(snakemake.log[0])
spec = yaml.safe_load(Path(snakemake.input.spec).read_text())
build_tiny_model(snakemake.wildcards.tiny, spec, Path(snakemake.output.config).parent)
