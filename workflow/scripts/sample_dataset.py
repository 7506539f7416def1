"""Rule `sample_dataset`: draw the embedded offline dataset in the hub's parquet format."""
from mirsafety.data.rules import sample_dataset

sample_dataset(snakemake)  # noqa: F821 - injected by Snakemake
