"""Safe vs unsafe entropy statistics against direct computations."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu

from mirsafety.entropy.comparison import (
    bootstrap_diff,
    cliffs_delta,
    comparison_table,
    layer_profile,
    mixed_model,
)


def synthetic(shift=-0.1, n=40, models=("a", "b", "c"), seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for m, model in enumerate(models):
        for k in range(n):
            unsafe = k % 2
            value = 0.5 + 0.05 * m + shift * unsafe + rng.normal(0, 0.02)
            rows.append({"model": model, "uid": f"{model}{k}", "unsafe": unsafe,
                         "label": "unsafe" if unsafe else "safe", "entropy": value,
                         "entropy_all_norm": [value - 0.01, value + 0.01],
                         "layers": [0, 2] if model == "c" else [0, 1]})  # c skips layer 1
    return pd.DataFrame(rows)


def test_cliffs_delta_by_hand():
    assert cliffs_delta([3, 4], [1, 2]) == 1.0
    assert cliffs_delta([1, 2], [1, 2]) == 0.0
    assert cliffs_delta([1, 3], [2]) == 0.0  # one pair above, one below


def test_per_model_comparison_matches_scipy_and_finds_the_shift():
    frame = synthetic()
    table = comparison_table(frame).set_index("model")
    group = frame[frame["model"] == "a"]
    u = mannwhitneyu(group.loc[group.unsafe == 1, "entropy"], group.loc[group.unsafe == 0, "entropy"])
    assert table.loc["a", "mwu_u"] == u.statistic and table.loc["a", "mwu_p"] == u.pvalue
    assert table.loc["a", "diff"] == pytest.approx(-0.1, abs=0.02)
    assert table.loc["a", "diff_ci_low"] < -0.1 < table.loc["a", "diff_ci_high"] + 0.02
    assert table.loc["a", "cliffs_delta"] == -1.0
    assert (table["n_safe"] == 20).all() and (table["n_unsafe"] == 20).all()


def test_bootstrap_is_deterministic_with_its_seed():
    assert bootstrap_diff([1, 2, 3], [0, 1], seed=4) == bootstrap_diff([1, 2, 3], [0, 1], seed=4)


def test_model_without_unsafe_answers_has_no_test():
    frame = synthetic()
    frame = frame[~((frame["model"] == "c") & (frame["unsafe"] == 1))]
    row = comparison_table(frame).set_index("model").loc["c"]
    assert row["n_unsafe"] == 0 and np.isnan(row["mwu_p"])


def test_mixed_model_recovers_the_shift_despite_model_baselines():
    fit = mixed_model(synthetic(shift=-0.1)).iloc[0]
    assert fit["coef_unsafe"] == pytest.approx(-0.1, abs=0.01)
    assert fit["ci_low"] < -0.1 < fit["ci_high"] and fit["p"] < 1e-6
    assert fit["n_models"] == 3 and fit["n_answers"] == 120


def test_mixed_model_needs_two_usable_models():
    fit = mixed_model(synthetic(models=("a",))).iloc[0]
    assert np.isnan(fit["coef_unsafe"]) and "two or more models" in fit["note"]


def test_layer_profile():
    profile = layer_profile(synthetic(), "entropy_all_norm")
    assert set(profile[profile["model"] == "a"]["layer"]) == {0, 1}
    assert set(profile[profile["model"] == "c"]["layer"]) == {0, 2}  # the model's own numbers
    assert len(profile) == 3 * 2 * 2
