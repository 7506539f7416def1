"""Rule `sample_dataset`: draw the embedded offline dataset in the hub's parquet format."""

import logging
from pathlib import Path

import yaml
from mirsafety.core import logs
from mirsafety.data.sample import write_sample

logs.to_file(snakemake.log[0])
spec = yaml.safe_load(Path(snakemake.input.spec).read_text())
path = write_sample(spec, Path(snakemake.output.parquet).parents[1])
logging.getLogger("sample_dataset").info("wrote %s", path)
