"""Rule `reasoning_generate`: one model answers the reasoning items; scored strictly."""

from pathlib import Path

from mirsafety.core import logs
from mirsafety.reasoning.scores import run_reasoning

logs.to_file(snakemake.log[0])
run_reasoning(
    snakemake.wildcards.model,
    snakemake.params.model,
    Path(snakemake.input.item_list).parent,
    Path(snakemake.output.summary).parent,
    threads=snakemake.threads,
)
