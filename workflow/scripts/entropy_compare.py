"""Rule `entropy_compare`: safe vs unsafe entropy per model, across models, and per layer."""

from mirsafety.core import logs
from mirsafety.entropy.comparison import write_comparison

logs.to_file(snakemake.log[0])
write_comparison(snakemake.input.entropy, snakemake.input.judgments, snakemake.params.metric,
                 snakemake.output.comparison, snakemake.output.layers, snakemake.output.mixed)
