"""Correlation statistics checked against scipy/statsmodels and hand computations."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.multitest import multipletests

from mirsafety.analysis import correlation as correlation_module
from mirsafety.analysis.correlation import (
    CORRELATION_COLUMNS,
    GROUP_COLUMNS,
    LOFO_COLUMNS,
    MAX_DEGENERATE_SHARE,
    MIN_MODELS,
    correlate,
    correlation_table,
    group_correlation_table,
    leave_one_family_out,
    lofo_table,
    partial_spearman,
    pc1_capability,
    pc1_rows,
)
from mirsafety.core.notes import undefined_reason
from mirsafety.core.taxonomy import CATEGORIES, RELATIONS

FAST = {"n_boot": 300, "n_perm": 500}


def bivariate(n, rho, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    y = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal(n)
    return x, y


# --------------------------------------------------------------------------- correlate


def test_point_estimates_equal_scipy_including_ties():
    x, y = bivariate(30, 0.5, seed=1)
    x = np.round(x, 1)  # ties in x
    y[:5] = y[0]        # ties in y
    result = correlate(x, y, **FAST)
    assert result["n"] == 30
    assert result["spearman_rho"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert result["pearson_r"] == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    assert result["note"] == ""


def test_permutation_p_matches_scipy_exact_on_small_n():
    # n=7: scipy enumerates all 5040 pairings. Monte Carlo p with 20000 draws has SE
    # sqrt(p(1-p)/20000) <= 0.0036; 5 SE plus the +1 correction (5e-5) bounds the difference.
    x, y = bivariate(7, 0.6, seed=3)
    result = correlate(x, y, n_boot=0, n_perm=20000, seed=0)
    for key, statistic in (("spearman_p_perm", lambda a: stats.spearmanr(a, y).statistic),
                           ("pearson_p_perm", lambda a: stats.pearsonr(a, y).statistic)):
        # scipy's idiom for correlation: permute one sample's pairings, all 7! orders
        exact = stats.permutation_test((x,), statistic, permutation_type="pairings",
                                       n_resamples=np.inf, alternative="two-sided").pvalue
        se = math.sqrt(exact * (1 - exact) / 20000)
        assert abs(result[key] - exact) < 5 * se + 1e-4, (key, result[key], exact)


def test_permutation_p_strong_and_null_against_asymptotic():
    # Strong relation: scipy's t-based p is ~1e-10, so no permutation should reach the observed
    # statistic and the Monte Carlo p is its floor 1/(n_perm + 1).
    n_perm = 5000
    x, y = bivariate(40, 0.8, seed=5)
    strong = correlate(x, y, n_boot=0, n_perm=n_perm, seed=0)
    assert stats.spearmanr(x, y).pvalue < 1e-6 and stats.pearsonr(x, y).pvalue < 1e-6
    assert strong["spearman_p_perm"] == pytest.approx(1 / (n_perm + 1))
    assert strong["pearson_p_perm"] == pytest.approx(1 / (n_perm + 1))
    # No relation (three seeds, scipy p from 0.03 to 0.86): permutation and t-approximation
    # agree up to Monte Carlo error (SE <= 0.5/sqrt(5000) = 0.007, allow 4 SE) plus the
    # t-approximation's own error at n=40 (~0.01).
    for data_seed in (11, 14, 28):
        x, y = bivariate(40, 0.0, seed=data_seed)
        null = correlate(x, y, n_boot=0, n_perm=n_perm, seed=0)
        for key, reference in (("spearman_p_perm", stats.spearmanr(x, y).pvalue),
                               ("pearson_p_perm", stats.pearsonr(x, y).pvalue)):
            assert abs(null[key] - reference) < 4 * 0.5 / math.sqrt(n_perm) + 0.01, \
                (data_seed, key, null[key], reference)


def test_bootstrap_ci_contains_truth_and_is_seeded():
    true_r = 0.6
    true_rho = 6 / math.pi * math.asin(true_r / 2)  # Spearman's rho of a bivariate normal
    x, y = bivariate(150, true_r, seed=2)
    first = correlate(x, y, n_boot=1000, n_perm=200, seed=4)
    assert first["spearman_ci_low"] < true_rho < first["spearman_ci_high"]
    assert first["pearson_ci_low"] < true_r < first["pearson_ci_high"]
    assert first["spearman_ci_low"] < first["spearman_rho"] < first["spearman_ci_high"]
    assert correlate(x, y, n_boot=1000, n_perm=200, seed=4) == first
    other = correlate(x, y, n_boot=1000, n_perm=200, seed=5)
    assert other["spearman_ci_low"] != first["spearman_ci_low"]
    assert other["spearman_rho"] == first["spearman_rho"]


def test_bootstrap_coverage_over_replicates():
    # 40 datasets of 40 models: a 95% interval should cover the truth in most of them
    # (expected ~37; below 32 has probability < 1% even at 90% true coverage).
    true_rho = 6 / math.pi * math.asin(0.5 / 2)
    covered = 0
    for replicate in range(40):
        x, y = bivariate(40, 0.5, seed=100 + replicate)
        result = correlate(x, y, n_boot=400, n_perm=1, seed=replicate)
        covered += result["spearman_ci_low"] < true_rho < result["spearman_ci_high"]
    assert covered >= 32


def test_few_degenerate_resamples_are_left_out_and_counted():
    # 4 of 12 models at x = 1: a resample misses all four with probability (2/3)^12 ~ 0.8%
    x = np.array([0.0] * 8 + [1.0] * 4)
    y = np.linspace(0.1, 0.9, 12)
    result = correlate(x, y, n_boot=2000, n_perm=200, seed=0)
    assert 0 < result["n_boot_degenerate"] <= MAX_DEGENERATE_SHARE * 2000
    assert f"{result['n_boot_degenerate']} of 2000 bootstrap resamples degenerate" in result["note"]
    assert result["spearman_ci_low"] <= result["spearman_rho"] <= result["spearman_ci_high"]
    assert undefined_reason(result["note"], "bootstrap CI") is None


def test_bootstrap_with_many_degenerate_resamples_is_na_with_the_count():
    # The case: one model alone at its capability value, so a third of the resamples
    # miss it; the old code gave rho -0.387 with the interval [-0.640, -0.388], excluding it.
    x = np.r_[np.zeros(18), 1.0]
    y = np.random.default_rng(4).uniform(0, 1, 19)
    y[-1] = 0.05
    result = correlate(x, y, n_boot=2000, n_perm=200, seed=0)
    assert result["spearman_rho"] == pytest.approx(-0.387, abs=1e-3)
    assert result["n_boot_degenerate"] == 690
    for key in ("spearman_ci_low", "spearman_ci_high", "pearson_ci_low", "pearson_ci_high"):
        assert math.isnan(result[key]), key
    assert undefined_reason(result["note"], "bootstrap CI") == (
        "690 of 2000 resamples degenerate (capability or ASR constant), more than 2.5%")
    # every other model shares one capability value: HC3 is 0/0 for the lone one
    assert np.isfinite(result["ols_slope"])
    assert all(math.isnan(result[k]) for k in ("ols_se_hc3", "ols_p", "ols_ci_low"))
    assert "leverage 1" in undefined_reason(result["note"], "OLS SE")


class _FixedResamples:
    """A generator that draws every bootstrap resample from the first four models only."""

    def integers(self, low, high, size):
        return np.tile(np.arange(size[1]) % 4, (size[0], 1))


def test_interval_excluding_its_estimate_is_said():
    x = np.arange(6.0)
    y = np.array([1.0, 2.0, 3.0, 4.0, 0.0, 0.5])  # rho over all six -0.2, over the first four 1
    rho = stats.spearmanr(x, y).statistic
    result, notes = correlation_module._bootstrap_cis(x, y, rho, rho, _FixedResamples(), 100)
    assert result["spearman_ci_low"] == result["spearman_ci_high"] == pytest.approx(1.0)
    assert f"Spearman bootstrap interval [1.000, 1.000] excludes its estimate {rho:.3f}" in notes


def test_ols_hc3_equals_statsmodels_with_a_t_reference():
    x, y = bivariate(25, 0.4, seed=8)
    y = y * (1 + np.abs(x))  # heteroskedastic
    fit = sm.OLS(y, sm.add_constant(x)).fit(cov_type="HC3", use_t=True)
    result = correlate(x, y, **FAST)
    assert result["ols_slope"] == pytest.approx(fit.params[1], rel=1e-12)
    assert result["ols_se_hc3"] == pytest.approx(fit.bse[1], rel=1e-12)
    assert result["ols_p"] == pytest.approx(fit.pvalues[1], rel=1e-10)
    assert [result["ols_ci_low"], result["ols_ci_high"]] == pytest.approx(
        list(fit.conf_int()[1]), rel=1e-12)


def test_ols_p_uses_t_with_n_minus_2_degrees_of_freedom():
    # 19 models: the normal reference would give a p about three times too small
    x, y = bivariate(19, 0.6, seed=2)
    result = correlate(x, y, **FAST)
    t = result["ols_slope"] / result["ols_se_hc3"]
    assert result["ols_p"] == pytest.approx(2 * stats.t.sf(abs(t), 19 - 2), rel=1e-10)
    assert result["ols_p"] > 2 * stats.norm.sf(abs(t)) * 1.5
    half = stats.t.ppf(0.975, 17) * result["ols_se_hc3"]
    assert result["ols_ci_high"] - result["ols_slope"] == pytest.approx(half, rel=1e-10)


@pytest.mark.parametrize("n", range(MIN_MODELS))
def test_below_the_minimum_n_every_statistic_is_na_with_the_reason(n):
    x, y = bivariate(n, 0.9, seed=n)
    result = correlate(x, y, n_boot=2000, n_perm=200)
    assert result["n"] == n
    assert all(math.isnan(result[k]) for k in correlation_module.STATISTICS)
    assert undefined_reason(result["note"], "correlation") == f"fewer than {MIN_MODELS} models"
    at_minimum = correlate(*bivariate(MIN_MODELS, 0.9, seed=0), n_boot=200, n_perm=200)
    assert np.isfinite(at_minimum["spearman_rho"]) and np.isfinite(at_minimum["ols_p"])


def test_small_n_and_constant_give_nan_with_note():
    result = correlate([1.0, 2.0], [0.1, 0.5])
    assert result["n"] == 2
    assert all(math.isnan(result[k]) for k in ("spearman_rho", "pearson_r", "spearman_p_perm",
                                               "spearman_ci_low", "ols_slope", "ols_p"))
    assert "fewer than 5 models" in result["note"]
    # a missing value drops its pair before counting
    assert correlate([1.0, 2.0, np.nan], [0.1, 0.5, 0.3])["n"] == 2
    constant = correlate([1.0, 2.0, 3.0, 4.0, 5.0], [0.2] * 5)
    assert math.isnan(constant["spearman_rho"])
    assert undefined_reason(constant["note"], "correlation") == "ASR constant across models"
    both = correlate([1.0] * 3, [0.2] * 3)  # every reason that holds, the real one included
    assert undefined_reason(both["note"], "correlation") == (
        "fewer than 5 models, capability and ASR constant across models")


# --------------------------------------------------------------------------- partial


def test_partial_spearman_equals_hand_residuals_and_precision_formula():
    rng = np.random.default_rng(9)
    z = rng.standard_normal(30)
    x = z + rng.standard_normal(30)
    y = 0.5 * z + 0.3 * x + rng.standard_normal(30)
    result = partial_spearman(x, y, z)

    rx, ry, rz = stats.rankdata(x), stats.rankdata(y), stats.rankdata(z)
    res_x = rx - np.polyval(np.polyfit(rz, rx, 1), rz)
    res_y = ry - np.polyval(np.polyfit(rz, ry, 1), rz)
    hand = stats.pearsonr(res_x, res_y).statistic
    assert result["rho"] == pytest.approx(hand, abs=1e-12)

    # pingouin-style: from the inverse of the rank correlation matrix
    precision = np.linalg.inv(np.corrcoef([rx, ry, rz]))
    formula = -precision[0, 1] / math.sqrt(precision[0, 0] * precision[1, 1])
    assert result["rho"] == pytest.approx(formula, abs=1e-12)

    df = 30 - 3
    t = hand * math.sqrt(df / (1 - hand**2))
    assert result["p"] == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-10)
    assert result["n"] == 30


def test_partial_spearman_drops_missing_and_needs_the_minimum_n():
    result = partial_spearman([1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 5], [1, 2, np.nan, 4, 6, 5])
    assert result["n"] == 5 and np.isfinite(result["rho"])
    small = partial_spearman([1, 2, 3, 4], [2, 1, 4, 3], [1, 2, 4, 3])
    assert math.isnan(small["rho"]) and small["note"] == "fewer than 5 models"


@pytest.mark.parametrize(("case", "reason"), [
    ("constant x", "capability constant across models"),
    ("constant y", "ASR constant across models"),
    ("z equals x", "capability ranks fully explained by the covariate's ranks"),
    ("z monotone in y", "ASR ranks fully explained by the covariate's ranks"),
])
def test_partial_spearman_is_na_when_nothing_is_left_to_correlate(case, reason):
    # The old code correlated floating-point residue here: rho 0.096 (p 0.71) for a constant
    # capability, 0.16 for a constant ASR, -0.064 for a covariate equal to x.
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(19), rng.standard_normal(19)
    z = np.log10(rng.choice([1, 2, 3, 7, 8, 12, 27, 72], 19))  # parameter counts tie
    x, y, z = {"constant x": (np.full(19, 0.4), y, z), "constant y": (x, np.full(19, 0.3), z),
               "z equals x": (x, y, x.copy()), "z monotone in y": (x, y, np.exp(y))}[case]
    result = partial_spearman(x, y, z)
    assert result["n"] == 19 and math.isnan(result["rho"]) and math.isnan(result["p"])
    assert result["note"] == reason


# --------------------------------------------------------------------------- LOFO and PC1


def test_leave_one_family_out():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"model": [f"m{i}" for i in range(9)],
                       "family": ["a", "a", "a", "b", "b", "c", "c", "c", None],
                       "score": rng.standard_normal(9)})
    df["asr"] = df["score"] + rng.standard_normal(9)
    rows, summary = leave_one_family_out(df)
    assert list(rows["left_out_family"]) == ["a", "b", "c", "unknown"]
    for _, row in rows.iterrows():
        family = None if row["left_out_family"] == "unknown" else row["left_out_family"]
        kept = df[df["family"] != family] if family else df[df["family"].notna()]
        assert row["n_models"] == len(kept)
        assert row["spearman_rho"] == pytest.approx(
            stats.spearmanr(kept["score"], kept["asr"]).statistic, abs=1e-12)
    assert rows.loc[0, "models_left_out"] == "m0;m1;m2"
    assert summary["rho_min"] == rows["spearman_rho"].min()
    assert summary["rho_max"] == rows["spearman_rho"].max()
    assert summary["rho_all"] == pytest.approx(stats.spearmanr(df["score"], df["asr"]).statistic)
    assert rows.loc[rows["spearman_rho"].idxmin(), "left_out_family"] == summary["family_at_min"]


def test_pc1_capability():
    rng = np.random.default_rng(3)
    latent = rng.standard_normal(20)
    wide = pd.DataFrame({"A": 50 + 10 * latent + rng.standard_normal(20),
                         "B": 0.5 + 0.1 * latent + 0.02 * rng.standard_normal(20),
                         "C": -3 * latent + rng.standard_normal(20)},  # reversed scale
                        index=[f"m{i}" for i in range(20)])
    wide["C"] = -wide["C"]
    wide.loc["m0", "B"] = np.nan
    scores, explained = pc1_capability(wide)
    assert "m0" not in scores.index and len(scores) == 19
    complete = wide.dropna()
    z = (complete - complete.mean()) / complete.std()
    eigenvalues = np.linalg.eigvalsh(np.corrcoef(z.to_numpy().T))
    assert explained == pytest.approx(eigenvalues[-1] / eigenvalues.sum(), rel=1e-10)
    assert np.corrcoef(scores, z.mean(axis=1))[0, 1] > 0
    assert np.corrcoef(scores, latent[1:])[0, 1] > 0.95
    # sign is chosen from the data, not from SVD: negating every benchmark flips the scores
    flipped, _ = pc1_capability(-wide)
    assert np.corrcoef(flipped, -z.mean(axis=1))[0, 1] > 0

    long = wide.reset_index(names="model").melt(id_vars="model", var_name="capability",
                                                 value_name="score")
    rows = pc1_rows(long, ["A", "B", "C"])
    assert set(rows["capability"]) == {"derived:pc1"} and len(rows) == 19
    assert rows.set_index("model")["score"][scores.index].to_numpy() == pytest.approx(
        scores.to_numpy())


# --------------------------------------------------------------------------- tables


MODELS = [f"model{i}" for i in range(8)]
FAMILIES = ["f1", "f1", "f2", "f2", "f3", "f3", "f4", "api"]
PARAMS = [2.0, 7.0, 3.0, 8.0, 12.0, 27.0, 10.0, np.nan]


@pytest.fixture
def tables():
    rng = np.random.default_rng(0)
    capability = rng.uniform(0.2, 0.8, len(MODELS))
    rows = []
    for level, relations, categories in (("model", ["ALL"], ["ALL"]),
                                         ("model_relation", RELATIONS, ["ALL"]),
                                         ("model_category", ["ALL"], CATEGORIES)):
        for m, model in enumerate(MODELS):
            for relation in relations:
                for category in categories:
                    asr = float(np.clip(capability[m] + rng.normal(0, 0.1), 0, 1))
                    rows.append({"level": level, "model": model, "relation": relation,
                                 "category": category, "n_unsafe": round(asr * 100),
                                 "n_safe": 100 - round(asr * 100), "n_error": 0,
                                 "n_judged": 100, "asr": asr, "ci_low": np.nan,
                                 "ci_high": np.nan})
    asr = pd.DataFrame(rows)
    cap_rows = []
    for m, model in enumerate(MODELS):
        cap_rows.append({"model": model, "capability": "measured:mir", "score": capability[m]})
        if model not in ("model3", "model6"):  # published scores missing for two models
            cap_rows.append({"model": model, "capability": "published:MuirBench",
                             "score": capability[m] + rng.normal(0, 0.05)})
    cap_rows.append({"model": "outsider", "capability": "published:MuirBench", "score": 0.5})
    capability_table = pd.DataFrame(cap_rows).assign(ci_low=np.nan, ci_high=np.nan,
                                                     n_items=100, source="test")
    info = pd.DataFrame({"model": MODELS, "family": FAMILIES, "params_b": PARAMS})
    return asr, capability_table, info


def test_correlation_table(tables):
    asr, capability, info = tables
    table = correlation_table(asr, capability, info, "judgeX", **FAST)
    assert list(table.columns) == CORRELATION_COLUMNS
    assert (table["n_boot_degenerate"] == 0).all()
    assert list(table["capability"]) == ["measured:mir", "published:MuirBench"]
    measured, published = table.iloc[0], table.iloc[1]
    assert measured["judge"] == "judgeX" and measured["n_models"] == 8
    assert measured["models"] == ";".join(sorted(MODELS))
    model_asr = asr[asr["level"] == "model"].set_index("model")["asr"]
    scores = capability[capability["capability"] == "measured:mir"].set_index("model")["score"]
    assert measured["spearman_rho"] == pytest.approx(
        stats.spearmanr(scores[MODELS], model_asr[MODELS]).statistic, abs=1e-12)
    # the API model has no params_b: left out of the partial correlation and named
    assert measured["n_partial"] == 7
    assert "no params_b (left out of partial): model7" in measured["note"]
    # missing scores are left out and named
    assert published["n_models"] == 6
    assert "model3" not in published["models"].split(";")
    assert "no score: model3, model6" in published["note"]
    assert "score but no ASR: outsider" in published["note"]
    expected = correlate(scores[MODELS], model_asr[MODELS], **FAST)
    assert measured["pearson_p_perm"] == expected["pearson_p_perm"]
    assert measured["ols_se_hc3"] == pytest.approx(expected["ols_se_hc3"])


def test_correlation_table_with_two_models(tables):
    asr, capability, info = tables
    asr = asr[asr["model"].isin(["model0", "model1"])]
    table = correlation_table(asr, capability, info, "j", **FAST)
    assert (table["n_models"] == 2).all()
    assert table["spearman_rho"].isna().all() and table["partial_rho_log_params"].isna().all()
    for note in table["note"]:
        assert undefined_reason(note, "correlation") == "fewer than 5 models"
        assert undefined_reason(note, "partial") == "fewer than 5 models"


def test_correlation_table_constant_capability_gives_no_partial(tables):
    # The issue: with parameter counts present the table showed partial rho 0.194 (p 0.806)
    # beside the note "capability constant across models".
    asr, capability, info = tables
    capability = capability.assign(score=0.5)
    info = info.assign(params_b=[2.0, 7.0, 2.0, 8.0, 12.0, 7.0, 10.0, 70.0])
    row = correlation_table(asr, capability, info, "j", **FAST).iloc[0]
    assert row["n_partial"] == 8
    assert math.isnan(row["partial_rho_log_params"]) and math.isnan(row["partial_p"])
    assert undefined_reason(row["note"], "correlation") == "capability constant across models"
    assert undefined_reason(row["note"], "partial") == "capability constant across models"


def test_duplicate_scores_refused(tables):
    asr, capability, info = tables
    with pytest.raises(ValueError, match="several rows for: model0"):
        correlation_table(asr, pd.concat([capability, capability.iloc[:1]]), info, "j", **FAST)


def test_group_correlation_table_bh_within_group_type(tables):
    asr, capability, _ = tables
    table = group_correlation_table(asr, capability, "measured:mir", "j", n_perm=300)
    assert list(table.columns) == GROUP_COLUMNS
    assert list(table["group"]) == [*RELATIONS, *CATEGORIES]
    assert (table["group_type"] == "relation").sum() == 9
    assert (table["group_type"] == "category").sum() == 6
    for group_type, part in table.groupby("group_type"):
        expected = multipletests(part["p_perm"].to_numpy(), method="fdr_bh")[1]
        assert part["q_fdr"].to_numpy() == pytest.approx(expected)
    scores = capability[capability["capability"] == "measured:mir"].set_index("model")["score"]
    row = asr[(asr["level"] == "model_relation") & (asr["relation"] == "Analogy")]
    assert table.set_index("group").loc["Analogy", "spearman_rho"] == pytest.approx(
        stats.spearmanr(row["model"].map(scores), row["asr"]).statistic)
    # published scores lack two models: fewer models per group, named in the note
    published = group_correlation_table(asr, capability, "published:MuirBench", "j", n_perm=100)
    assert (published["n_models"] == 6).all()
    assert published["note"].str.contains("model3, model6").all()


def test_lofo_table(tables):
    asr, capability, info = tables
    table = lofo_table(asr, capability, info, "j")
    assert list(table.columns) == LOFO_COLUMNS
    measured = table[table["capability"] == "measured:mir"]
    assert list(measured["left_out_family"]) == ["api", "f1", "f2", "f3", "f4"]
    assert measured["rho_min"].iloc[0] == measured["spearman_rho"].min()
    assert measured["rho_max"].iloc[0] == measured["spearman_rho"].max()
    assert set(measured["n_models"]) == {6, 7}
    assert (measured["note"] == "").all()


def test_lofo_gives_the_reason_for_every_undefined_rho(tables):
    asr, capability, info = tables
    few = asr[asr["model"].isin(MODELS[:5])]  # f1, f2 and f3 (one model of f3)
    table = lofo_table(few, capability, info, "j", capabilities=["measured:mir"])
    for _, row in table.iterrows():
        assert math.isnan(row["spearman_rho"])
        assert row["n_models"] < MIN_MODELS
        assert undefined_reason(row["note"], "rho") == "fewer than 5 models"
        assert undefined_reason(row["note"], "rho_min/rho_max") == (
            "no family can be left out leaving a defined rho")
    assert np.isfinite(table["rho_all"]).all()
    assert undefined_reason(table["note"].iloc[0], "rho_all") is None


def test_results_are_deterministic(tables):
    asr, capability, info = tables
    first = correlation_table(asr, capability, info, "j", **FAST)
    pd.testing.assert_frame_equal(first, correlation_table(asr, capability, info, "j", **FAST))


def test_exact_reference_is_exact():
    # sanity check of the reference used above: enumerating all pairings by hand gives scipy's
    # exact p (so the small-n comparison is against a true exact value)
    x, y = bivariate(6, 0.5, seed=21)
    observed = stats.spearmanr(x, y).statistic
    values = [stats.spearmanr(x, np.array(p)).statistic for p in itertools.permutations(y)]
    hand = np.mean(np.abs(values) >= abs(observed) - 1e-12)
    scipy_exact = stats.permutation_test((x,), lambda a: stats.spearmanr(a, y).statistic,
                                         permutation_type="pairings", n_resamples=np.inf).pvalue
    assert hand == pytest.approx(scipy_exact)
