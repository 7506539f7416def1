"""Rule `prepare_dataset`: validate any source and write instances.jsonl, images/, manifest."""
from mirsafety.data.rules import prepare_dataset

prepare_dataset(snakemake)  # noqa: F821 - injected by Snakemake
