"""Rule `download_dataset`: fetch the real benchmark from the hub (token from HF_TOKEN only)."""

from mirsafety.core import logs
from mirsafety.data.hub import download

logs.to_file(snakemake.log[0])
download(
    snakemake.params.repo_id,
    snakemake.params.revision,
    snakemake.params.split,
    snakemake.output.snapshot,
)
