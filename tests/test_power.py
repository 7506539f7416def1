"""Simulated power of the Spearman test (mirsafety.analysis.power) against known answers."""

import math
from itertools import permutations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mirsafety.analysis import power
from mirsafety.analysis.correlation import MIN_MODELS

MODELS = [f"m{k}" for k in range(6)]
CAPABILITY = "measured:test"
ASR_VALUES = [0.1, 0.2, 0.35, 0.5, 0.7, 0.85]
SCORES = [25.0, 30.0, 45.0, 60.0, 75.0, 85.0]


def tables(asr=ASR_VALUES, scores=SCORES, n_judged=108, n_items=120, rho=0.94, note=""):
    asr_table = pd.DataFrame({"level": "model", "model": MODELS, "asr": asr,
                              "n_judged": n_judged})
    capability = pd.DataFrame({"model": MODELS, "capability": CAPABILITY, "score": scores,
                               "n_items": n_items})
    correlation = pd.DataFrame({"capability": [CAPABILITY], "spearman_rho": [rho],
                                "note": [note]})
    return asr_table, capability, correlation


def table(**kw):
    settings = {"max_models": 12, "n_sims": 1000, "n_null": 4000, **kw.pop("settings", {})}
    return power.power_table(*tables(**kw), CAPABILITY, **settings)


def grid(frame) -> pd.DataFrame:
    rows = frame[frame["scenario"] == "grid"]
    return rows.pivot(index="n_models", columns="true_rho", values="power")


def test_latent_pearson_gives_the_stated_spearman():
    """Pearson's identity rho_s = 6/pi asin(r/2), checked on a large bivariate-normal draw."""
    for rho in (0.3, 0.7):
        r = power.latent_pearson(rho)
        assert math.isclose(6 / math.pi * math.asin(r / 2), rho, rel_tol=1e-12)
        z = np.random.default_rng(1).multivariate_normal([0, 0], [[1, r], [r, 1]], 200_000)
        assert stats.spearmanr(z[:, 0], z[:, 1])[0] == pytest.approx(rho, abs=0.01)


def test_null_matches_the_exact_permutation_distribution():
    """With 5 models only |rho| = 1 (2 of 120 orderings) reaches p < 0.05, as enumerated."""
    exact = [stats.spearmanr(range(5), order)[0] for order in permutations(range(5))]
    null = power.null_abs_rho(5, np.random.default_rng(0), 20_000)
    assert np.mean(null >= 1 - 1e-9) == pytest.approx(np.mean(np.abs(exact) >= 1 - 1e-9),
                                                      abs=0.004)
    assert power.detected(np.array([1.0, -1.0, 0.9, np.nan]), null).tolist() == [
        True, True, False, False]


def test_power_at_no_association_is_at_most_alpha():
    """rho = 0: power is the test's size, alpha within Monte Carlo error where the null is
    fine-grained (20 models, 4000 answers: few ties), below it with 5 models (p >= 2/120)."""
    frame = table(n_judged=4000, settings={"rhos": (0.0,), "max_models": 20, "n_sims": 4000})
    powers = grid(frame)[0.0]
    assert powers[20] == pytest.approx(power.ALPHA, abs=3 * math.sqrt(0.05 * 0.95 / 4000))
    assert powers[MIN_MODELS] <= 2 / 120 + 0.01


def test_power_rises_with_models_and_rho():
    values = grid(table(settings={"rhos": (0.3, 0.6, 0.9)}))
    assert (np.diff(values.to_numpy(), axis=1) > 0).all()  # with rho at every n
    assert values.iloc[-1, -1] > values.iloc[0, -1] + 0.5  # with n, at rho 0.9
    smooth = values.rolling(3, center=True).mean().dropna()
    assert (np.diff(smooth.to_numpy(), axis=0) > -0.01).all()


def test_more_answers_give_more_power():
    few, many = (table(n_judged=n, settings={"rhos": (0.7,)}) for n in (10, 2000))
    assert grid(many)[0.7].mean() > grid(few)[0.7].mean()


def test_deterministic_with_seed_and_changes_with_it():
    first, again = table(), table()
    pd.testing.assert_frame_equal(first, again)
    other = table(settings={"seed": 1})
    assert not np.allclose(first["power"], other["power"])


def test_rows_of_the_run_and_of_the_study():
    frame = table()
    run = frame[frame["scenario"] == "run"]
    study = frame[frame["scenario"] == "study"]
    assert list(run["rho_source"]) == ["stated"] * 4 + ["recovered"]
    assert set(run["n_models"]) == {6} and set(run["instances"]) == {108}
    assert set(study["n_models"]) == {19} and set(study["instances"]) == {2676}
    assert set(study["items"]) == {120}  # the run's, as configured
    recovered = study[study["rho_source"] == "recovered"]
    assert recovered["true_rho"].iloc[0] == pytest.approx(0.94)
    assert (study["power"].to_numpy() >= run["power"].to_numpy()).all()


def test_undefined_power_says_why():
    constant = table(scores=[40.0] * 6)
    assert constant["power"].isna().all()
    assert constant["note"].str.contains("power n/a: the run's capability is constant").all()
    no_rho = table(rho=math.nan, note="correlation n/a: ASR constant across models")
    recovered = no_rho[no_rho["rho_source"] == "recovered"]
    assert recovered["power"].isna().all()
    assert recovered["note"].str.contains("no recovered rho: ASR constant").all()
    assert no_rho[no_rho["rho_source"] == "stated"]["power"].notna().all()
    few = power.power_table(*(t.iloc[:3] if "model" in t else t for t in tables()), CAPABILITY,
                            max_models=6, n_sims=200, n_null=500)
    run = few[few["scenario"] == "run"]
    assert run["power"].isna().all() and run["note"].str.contains("fewer than 5 models").all()


def test_published_score_is_taken_as_exact_and_said():
    frame = table(n_items=math.nan)
    assert frame["note"].str.contains("taken as exact").all()
    assert frame["power"].notna().all()


def test_unknown_capability_is_named():
    with pytest.raises(ValueError, match="measured:other.*primary_capability"):
        power.power_table(*tables(), "measured:other")
