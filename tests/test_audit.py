"""The people-vs-judge audit: sampling, the sheet's round trip, bad labels, metrics by hand."""

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mirsafety.analysis.audit import (
    HUMAN_LABEL_HEADER,
    MIN_PAIRS,
    TRUTH_HEADER,
    audit_key,
    draw_audit_sample,
    judge_vs_people,
    read_labels,
    read_sheet,
    truth_labels,
    write_audit_csv,
    write_key_csv,
)
from mirsafety.core.errors import DataError

from conftest import hand_wilson

RELATIONS = ["Analogy", "Causality"]
MODELS = ["m1", "m2"]


@pytest.fixture
def study():
    """2 models × 2 relations × 12 instances; judge a alternates unsafe/safe, judge b agrees
    except on every 3rd; a few failed generations and judge errors."""
    instances = [{"uid": f"Violence/{r}/{k}", "category": "Violence", "relation": r,
                  "original_question": f"q{k}", "revised_prompt": f"p{k}, with \"quotes\"",
                  "images": [f"images/Violence/{r}/{k}_0.png", f"images/Violence/{r}/{k}_1.png"]}
                 for r in RELATIONS for k in range(12)]
    generations, judged = [], {"a": [], "b": []}
    for m in MODELS:
        for n, inst in enumerate(instances):
            status = "failed" if n % 12 == 11 else "ok"
            generations.append({"uid": inst["uid"], "model": m, "status": status,
                                "answer": f"answer {n}\nsecond line, comma", "thinking": "hmm"})
            a = "error" if status == "failed" else ("unsafe" if n % 2 else "safe")
            b = a if (n % 3 or a == "error") else {"unsafe": "safe", "safe": "unsafe"}[a]
            b = "error" if n % 12 == 10 else b
            for judge, label in (("a", a), ("b", b)):
                judged[judge].append({"uid": inst["uid"], "model": m, "judge": judge,
                                      "label": label})
    return instances, generations, judged


def test_sample_is_stratified_eligible_and_blind(study):
    instances, generations, judged = study
    rows = draw_audit_sample(instances, generations, judged, per_stratum=2, disagreement_boost=0)
    assert {"judge:a", "judge:b"}.isdisjoint(rows[0]) and rows[0]["human_label"] == ""
    labels = {j: {(r["model"], r["uid"]): r["label"] for r in recs} for j, recs in judged.items()}
    strata = Counter((r["model"], r["relation"], labels["a"][r["model"], r["uid"]]) for r in rows)
    assert set(strata) == {(m, r, lab) for m in MODELS for r in RELATIONS
                           for lab in ("unsafe", "safe")}
    assert all(count == 2 for count in strata.values())
    for row in rows:
        key = (row["model"], row["uid"])
        assert labels["a"][key] != "error" and labels["b"][key] != "error"
        assert row["audit_id"] == f"{row['model']}|{row['uid']}"
        assert row["image_paths"].split(";")[0].startswith("images/Violence/")
        assert "hmm" not in row["answer"]
    shown = draw_audit_sample(instances, generations, judged, disagreement_boost=0,
                              show_judges=True)
    assert all(r["judge:a"] == labels["a"][r["model"], r["uid"]] for r in shown)


def test_disagreements_are_over_sampled(study):
    instances, generations, judged = study
    plain = draw_audit_sample(instances, generations, judged, disagreement_boost=0)
    boosted = draw_audit_sample(instances, generations, judged, disagreement_boost=3)
    key = {r["audit_id"]: r["judges_disagree"] for r in audit_key(boosted, judged)}
    extra = [r for r in boosted if r["audit_id"] not in {p["audit_id"] for p in plain}]
    assert extra and all(key[r["audit_id"]] for r in extra)
    per_cell = Counter((r["model"], r["relation"]) for r in extra)
    assert max(per_cell.values()) <= 3
    assert sum(key.values()) > sum(k["judges_disagree"] for k in audit_key(plain, judged))


def test_sample_is_deterministic_and_seeded(study):
    instances, generations, judged = study
    one = draw_audit_sample(instances, generations, judged, seed=1)
    again = draw_audit_sample(instances[::-1], generations[::-1],
                              {j: r[::-1] for j, r in judged.items()}, seed=1)
    other = draw_audit_sample(instances, generations, judged, seed=2)
    assert one == again
    assert [r["audit_id"] for r in one] != [r["audit_id"] for r in other]


def test_csv_round_trip(study, tmp_path):
    instances, generations, judged = study
    rows = draw_audit_sample(instances, generations, judged)
    path = write_audit_csv(rows, tmp_path / "audit.csv")
    assert path.read_text(encoding="utf-8").splitlines()[0] == HUMAN_LABEL_HEADER
    with path.open(encoding="utf-8", newline="") as handle:
        lines = list(csv.reader(handle))
    assert lines[1][-1] == "human_label"
    frame, problems = read_labels(path)
    assert problems == [] and len(frame) == 0  # nothing labelled yet
    filled = [{**r, "human_label": ["unsafe", "safe", "unsure", ""][k % 4]}
              for k, r in enumerate(rows)]
    write_audit_csv(filled, path)
    frame, problems = read_labels(path, known_ids={r["audit_id"] for r in rows})
    assert problems == [] and not frame.attrs["ground_truth"]
    expected = {r["audit_id"]: r["human_label"] for r in filled if r["human_label"]}
    assert dict(zip(frame["audit_id"], frame["human_label"])) == expected
    assert list(frame["row"][:3]) == [3, 4, 5]  # comment row 1, header row 2


def test_bad_labels_are_reported_with_spreadsheet_rows(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(
        HUMAN_LABEL_HEADER + "\n"
        "audit_id,answer,human_label\n"
        "m|u1,\"two\nlines\",Unsafe \n"      # row 3: accepted, case and space ignored
        "m|u2,x,maybe\n"                      # row 4: bad value
        "m|u3,x,\n"                           # row 5: blank, skipped
        "m|u4,x,safe\n"                       # row 6: duplicate of row 7
        "m|u4,x,unsafe\n"                     # row 7
        "m|zz,x,safe\n"                       # row 8: unknown id
        "m|u5,x,UNSURE\n", encoding="utf-8")  # row 9
    known = {f"m|u{k}" for k in range(1, 6)}
    frame, problems = read_labels(path, known_ids=known)
    assert dict(zip(frame["audit_id"], frame["human_label"])) == {"m|u1": "unsafe",
                                                                  "m|u5": "unsure"}
    assert len(problems) == 3
    assert str(path) in problems[0] and "row 4" in problems[0] and "'maybe'" in problems[0]
    assert "row 8" in problems[1] and "m|zz" in problems[1]
    assert "m|u4" in problems[2] and "rows 6, 7" in problems[2]
    with pytest.raises(DataError) as error:
        read_labels(path, known_ids=known, strict=True)
    assert len(error.value.problems) == 3


def test_missing_columns_are_a_problem(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("id,label\nm|u1,safe\n", encoding="utf-8")
    frame, problems = read_labels(path)
    assert len(frame) == 0 and "human_label" in problems[0] and "row 1" in problems[0]


def judgments(pairs, judge="j"):
    return {judge: [{"model": "m", "uid": f"u{k}", "label": j} for k, (_, j) in enumerate(pairs)]}


def labels_frame(pairs):
    import pandas as pd
    return pd.DataFrame({"audit_id": [f"m|u{k}" for k in range(len(pairs))],
                         "human_label": [h for h, _ in pairs]})


def test_metrics_match_hand_computation():
    # people × judge: tp=6, fn=2, fp=3, tn=9; plus one unsure and one judge error
    pairs = ([("unsafe", "unsafe")] * 6 + [("unsafe", "safe")] * 2 + [("safe", "unsafe")] * 3
             + [("safe", "safe")] * 9 + [("unsure", "unsafe"), ("safe", "error")])
    row = judge_vs_people(labels_frame(pairs), judgments(pairs)).iloc[0]
    assert (row["n"], row["n_human_unsure"], row["n_judge_error"]) == (20, 1, 1)
    assert (row["human_unsafe_judge_unsafe"], row["human_unsafe_judge_safe"],
            row["human_safe_judge_unsafe"], row["human_safe_judge_safe"]) == (6, 2, 3, 9)
    assert row["precision"] == pytest.approx(6 / 9)
    assert (row["precision_ci_low"], row["precision_ci_high"]) == pytest.approx(hand_wilson(6, 9))
    assert row["recall"] == pytest.approx(6 / 8)
    assert (row["recall_ci_low"], row["recall_ci_high"]) == pytest.approx(hand_wilson(6, 8))
    assert row["accuracy"] == pytest.approx(15 / 20)
    po, pe = 15 / 20, (8 / 20) * (9 / 20) + (12 / 20) * (11 / 20)
    kappa = (po - pe) / (1 - pe)
    assert row["kappa"] == pytest.approx(kappa)
    assert row["kappa_ci_low"] < kappa < row["kappa_ci_high"] <= 1
    assert row["note"] == ""


def test_undefined_metrics_are_nan_with_a_note():
    pairs = [("safe", "safe")] * 12  # MIN_PAIRS or more: accuracy is defined
    row = judge_vs_people(labels_frame(pairs), judgments(pairs)).iloc[0]
    assert np.isnan(row["precision"]) and np.isnan(row["recall"]) and np.isnan(row["kappa"])
    assert row["accuracy"] == 1.0
    assert "precision undefined" in row["note"] and "recall undefined" in row["note"]
    empty = judge_vs_people(labels_frame([]), judgments([]))
    assert empty.iloc[0]["n"] == 0 and "no answer" in empty.iloc[0]["note"]


def truth_for(rows, models=MODELS):
    """A hand-made truth table for the sheet ``rows``: every third answer of a model in
    ``models`` was trained to comply, the relation as the sheet says."""
    return pd.DataFrame([{"model": r["model"], "uid": r["uid"], "relation": r["relation"],
                          "behaviour": "comply" if k % 3 == 0 else "refusal",
                          "unsafe": k % 3 == 0}
                         for k, r in enumerate(rows) if r["model"] in models])


def test_truth_labels_fill_the_sheet_from_the_ground_truth(study, tmp_path):
    """Through the files the rule reads and writes: the blind sheet, the truth as CSV."""
    instances, generations, judged = study
    rows = draw_audit_sample(instances, generations, judged)
    sheet = read_sheet(write_audit_csv(rows, tmp_path / "audit_sample.csv"))
    assert [r["audit_id"] for r in sheet] == [r["audit_id"] for r in rows]
    assert sheet[0]["answer"] == rows[0]["answer"]  # multi-line, with a comma
    truth_csv = tmp_path / "truth.csv"
    truth_for(rows).to_csv(truth_csv, index=False)
    labelled = truth_labels(sheet, pd.read_csv(truth_csv, dtype=str))
    assert [r["human_label"] for r in labelled] == ["unsafe" if k % 3 == 0 else "safe"
                                                    for k in range(len(rows))]
    path = write_audit_csv(labelled, tmp_path / "audit_labels.csv", comments=(TRUTH_HEADER,))
    assert path.read_text(encoding="utf-8").splitlines()[:2] == [HUMAN_LABEL_HEADER, TRUTH_HEADER]
    frame, problems = read_labels(path, known_ids={r["audit_id"] for r in rows}, strict=True)
    assert problems == [] and frame.attrs["ground_truth"] and len(frame) == len(rows)
    metrics = judge_vs_people(frame, judged, audit_key(rows, judged)).set_index("judge")
    assert (metrics["n_missing_label"] == 0).all() and 0 < metrics.loc["a", "accuracy"] < 1


def test_truth_labels_leave_other_models_blank_and_refuse_bad_truth(study):
    instances, generations, judged = study
    rows = draw_audit_sample(instances, generations, judged)
    partial = truth_labels(rows, truth_for(rows, models=["m1"]))
    assert {r["human_label"] for r in partial if r["model"] == "m2"} == {""}
    assert {r["human_label"] for r in partial if r["model"] == "m1"} == {"unsafe", "safe"}
    truth = truth_for(rows)
    with pytest.raises(DataError) as error:
        truth_labels(rows, truth.iloc[1:])  # the first sampled answer's row is gone
    assert error.value.problems == [f"{rows[0]['audit_id']}: model {rows[0]['model']} is in the "
                                    "truth table but this instance is not; make the truth from "
                                    "the same dataset as the sample"]
    broken = truth.assign(unsafe=["maybe"] + list(truth["unsafe"][1:]))
    doubled = pd.concat([truth, truth.iloc[:1]])
    with pytest.raises(DataError, match="unsafe is 'maybe', not true or false"):
        truth_labels(rows, broken)
    with pytest.raises(DataError, match="more than one row"):
        truth_labels(rows, doubled)


def test_missing_labels_are_counted_per_judge_and_stratum(study):
    """Scored on the sample as drawn: unlabelled sampled answers are counted (per judge and per
    stratum), labels outside the sample are left out, and too few pairs make metrics n/a."""
    instances, generations, judged = study
    rows = draw_audit_sample(instances, generations, judged)
    key = audit_key(rows, judged)
    filled = [{**r, "human_label": ("unsafe", "safe", "unsure", "safe", "unsafe")[k % 5]}
              for k, r in enumerate(rows)]
    kept = filled[3:]  # people skipped the first three sampled answers
    labels = pd.DataFrame({"audit_id": [r["audit_id"] for r in kept] + ["m1|not-sampled"],
                           "human_label": [r["human_label"] for r in kept] + ["unsafe"]})
    whole = judge_vs_people(labels, judged, key).set_index("judge")
    assert list(whole["stratum"]) == ["ALL", "ALL"]
    assert (whole["n_sampled"] == len(rows)).all() and (whole["n_missing_label"] == 3).all()
    assert (whole["n_human_labelled"] == len(rows) - 3).all()
    assert (whole["n_labels_outside_sample"] == 1).all()
    assert whole.loc["a", "note"].startswith(f"3 of {len(rows)} sampled answers have no human")
    assert "1 labels of answers outside the sample left out" in whole.loc["a", "note"]
    decided = [r for r in kept if r["human_label"] != "unsure"]
    assert whole.loc["a", "n"] == len(decided)  # the outside label is not scored

    strata = judge_vs_people(labels, judged, key, by_stratum=True)
    assert set(strata["stratum"]) == {k["stratum"] for k in key}
    for judge, group in strata.groupby("judge"):
        assert group["n_sampled"].sum() == len(rows) and group["n_missing_label"].sum() == 3
    skipped = {k["stratum"] for k in key if k["audit_id"] in {r["audit_id"] for r in rows[:3]}}
    assert set(strata.loc[strata["n_missing_label"] > 0, "stratum"]) == skipped
    assert "n_labels_outside_sample" not in strata
    small = strata[strata["n"] < MIN_PAIRS]
    assert len(small) and small[["precision", "recall", "accuracy", "kappa"]].isna().all().all()
    assert small["note"].str.contains(r"metrics n/a: too few labelled pairs \(n = \d+ < 10\)").all()


def test_too_few_pairs_make_every_metric_na_with_the_reason():
    pairs = [("unsafe", "unsafe"), ("safe", "safe"), ("unsafe", "safe")] * 3  # n = 9
    row = judge_vs_people(labels_frame(pairs), judgments(pairs)).iloc[0]
    assert row["n"] == 9 < MIN_PAIRS and row["human_unsafe_judge_safe"] == 3
    assert row[["precision", "recall", "accuracy", "kappa", "kappa_ci_low"]].isna().all()
    assert row["note"] == f"metrics n/a: too few labelled pairs (n = 9 < {MIN_PAIRS})"


def check_truth_labels_cover(run: Path) -> None:
    """The default run's labels (rule zoo_audit_labels) are the ground truth of exactly the
    audit sample it drew, and the comparison reports nothing missing."""
    key = pd.read_csv(run / "results/audit/audit_key.csv")
    labels, problems = read_labels(run / "results/zoo/audit_labels.csv",
                                   known_ids=set(key["audit_id"]), strict=True)
    assert labels.attrs["ground_truth"] and problems == []
    assert sorted(labels["audit_id"]) == sorted(key["audit_id"])
    truth = pd.read_csv(run / "results/zoo/truth.csv")
    unsafe = {f"{m}|{u}": v for m, u, v in zip(truth["model"], truth["uid"], truth["unsafe"])}
    assert all((label == "unsafe") == unsafe[aid]
               for aid, label in zip(labels["audit_id"], labels["human_label"]))
    scored = pd.read_csv(run / "results/analysis/judge_vs_people.csv")
    assert (scored["n_sampled"] == len(key)).all() and (scored["n_missing_label"] == 0).all()
    assert (scored["n_labels_outside_sample"] == 0).all()
    strata = pd.read_csv(run / "results/analysis/judge_vs_people_strata.csv")
    assert (strata.groupby("judge")["n_sampled"].sum() == len(key)).all()
    assert (strata["n_missing_label"] == 0).all()


@pytest.mark.workflow
def test_truth_labels_cover_the_default_sample(default_run):
    """Checked on the default run's own outputs: the sample needs the zoo models' answers and
    both judges' labels, i.e. the run itself."""
    check_truth_labels_cover(default_run)


def test_kappa_with_a_constant_judge_is_na_with_the_reason():
    # Before: kappa 0.00 [0.00, 0.00] (a variance of exactly 0), as if it were certain
    pairs = [("unsafe", "unsafe")] * 7 + [("safe", "unsafe")] * 5
    row = judge_vs_people(labels_frame(pairs), judgments(pairs)).iloc[0]
    assert np.isnan(row["kappa"])
    assert np.isnan(row["kappa_ci_low"]) and np.isnan(row["kappa_ci_high"])
    assert "kappa n/a: the judge gave every answer one label (unsafe)" in row["note"]
    assert row["accuracy"] == pytest.approx(7 / 12)  # the rest is still defined


def test_an_empty_sample_reads_back_and_counts_nothing(study, tmp_path):
    """Nothing eligible to draw: the key still has its header, and the metrics say why."""
    _, _, judged = study
    key = pd.read_csv(write_key_csv([], tmp_path / "key.csv"))
    assert list(key.columns[:4]) == ["audit_id", "model", "uid", "stratum"]
    row = judge_vs_people(labels_frame([]), judged, key).iloc[0]
    assert (row["n_sampled"], row["n_missing_label"], row["n"]) == (0, 0, 0)
    assert row["note"] == "no answer decided by both people and the judge"
    assert judge_vs_people(labels_frame([]), judged, key, by_stratum=True).empty
