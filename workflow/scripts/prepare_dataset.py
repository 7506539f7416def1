"""Rule `prepare_dataset`: validate any source and write instances.jsonl, images/, manifest."""

from pathlib import Path

from mirsafety.core import logs
from mirsafety.data.prepare import prepare

logs.to_file(snakemake.log[0])
prepare(
    snakemake.params.source_dir,
    Path(snakemake.output.manifest).parent,
    dataset=snakemake.wildcards.dataset,
    split=snakemake.params.split,
    max_image_pixels=snakemake.params.max_image_pixels,
    expected=snakemake.params.expected,
    enforce_counts=snakemake.params.enforce_counts,
    provenance=snakemake.params.provenance,
)
