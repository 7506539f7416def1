"""The analysis rules: the seam between Snakemake and the analysis library.

One function per rule, named after it (the contract: ``core.logs.rule_entry``).
"""

import logging
from collections import defaultdict

import pandas as pd

from mirsafety.analysis import audit
from mirsafety.analysis.asr import (
    agreement,
    asr_tables,
    check_complete,
    check_same_dataset,
    load_judgments,
    safe_kind_shares,
    seed_macro,
)
from mirsafety.analysis.conditions import by_condition, paired_table
from mirsafety.analysis.correlation import correlation_table, group_correlation_table, lofo_table
from mirsafety.analysis.power import power_table
from mirsafety.core.logs import rule_entry
from mirsafety.core.records import read_jsonl

#: How every table of this stage is written.
CSV = {"index": False, "float_format": "%.6f"}


def _judgments_by_judge(paths) -> dict[str, list[dict]]:
    judgments = defaultdict(list)
    for path in paths:
        for record in read_jsonl(path):
            judgments[record["judge"]].append(record)
    return dict(judgments)


@rule_entry
def asr(smk) -> None:
    check_same_dataset(smk.input.metas)
    everything = load_judgments(smk.input.judgments, smk.input.instances)
    check_complete(everything, len(read_jsonl(smk.input.instances)))
    by_condition(everything).to_csv(smk.output.conditions, **CSV)
    paired_table(everything).to_csv(smk.output.paired, **CSV)
    frame = everything[everything["condition"] == "multi_image"]
    asr_tables(frame).to_csv(smk.output.asr, **CSV)
    seed_macro(frame).to_csv(smk.output.seed_macro, **CSV)
    safe_kind_shares(frame).to_csv(smk.output.safe_kinds, **CSV)
    logging.getLogger("asr").info("label counts: %s", frame["label"].value_counts().to_dict())


@rule_entry
def judge_agreement(smk) -> None:
    frame = load_judgments(smk.input.judgments, smk.input.instances)
    frames = {judge: group for judge, group in frame.groupby("judge")}
    agreement(frames).to_csv(smk.output[0], **CSV)


@rule_entry
def correlation(smk) -> None:
    asr_frame = pd.read_csv(smk.input.asr)
    capability = pd.read_csv(smk.input.capability)
    info = pd.DataFrame(smk.params.model_info, columns=["model", "family", "params_b"])
    judge = smk.wildcards.judge
    stats = {"n_perm": smk.params.n_perm, "seed": smk.params.seed}
    correlation_table(asr_frame, capability, info, judge, n_boot=smk.params.n_boot,
                      **stats).to_csv(smk.output.table, **CSV)
    group_correlation_table(asr_frame, capability, smk.params.primary_capability, judge,
                            **stats).to_csv(smk.output.groups, **CSV)
    lofo_table(asr_frame, capability, info, judge).to_csv(smk.output.lofo, **CSV)


@rule_entry
def power(smk) -> None:
    """The permutation null has as many orderings as the correlation stage's test."""
    settings = smk.params.power
    power_table(pd.read_csv(smk.input.asr), pd.read_csv(smk.input.capability),
                pd.read_csv(smk.input.correlation), smk.params.primary_capability,
                rhos=settings["rhos"], max_models=settings["max_models"],
                study_models=settings["study_models"],
                study_instances=settings["study_instances"],
                study_items=settings["study_items"], n_sims=settings["n_sims"],
                n_null=smk.params.n_perm, seed=smk.params.seed).to_csv(smk.output.table, **CSV)


@rule_entry
def audit_sample(smk) -> None:
    judgments = _judgments_by_judge(smk.input.judgments)
    generations = [r for path in smk.input.generations for r in read_jsonl(path)]
    rows = audit.draw_audit_sample(read_jsonl(smk.input.instances), generations, judgments,
                                   per_stratum=smk.params.per_stratum,
                                   disagreement_boost=smk.params.disagreement_boost,
                                   seed=smk.params.seed)
    audit.write_audit_csv(rows, smk.output.sheet)
    audit.write_key_csv(audit.audit_key(rows, judgments), smk.output.key)


@rule_entry
def zoo_audit_labels(smk) -> None:
    """The sheet filled from the zoo's truth; rows of models outside the zoo stay blank."""
    rows = audit.read_sheet(smk.input.sheet)
    labelled = audit.truth_labels(rows, pd.read_csv(smk.input.truth, dtype=str))
    audit.write_audit_csv(labelled, smk.output.labels, comments=(audit.TRUTH_HEADER,))
    blank = sum(not row["human_label"] for row in labelled)
    logging.getLogger("audit").info("%d of %d sampled answers labelled from the zoo's truth",
                                    len(rows) - blank, len(rows))


@rule_entry
def judge_vs_people(smk) -> None:
    """Scored on the sample as drawn (the key), per judge and per judge × stratum: sampled
    answers without a label are counted as missing (all of them before people label any)."""
    judgments = _judgments_by_judge(smk.input.judgments)
    key = pd.read_csv(smk.input.key)
    labels = (audit.read_labels(smk.input.labels, strict=True)[0] if smk.input.labels
              else pd.DataFrame(columns=["audit_id", "human_label"]))
    table = audit.judge_vs_people(labels, judgments, key)
    table.to_csv(smk.output[0], **CSV)
    audit.judge_vs_people(labels, judgments, key, by_stratum=True).to_csv(smk.output.strata,
                                                                          **CSV)
    for row in table.itertuples():
        if row.n_missing_label or row.n_labels_outside_sample:
            logging.getLogger("audit").warning("%s: %s", row.judge, row.note)
