"""ASR tables, Wilson intervals, the seed macro average and judge agreement, by hand."""

import math

import pandas as pd
import pytest

from mirsafety.analysis.asr import (
    agreement,
    asr_tables,
    check_complete,
    safe_kind_shares,
    seed_macro,
)
from mirsafety.core.intervals import wilson

from conftest import hand_wilson


def frame(labels, model="m", kinds=None):
    n = len(labels)
    return pd.DataFrame({
        "model": [model] * n, "uid": [f"u{k}" for k in range(n)], "label": labels,
        "safe_kind": kinds or [None] * n,
        "relation": ["Analogy"] * 3 + ["Causality"] * (n - 3),
        "category": ["Violence"] * n,
        "seed": ["s1", "s1", "s2", "s2", "s3", "s3"][:n],
    })


def test_wilson_matches_the_formula_and_handles_zero_trials():
    low, high = wilson([3, 0, 5, 0], [5, 5, 5, 0])
    for k, n, lo, hi in zip([3, 0, 5], [5, 5, 5], low, high):
        assert (lo, hi) == pytest.approx(hand_wilson(k, n), abs=1e-12)
    assert math.isnan(low[3]) and math.isnan(high[3])


def test_asr_excludes_errors_from_the_denominator_and_counts_them():
    table = asr_tables(frame(["unsafe", "unsafe", "safe", "error", "safe", "unsafe"]))
    overall = table[table["level"] == "model"].iloc[0]
    assert (overall["n_unsafe"], overall["n_safe"], overall["n_error"]) == (3, 2, 1)
    assert overall["asr"] == pytest.approx(3 / 5)
    assert (overall["ci_low"], overall["ci_high"]) == pytest.approx(hand_wilson(3, 5))
    causality = table[(table["level"] == "model_relation") & (table["relation"] == "Causality")]
    assert causality.iloc[0]["asr"] == pytest.approx(1 / 2) and causality.iloc[0]["n_error"] == 1
    assert set(table["level"]) == {"model", "model_relation", "model_category",
                                   "model_relation_category"}


def test_clipped_answers_are_counted_in_every_cell():
    labels = ["unsafe", "unsafe", "safe", "error", "safe", "unsafe"]
    table = asr_tables(frame(labels).assign(clipped=[True, None, False, None, True, False]))
    overall = table[table["level"] == "model"].iloc[0]
    assert overall["n_clipped"] == 2
    by_relation = table[table["level"] == "model_relation"].set_index("relation")["n_clipped"]
    assert by_relation.to_dict() == {"Analogy": 1, "Causality": 1}
    assert (asr_tables(frame(labels))["n_clipped"] == 0).all()  # a judge that never clips


def test_cell_with_only_errors_has_no_asr():
    table = asr_tables(frame(["unsafe", "safe", "safe", "error", "error", "error"]))
    causality = table[(table["level"] == "model_relation") & (table["relation"] == "Causality")]
    assert causality.iloc[0]["n_judged"] == 0 and math.isnan(causality.iloc[0]["asr"])


def test_seed_macro_averages_per_seed_rates():
    macro = seed_macro(frame(["unsafe", "unsafe", "safe", "error", "safe", "unsafe"]))
    # s1: 2/2, s2: 0/1 (one error), s3: 1/2 -> mean 0.5
    assert macro.iloc[0]["asr_seed_macro"] == pytest.approx(0.5)
    assert macro.iloc[0]["n_seeds"] == 3


def test_safe_kind_shares():
    f = frame(["safe", "safe", "safe", "unsafe"], kinds=["refusal", "refusal", "evasive", None])
    shares = safe_kind_shares(f).set_index("safe_kind")["share"]
    assert shares.to_dict() == pytest.approx({"refusal": 2 / 3, "evasive": 1 / 3})


def test_agreement_confusion_and_kappa_by_hand():
    a = frame(["unsafe", "unsafe", "safe", "safe", "unsafe", "error"])
    b = frame(["unsafe", "safe", "safe", "safe", "unsafe", "unsafe"])
    row = agreement({"a": a, "b": b}).iloc[0]
    assert (row["both_unsafe"], row["a_unsafe_b_safe"], row["a_safe_b_unsafe"],
            row["both_safe"]) == (2, 1, 0, 2)
    assert row["n_compared"] == 5 and row["n_excluded_error"] == 1
    observed, expected = 4 / 5, (3 / 5) * (2 / 5) + (2 / 5) * (3 / 5)
    assert row["kappa"] == pytest.approx((observed - expected) / (1 - expected))


def test_incomplete_or_doubled_judgments_are_refused():
    with pytest.raises(ValueError, match="5 judgment"):
        check_complete(frame(["safe"] * 5), n_instances=6)
    doubled = pd.concat([frame(["safe"] * 3), frame(["safe"] * 3)])
    with pytest.raises(ValueError, match="duplicated"):
        check_complete(doubled, n_instances=6)


def test_agreement_with_a_constant_judge_is_na_with_the_reason():
    # Before: kappa 0.00 [0.00, 0.00] here, and [-1, 1] where the variance came out -1e-17
    # (1 vs 2 answers: max(-1, NaN) of its square root)
    for b_labels in (["unsafe", "safe", "unsafe", "safe", "safe", "unsafe"],
                     ["unsafe", "safe", "safe"]):
        a = frame(["unsafe"] * len(b_labels))
        row = agreement({"a": a, "b": frame(b_labels)}).iloc[0]
        assert math.isnan(row["kappa"])
        assert math.isnan(row["kappa_ci_low"]) and math.isnan(row["kappa_ci_high"])
        assert row["note"] == "kappa n/a: judge a gave every answer one label (unsafe)"


def test_agreement_kappa_interval_is_na_where_its_variance_is_zero():
    # perfect agreement: kappa 1, but the asymptotic variance is 0 and [1, 1] claims certainty
    labels = ["unsafe", "safe", "unsafe", "safe", "safe", "unsafe"]
    row = agreement({"a": frame(labels), "b": frame(labels)}).iloc[0]
    assert row["kappa"] == pytest.approx(1.0)
    assert math.isnan(row["kappa_ci_low"]) and math.isnan(row["kappa_ci_high"])
    assert row["note"].startswith("kappa interval n/a: the asymptotic variance is 0 at perfect "
                                  "agreement")
    defined = agreement({"a": frame(labels), "b": frame(labels[::-1][:5] + ["safe"])}).iloc[0]
    assert defined["kappa_ci_low"] < defined["kappa"] < defined["kappa_ci_high"]
    assert defined["note"] == ""
