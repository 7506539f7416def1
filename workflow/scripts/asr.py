"""Rule `asr`: ASR tables with Wilson intervals, the per-seed macro average, safe-answer kinds."""

import logging

from mirsafety.core import logs
from mirsafety.analysis.asr import (
    asr_tables,
    check_complete,
    check_same_dataset,
    load_judgments,
    safe_kind_shares,
    seed_macro,
)
from mirsafety.analysis.conditions import by_condition, paired_table
from mirsafety.core.records import read_jsonl

logs.to_file(snakemake.log[0])
check_same_dataset(snakemake.input.metas)
everything = load_judgments(snakemake.input.judgments, snakemake.input.instances)
check_complete(everything, len(read_jsonl(snakemake.input.instances)))
by_condition(everything).to_csv(snakemake.output.conditions, index=False, float_format="%.6f")
paired_table(everything).to_csv(snakemake.output.paired, index=False, float_format="%.6f")
frame = everything[everything["condition"] == "multi_image"]
asr_tables(frame).to_csv(snakemake.output.asr, index=False, float_format="%.6f")
seed_macro(frame).to_csv(snakemake.output.seed_macro, index=False, float_format="%.6f")
safe_kind_shares(frame).to_csv(snakemake.output.safe_kinds, index=False, float_format="%.6f")
logging.getLogger("asr").info("label counts: %s", frame["label"].value_counts().to_dict())
