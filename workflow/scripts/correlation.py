"""Rule `correlation`: ASR against every capability score, per relation and category, and LOFO."""

import pandas as pd

from mirsafety.core import logs
from mirsafety.analysis.correlation import correlation_table, group_correlation_table, lofo_table

logs.to_file(snakemake.log[0])
asr = pd.read_csv(snakemake.input.asr)
capability = pd.read_csv(snakemake.input.capability)
info = pd.DataFrame(snakemake.params.model_info, columns=["model", "family", "params_b"])
judge = snakemake.wildcards.judge
stats = {"n_perm": snakemake.params.n_perm, "seed": snakemake.params.seed}
correlation_table(asr, capability, info, judge, n_boot=snakemake.params.n_boot, **stats).to_csv(
    snakemake.output.table, index=False, float_format="%.6f")
group_correlation_table(asr, capability, snakemake.params.primary_capability, judge,
                        **stats).to_csv(snakemake.output.groups, index=False, float_format="%.6f")
lofo_table(asr, capability, info, judge).to_csv(snakemake.output.lofo, index=False,
                                                float_format="%.6f")
