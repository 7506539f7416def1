"""The paper's controls: each condition's ASR beside the multi-image benchmark, on the same items.

A condition's effect is measured on the instances both conditions decided (neither ``error``):
the paired difference of ASR, McNemar's exact test on the discordant pairs, and a bootstrap
interval that resamples those pairs - so a condition is never compared on other instances.
"""

import numpy as np
import pandas as pd
from statsmodels.stats.contingency_tables import mcnemar

from mirsafety.analysis.asr import asr_table
from mirsafety.core.taxonomy import ALL

BASELINE = "multi_image"


def by_condition(frame: pd.DataFrame) -> pd.DataFrame:
    """ASR per model and condition (and per relation), Wilson intervals, errors counted."""
    overall = asr_table(frame, ["model", "condition"]).assign(relation=ALL)
    per_relation = asr_table(frame, ["model", "condition", "relation"])
    columns = ["model", "condition", "relation", "n_unsafe", "n_safe", "n_error", "n_judged",
               "asr", "ci_low", "ci_high"]
    return pd.concat([overall, per_relation], ignore_index=True)[columns]


def paired_bootstrap(baseline, other, *, n_boot=2000, seed=0) -> tuple[float, float]:
    """Percentile 95% interval of mean(other) − mean(baseline), resampling pairs."""
    baseline, other = np.asarray(baseline, float), np.asarray(other, float)
    picks = np.random.default_rng(seed).integers(0, len(baseline), (n_boot, len(baseline)))
    draws = other[picks].mean(1) - baseline[picks].mean(1)
    return float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def compare_pairs(baseline, other, *, n_boot=2000, seed=0) -> dict:
    """Paired comparison of two 0/1 unsafe vectors over the same instances."""
    baseline, other = np.asarray(baseline, int), np.asarray(other, int)
    n = len(baseline)
    row = {"n_pairs": n, "asr_baseline": np.nan, "asr_condition": np.nan, "diff": np.nan,
           "diff_ci_low": np.nan, "diff_ci_high": np.nan, "only_baseline_unsafe": 0,
           "only_condition_unsafe": 0, "mcnemar_p": np.nan}
    if n == 0:
        return row
    b = int(((baseline == 1) & (other == 0)).sum())
    c = int(((baseline == 0) & (other == 1)).sum())
    table = [[int(((baseline == 1) & (other == 1)).sum()), b],
             [c, int(((baseline == 0) & (other == 0)).sum())]]
    low, high = paired_bootstrap(baseline, other, n_boot=n_boot, seed=seed)
    row.update(asr_baseline=baseline.mean(), asr_condition=other.mean(),
               diff=other.mean() - baseline.mean(), diff_ci_low=low, diff_ci_high=high,
               only_baseline_unsafe=b, only_condition_unsafe=c,
               mcnemar_p=float(mcnemar(table, exact=True).pvalue))
    return row


def paired_table(frame: pd.DataFrame, *, n_boot=2000, seed=0) -> pd.DataFrame:
    """Every non-baseline condition against multi_image, per model, overall and per relation."""
    decided = frame[frame["label"] != "error"].assign(unsafe=lambda f: f["label"] == "unsafe")
    wide = decided.pivot_table(index=["model", "relation", "uid"], columns="condition",
                               values="unsafe", aggfunc="first")
    rows = []
    for condition in [c for c in wide.columns if c != BASELINE]:
        if BASELINE not in wide:
            break
        pairs = wide[[BASELINE, condition]].dropna().reset_index()
        for model, group in pairs.groupby("model"):
            scopes = [(ALL, group)] + list(group.groupby("relation"))
            for relation, part in scopes:
                rows.append({"model": model, "condition": condition, "relation": relation,
                             **compare_pairs(part[BASELINE], part[condition], n_boot=n_boot,
                                             seed=seed)})
    columns = ["model", "condition", "relation", "n_pairs", "asr_baseline", "asr_condition",
               "diff", "diff_ci_low", "diff_ci_high", "only_baseline_unsafe",
               "only_condition_unsafe", "mcnemar_p"]
    return pd.DataFrame(rows, columns=columns)
