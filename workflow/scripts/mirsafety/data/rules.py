"""The data rules: the seam between Snakemake and the data library.

One function per rule, named after it (the contract: ``core.logs.rule_entry``).
"""

import logging
from pathlib import Path

import yaml

from mirsafety.core.logs import rule_entry
from mirsafety.data.hub import download
from mirsafety.data.prepare import prepare
from mirsafety.data.sample import write_sample


@rule_entry
def sample_dataset(smk) -> None:
    spec = yaml.safe_load(Path(smk.input.spec).read_text())
    path = write_sample(spec, Path(smk.output.parquet).parents[1])
    logging.getLogger("sample_dataset").info("wrote %s", path)


@rule_entry
def download_dataset(smk) -> None:
    download(smk.params.repo_id, smk.params.revision, smk.params.split, smk.output.snapshot)


@rule_entry
def prepare_dataset(smk) -> None:
    prepare(
        smk.params.source_dir,
        Path(smk.output.manifest).parent,
        dataset=smk.wildcards.dataset,
        split=smk.params.split,
        max_image_pixels=smk.params.max_image_pixels,
        expected=smk.params.expected,
        enforce_counts=smk.params.enforce_counts,
        provenance=smk.params.provenance,
    )
