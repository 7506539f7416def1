"""Rule `build_tiny_classifier`: build one tiny offline judge of resources/tiny_judges.yaml."""

from pathlib import Path

import yaml
from mirsafety.core import logs
from mirsafety.judging.tiny_classifier import build_tiny_classifier

logs.to_file(snakemake.log[0])
spec = yaml.safe_load(Path(snakemake.input.spec).read_text())
build_tiny_classifier(spec, Path(snakemake.output.config).parent, name=snakemake.wildcards.tiny)
