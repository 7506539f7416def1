"""Rule `judge_agreement`: Cohen's kappa and confusion counts for every pair of judges."""

from mirsafety.core import logs
from mirsafety.analysis.asr import agreement, load_judgments

logs.to_file(snakemake.log[0])
frame = load_judgments(snakemake.input.judgments, snakemake.input.instances)
frames = {judge: group for judge, group in frame.groupby("judge")}
agreement(frames).to_csv(snakemake.output[0], index=False, float_format="%.6f")
