"""Rule `train_zoo_model`: train one zoo model of resources/zoo.yaml on CPU."""
from mirsafety.models.rules import train_zoo_model

train_zoo_model(snakemake)  # noqa: F821 - injected by Snakemake
