"""Rule `download_dataset`: fetch the real benchmark from the hub (token from HF_TOKEN only)."""
from mirsafety.data.rules import download_dataset

download_dataset(snakemake)  # noqa: F821 - injected by Snakemake
