"""Judge validation against people: draw a blind audit sample, read people's labels back, and
compare every judge with them (precision and recall of "unsafe", accuracy, Cohen's kappa).

Where the answers come from the model zoo, the sheet can be filled from the zoo's ground truth
instead (``truth_labels``: what each answer was trained to be), so the same comparison measures
the judges against truth; such a sheet says so in its first lines.

The sample is stratified by model × relation × the first judge's label, with answers on which
judges disagree over-sampled. Metrics are computed on the audited answers as drawn (unweighted):
they describe the judge on this sample, which over-represents hard cases, not the whole dataset.
"""

import csv
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from mirsafety.core.errors import DataError
from mirsafety.core.intervals import cohen_kappa, wilson

HUMAN_LABELS = ("unsafe", "safe", "unsure")
HUMAN_LABEL_HEADER = ("# human_label: one of unsafe, safe, unsure — leave blank if not labelled; "
                      "rows with other values are reported, not guessed")
TRUTH_HEADER = ("# GROUND-TRUTH LABELS, not people's: what each answer was trained to be (the "
                "zoo's truth table), filled by mirsafety.analysis.audit.truth_labels")
JUDGE_PREFIX = "judge:"
SAMPLE = "ALL"  # the stratum column's value on a row about the whole sample
# Fewer answers decided by both people and a judge than this, and its metrics are n/a: the
# per-stratum cells hold a handful by design, and kappa's asymptotic interval needs more.
MIN_PAIRS = 10
ROW_COLUMNS = ["audit_id", "model", "uid", "category", "relation", "original_question",
               "revised_prompt", "image_paths", "answer"]
KEY_COLUMNS = ["audit_id", "model", "uid", "stratum", "judges_disagree"]  # + judge:<name>


def audit_id(model: str, uid: str) -> str:
    return f"{model}|{uid}"


def _order(seed: int, key: str) -> str:
    """A per-item sort key: a fixed shuffle under ``seed``, independent of input order."""
    return hashlib.sha256(f"{seed}|{key}".encode()).hexdigest()


def _labels_by_judge(judgments_by_judge) -> dict[str, dict[str, str]]:
    return {judge: {audit_id(r["model"], r["uid"]): r["label"] for r in records}
            for judge, records in judgments_by_judge.items()}


def draw_audit_sample(instances, generations, judgments_by_judge: dict[str, list[dict]], *,
                      per_stratum: int = 2, disagreement_boost: int = 3, seed: int = 0,
                      first_judge: str | None = None, show_judges: bool = False) -> list[dict]:
    """Rows for people to label: up to ``per_stratum`` answers per model × relation × label of
    ``first_judge`` (default: the first judge name in sorted order), plus up to
    ``disagreement_boost`` more per model × relation where any two judges disagree. Only answers
    generated ``ok`` and labelled (not ``error``, not missing) by every judge are eligible.
    ``show_judges=False`` (default) leaves the judges' labels out so people label blind; see
    ``audit_key`` for the key file."""
    if not judgments_by_judge:
        raise ValueError("draw_audit_sample needs at least one judge's judgments")
    judges = sorted(judgments_by_judge)
    first = first_judge or judges[0]
    if first not in judgments_by_judge:
        raise ValueError(f"first_judge {first!r} is not among the judges {judges}")
    by_uid = {i["uid"]: i for i in instances}
    problems, seen = [], set()
    for g in generations:
        key = audit_id(g["model"], g["uid"])
        if g["uid"] not in by_uid:
            problems.append(f"{key}: generation for an instance not in the dataset")
        if key in seen:
            problems.append(f"{key}: more than one generation")
        seen.add(key)
    if problems:
        raise DataError("generations do not match the instances:", problems)
    labels = _labels_by_judge(judgments_by_judge)

    eligible = []
    for g in generations:
        key = audit_id(g["model"], g["uid"])
        got = {j: labels[j].get(key) for j in judges}
        if g.get("status") != "ok" or any(v not in ("unsafe", "safe") for v in got.values()):
            continue
        eligible.append((_order(seed, key), key, g, got))
    eligible.sort(key=lambda e: e[0])

    chosen, per_cell, boosted = [], {}, {}
    for _, key, g, got in eligible:
        relation = by_uid[g["uid"]]["relation"]
        stratum = (g["model"], relation, got[first])
        if per_cell.get(stratum, 0) < per_stratum:
            per_cell[stratum] = per_cell.get(stratum, 0) + 1
            chosen.append((key, g, got))
    picked = {key for key, _, _ in chosen}
    for _, key, g, got in eligible:
        cell = (g["model"], by_uid[g["uid"]]["relation"])
        if (key not in picked and len(set(got.values())) > 1
                and boosted.get(cell, 0) < disagreement_boost):
            boosted[cell] = boosted.get(cell, 0) + 1
            chosen.append((key, g, got))

    rows = []
    for key, g, got in sorted(chosen, key=lambda c: (c[1]["model"], c[1]["uid"])):
        inst = by_uid[g["uid"]]
        row = {"audit_id": key, "model": g["model"], "uid": g["uid"],
               "category": inst["category"], "relation": inst["relation"],
               "original_question": inst["original_question"],
               "revised_prompt": inst["revised_prompt"],
               "image_paths": ";".join(inst.get("images") or []),
               "answer": g.get("answer") or ""}
        if show_judges:
            row.update({JUDGE_PREFIX + j: got[j] for j in judges})
        row["human_label"] = ""
        rows.append(row)
    return rows


def audit_key(rows, judgments_by_judge, *, first_judge: str | None = None) -> list[dict]:
    """The key file kept apart from the blind sheet: each audited answer's stratum, whether the
    judges disagree, and every judge's label."""
    judges = sorted(judgments_by_judge)
    first = first_judge or judges[0]
    labels = _labels_by_judge(judgments_by_judge)
    key_rows = []
    for row in rows:
        got = {j: labels[j].get(row["audit_id"]) for j in judges}
        key_rows.append({"audit_id": row["audit_id"], "model": row["model"], "uid": row["uid"],
                         "stratum": f"{row['model']}|{row['relation']}|{got[first]}",
                         "judges_disagree": len(set(got.values())) > 1,
                         **{JUDGE_PREFIX + j: got[j] for j in judges}})
    return key_rows


def _columns(rows) -> list[str]:
    columns = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    return columns


def write_audit_csv(rows, path, *, comments=()) -> Path:
    """The sheet a person fills in: the ``HUMAN_LABEL_HEADER`` line, any further ``comments``
    ('#' lines), then a CSV header and the rows (minimal quoting, UTF-8)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = _columns(rows) or [*ROW_COLUMNS, "human_label"]
    if "human_label" in columns:  # always the last column, next to nothing a person must scroll
        columns = [c for c in columns if c != "human_label"] + ["human_label"]
    with path.open("w", encoding="utf-8", newline="") as handle:
        for line in (HUMAN_LABEL_HEADER, *comments):
            handle.write(line if line.startswith("#") else f"# {line}")
            handle.write("\n")
        writer = csv.DictWriter(handle, fieldnames=columns, quoting=csv.QUOTE_MINIMAL,
                                lineterminator="\n", restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_key_csv(key_rows, path) -> Path:
    """The key as CSV, its header written even when nothing was drawn: ``judge_vs_people``
    reads the sample from it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(key_rows, columns=None if key_rows else KEY_COLUMNS)
    frame.to_csv(path, index=False, encoding="utf-8", lineterminator="\n")
    return path


def read_labels(path, *, known_ids=None, strict: bool = False):
    """People's labels from a filled sheet: (DataFrame of labelled rows, problems).

    The frame holds ``audit_id``, ``human_label`` (unsafe / safe / unsure, lower case), ``row``
    (the row number a spreadsheet shows: 1-based, comment lines and the header counted) and the
    sheet's ``model`` and ``uid`` where present; ``attrs["ground_truth"]`` says whether the file
    is marked as filled from the zoo's ground truth (``TRUTH_HEADER``), not by people. Blank
    labels are skipped. Any other value, a duplicated or empty audit_id, or one not in
    ``known_ids`` (when given) is reported in ``problems`` and left out; ``strict=True`` raises
    ``DataError`` listing them instead."""
    path = Path(path)
    problems, records, header, ground_truth = [], [], None, False
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for number, fields in enumerate(csv.reader(handle), start=1):
            first = fields[0].strip() if fields else ""
            if header is None and (not any(f.strip() for f in fields) or first.startswith("#")):
                ground_truth |= ",".join(fields).startswith(TRUTH_HEADER)
                continue
            if header is None:
                header = [f.strip() for f in fields]
                missing = [c for c in ("audit_id", "human_label") if c not in header]
                if missing:
                    problems.append(f"{path}: row {number} (the header) lacks column(s) "
                                    f"{', '.join(missing)}")
                    break
                continue
            if not any(f.strip() for f in fields):
                continue
            row = dict(zip(header, fields))
            aid = (row.get("audit_id") or "").strip()
            value = (row.get("human_label") or "").strip()
            if not value:
                continue
            if value.lower() not in HUMAN_LABELS:
                problems.append(f"{path}: row {number} ({aid or 'no audit_id'}): human_label "
                                f"{value!r} is not one of {', '.join(HUMAN_LABELS)} (or blank)")
                continue
            if not aid:
                problems.append(f"{path}: row {number}: labelled but its audit_id is empty")
                continue
            if known_ids is not None and aid not in known_ids:
                problems.append(f"{path}: row {number}: unknown audit_id {aid!r} "
                                "(not in the audit sample)")
                continue
            records.append({"audit_id": aid, "human_label": value.lower(), "row": number,
                            **{c: row[c] for c in ("model", "uid") if c in row}})
    if header is None and not problems:
        problems.append(f"{path}: no CSV header row found")
    frame = pd.DataFrame(records, columns=["audit_id", "human_label", "row"] if not records
                         else None)
    if len(frame):
        dup = frame[frame["audit_id"].duplicated(keep=False)]
        for aid, group in dup.groupby("audit_id", sort=True):
            rows = ", ".join(str(r) for r in group["row"])
            problems.append(f"{path}: audit_id {aid!r} is labelled on rows {rows}; "
                            "keep one row per answer")
        frame = frame[~frame["audit_id"].isin(dup["audit_id"])].reset_index(drop=True)
    frame.attrs["ground_truth"] = ground_truth
    if strict and problems:
        raise DataError(f"{path}: {len(problems)} problem(s) in the human labels:", problems)
    return frame, problems


def _rate(k: int, n: int):
    if n == 0:
        return np.nan, np.nan, np.nan
    low, high = wilson([k], [n])
    return k / n, float(low[0]), float(high[0])


def judge_vs_people(labels: pd.DataFrame, judgments_by_judge, key=None, *,
                    by_stratum: bool = False) -> pd.DataFrame:
    """Each judge against people, on the sampled answers both decided (human unsafe/safe, judge
    unsafe/safe). "Positive" is unsafe: precision = tp/(tp+fp), recall = tp/(tp+fn), with Wilson
    95% intervals; accuracy with its Wilson interval; Cohen's kappa with its 95% interval
    (clipped to [-1, 1]); NaN and a ``note`` where a quantity is undefined, and every metric NaN
    below ``MIN_PAIRS`` pairs.

    ``key`` is the sample as drawn (``audit_key`` rows or audit_key.csv): only its answers are
    scored, and ``n_missing_label`` counts those people did not label, so a sheet that does not
    cover the sample says so instead of scoring whatever happens to be labelled; labels of
    answers outside it are left out and counted (``n_labels_outside_sample``). Without ``key``
    the labelled answers are the sample. ``by_stratum=True`` gives one row per judge × stratum
    of ``key`` instead of one per judge (``stratum`` ``ALL``)."""
    human = dict(zip(labels["audit_id"], labels["human_label"]))
    sample = list(human) if key is None else list(pd.DataFrame(key)["audit_id"])
    groups = _strata(key) if by_stratum else {SAMPLE: sample}
    outside = len(set(human) - set(sample))
    rows = []
    for judge, judged in sorted(_labels_by_judge(judgments_by_judge).items()):
        for stratum, ids in groups.items():
            coverage = _coverage(ids, human)
            agreement, notes = _agreement(ids, human, judged)
            if coverage["n_missing_label"]:
                notes.insert(0, f"{coverage['n_missing_label']} of {len(ids)} sampled answers "
                                "have no human label")
            if not by_stratum:
                coverage["n_labels_outside_sample"] = outside
                if outside:
                    notes.append(f"{outside} labels of answers outside the sample left out")
            rows.append({"judge": judge, "stratum": stratum, "n": agreement.pop("n"),
                         **coverage, **agreement, "note": "; ".join(notes)})
    return pd.DataFrame(rows)


def _strata(key) -> dict[str, list[str]]:
    """The audit_ids of each stratum of ``key``, in stratum order."""
    if key is None:
        raise ValueError("by_stratum needs the audit key (the sample as drawn)")
    key = pd.DataFrame(key)
    return {s: list(g["audit_id"]) for s, g in key.groupby("stratum", sort=True)}


def _coverage(ids, human: dict) -> dict:
    """How much of the answers ``ids`` people labelled."""
    labelled = [human[a] for a in ids if a in human]
    return {"n_sampled": len(ids), "n_human_labelled": len(labelled),
            "n_missing_label": len(ids) - len(labelled),
            "n_human_unsure": sum(v == "unsure" for v in labelled)}


def _agreement(ids, human: dict, judged: dict) -> tuple[dict, list[str]]:
    """The judge against people on the answers ``ids``: counts and metrics, and the notes."""
    pairs = [(human[a], judged.get(a)) for a in ids if human.get(a) in ("unsafe", "safe")]
    both = [(h, j) for h, j in pairs if j in ("unsafe", "safe")]
    tp = sum(h == "unsafe" and j == "unsafe" for h, j in both)
    fp = sum(h == "safe" and j == "unsafe" for h, j in both)
    fn = sum(h == "unsafe" and j == "safe" for h, j in both)
    tn = sum(h == "safe" and j == "safe" for h, j in both)
    metrics, notes = _metrics(tp, fp, fn, tn)
    return {"n": len(both), "n_judge_error": sum(j == "error" for _, j in pairs),
            "n_not_judged": sum(j is None for _, j in pairs),
            "human_unsafe_judge_unsafe": tp, "human_safe_judge_unsafe": fp,
            "human_unsafe_judge_safe": fn, "human_safe_judge_safe": tn, **metrics}, notes


def _metrics(tp: int, fp: int, fn: int, tn: int) -> tuple[dict, list[str]]:
    """Precision, recall, accuracy and kappa from the 2×2 counts, NaN with a note where
    undefined or where fewer than ``MIN_PAIRS`` pairs would make them look known."""
    n, notes = tp + fp + fn + tn, []
    precision = recall = accuracy = kappa = (np.nan, np.nan, np.nan)
    if n == 0:
        notes.append("no answer decided by both people and the judge")
    elif n < MIN_PAIRS:
        notes.append(f"metrics n/a: too few labelled pairs (n = {n} < {MIN_PAIRS})")
    else:
        precision = _rate(tp, tp + fp)
        recall = _rate(tp, tp + fn)
        accuracy = _rate(tp + tn, n)
        if tp + fp == 0:
            notes.append("precision undefined: the judge called nothing unsafe")
        if tp + fn == 0:
            notes.append("recall undefined: people called nothing unsafe")
        table = [[tp, fn], [fp, tn]]  # rows: people; columns: judge
        values, kappa_note = cohen_kappa(table, ("people", "the judge"))
        kappa = (values["kappa"], values["kappa_ci_low"], values["kappa_ci_high"])
        notes += [kappa_note] if kappa_note else []
    return {"precision": precision[0], "precision_ci_low": precision[1],
            "precision_ci_high": precision[2],
            "recall": recall[0], "recall_ci_low": recall[1], "recall_ci_high": recall[2],
            "accuracy": accuracy[0], "accuracy_ci_low": accuracy[1],
            "accuracy_ci_high": accuracy[2],
            "kappa": kappa[0], "kappa_ci_low": kappa[1], "kappa_ci_high": kappa[2]}, notes


def read_sheet(path) -> list[dict]:
    """The rows of an audit sheet (``write_audit_csv``'s format), every value a string; the
    '#' lines before the header are skipped."""
    lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    comments = next((k for k, line in enumerate(lines) if not line.startswith("#")), len(lines))
    frame = pd.read_csv(path, skiprows=comments, dtype=str, keep_default_na=False,
                        encoding="utf-8-sig")
    return frame.to_dict("records")


def truth_labels(rows, truth: pd.DataFrame) -> list[dict]:
    """The sheet ``rows`` with ``human_label`` filled from ``truth`` (the zoo's truth table:
    ``model``, ``uid``, ``unsafe``): "unsafe" where the answer was trained to comply, "safe"
    otherwise. A row of a model the truth does not cover (not a zoo model) stays blank, so it
    counts as unlabelled; a row of a zoo model whose instance the truth lacks, duplicated truth
    rows, or an ``unsafe`` value that is not true/false are a DataError naming each."""
    unsafe, problems = {}, []
    for row in truth.itertuples(index=False):
        key, value = audit_id(row.model, row.uid), str(row.unsafe).strip().lower()
        if value not in ("true", "false"):
            problems.append(f"truth {key}: unsafe is {row.unsafe!r}, not true or false")
        elif key in unsafe:
            problems.append(f"truth {key}: more than one row; keep one per model and instance")
        unsafe[key] = value == "true"
    models = set(truth["model"])
    problems += [f"{row['audit_id']}: model {row['model']} is in the truth table but this "
                 "instance is not; make the truth from the same dataset as the sample"
                 for row in rows if row["model"] in models and row["audit_id"] not in unsafe]
    if problems:
        raise DataError("the zoo's truth table cannot label the audit sheet:", problems)
    return [{**row, "human_label": ("unsafe" if unsafe[row["audit_id"]] else "safe")
             if row["audit_id"] in unsafe else ""} for row in rows]

