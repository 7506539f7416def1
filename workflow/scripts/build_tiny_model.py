"""Rule `build_tiny_model`: build one tiny offline model of resources/tiny_models.yaml."""
from mirsafety.models.rules import build_tiny_model

build_tiny_model(snakemake)  # noqa: F821 - injected by Snakemake
