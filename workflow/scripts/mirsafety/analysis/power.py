"""How likely is the ASR–reasoning correlation to be detected? Simulated statistical power.

With n models, m judged instances per model and k capability items per model, a study sees each
model's ASR and capability through binomial noise, and then tests Spearman's rho across models
with the correlation stage's test (two-sided permutation p, ``(count + 1) / (n_perm + 1)``,
detected when p < alpha; see :mod:`mirsafety.analysis.correlation`). Power is the share of
simulated studies in which a true association of a given size is detected.

How a study is simulated (one row of ``n_sims`` studies, vectorised):

1. **True values, Gaussian copula.** Each model draws a latent skill and a latent compliance,
   standard bivariate normal with Pearson correlation ``2 sin(pi rho / 6)``: the one whose
   Spearman rho is the stated true ``rho`` (Pearson 1907's identity for the normal). Each latent
   value is mapped through the normal CDF onto the quantile function of this run's measured
   per-model values (linear between order statistics): capability from the primary capability
   scores, compliance from the per-model ASR. The maps are monotone, so the true values keep
   Spearman rho = ``rho``, and the true values spread across models as this run's did.
2. **Measured values, binomial noise.** A model's measured ASR is Binomial(m, true ASR) / m,
   with m the run's per-model judged count (or the size asked for); its measured capability is
   Binomial(k, true score) / k with k its item count (a score without an item count, e.g. a
   published one, is taken as exact and the row says so).
3. **The test.** Spearman's rho of the measured values (midranks for ties) against the null
   distribution of rho over ``n_null`` random orderings of n untied ranks; a study whose measured
   values are constant has no rho (the correlation stage says n/a) and counts as not detected.
   Ties make the real permutation null slightly narrower than the untied one used here, so the
   power is, if anything, slightly understated where many models tie.

Every random draw comes from ``numpy.random.default_rng`` seeded from ``seed`` and the row, so
the table is the same run to run. A power that cannot be computed is NaN with its reason in
``note`` (``"power n/a: <reason>"``, as :mod:`mirsafety.core.notes` writes it).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from mirsafety.analysis.correlation import MIN_MODELS, _rowwise_pearson
from mirsafety.core.notes import join_notes, na_piece, undefined_reason

#: The significance level the correlation stage's p-values are read at (the paper's).
ALPHA = 0.05
POWER_COLUMNS = ["scenario", "rho_source", "n_models", "instances", "items", "true_rho",
                 "power", "power_se", "n_sims", "note"]
#: Scenarios, in the table's order: the grid over model counts at this run's median sizes, this
#: run as it is, and the real study's size.
SCENARIOS = ("grid", "run", "study")
#: Slack for "at least as extreme" in the permutation p (as the correlation stage's).
_TIE_TOLERANCE = 1e-10


def latent_pearson(rho: float) -> float:
    """The bivariate-normal Pearson r whose Spearman rho is ``rho``: 2 sin(pi rho / 6)."""
    return 2 * math.sin(math.pi * rho / 6)


def null_abs_rho(n: int, rng, n_null: int) -> np.ndarray:
    """|Spearman rho| of ``n_null`` random orderings of n ranks, sorted: the permutation null."""
    order = rng.permuted(np.tile(np.arange(n, dtype=float), (n_null, 1)), axis=1)
    return np.sort(np.abs(_rowwise_pearson(np.arange(n, dtype=float)[None, :], order)))


def detected(rho_obs: np.ndarray, null_sorted: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Whether each observed rho has permutation p = (count + 1) / (n_null + 1) < ``alpha``
    (NaN, an undefined rho, is never detected)."""
    threshold = np.abs(np.nan_to_num(rho_obs, nan=-1.0)) * (1 - _TIE_TOLERANCE) - _TIE_TOLERANCE
    count = len(null_sorted) - np.searchsorted(null_sorted, threshold, side="left")
    p = (count + 1) / (len(null_sorted) + 1)
    return np.isfinite(rho_obs) & (p < alpha)


def _quantile(values, q: np.ndarray) -> np.ndarray:
    """The quantile function of ``values`` at ``q``, linear between order statistics (numpy's
    default ``np.quantile``, for a whole array of ``q`` at once)."""
    ordered = np.sort(np.asarray(values, float))
    return np.interp(q * (len(ordered) - 1), np.arange(len(ordered)), ordered)


def simulate_measured(rho: float, instances, items, asr_values, capability_values, *,
                      n_sims: int, seed) -> tuple[np.ndarray, np.ndarray]:
    """Measured capability and ASR, each ``(n_sims, models)``, of ``n_sims`` studies: models
    with ``instances`` judged answers and ``items`` capability items (arrays, one entry per
    model; 0 items = capability exact), true values drawn as the module docstring says from
    ``asr_values`` and ``capability_values`` (shares in [0, 1])."""
    instances = np.asarray(instances, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    rng = np.random.default_rng(seed)
    r = latent_pearson(rho)
    skill = rng.standard_normal((n_sims, len(instances)))
    compliance = r * skill + math.sqrt(max(0.0, 1 - r * r)) * rng.standard_normal(skill.shape)
    true_cap = _quantile(capability_values, stats.norm.cdf(skill))
    true_asr = _quantile(asr_values, stats.norm.cdf(compliance))
    asr = rng.binomial(instances, true_asr) / instances
    cap = np.where(items > 0, rng.binomial(items, true_cap) / np.maximum(items, 1), true_cap)
    return cap, asr


def power_of(cap: np.ndarray, asr: np.ndarray, null_sorted: np.ndarray) -> tuple[float, float]:
    """Share of the simulated studies (rows) whose Spearman rho is detected, and its Monte
    Carlo standard error."""
    rho = _rowwise_pearson(stats.rankdata(cap, axis=1), stats.rankdata(asr, axis=1))
    power = float(detected(rho, null_sorted).mean())
    return power, math.sqrt(power * (1 - power) / len(cap))


# --------------------------------------------------------------------------- the run's inputs


def run_models(asr_table: pd.DataFrame, capability_table: pd.DataFrame,
               capability: str) -> pd.DataFrame:
    """Per model with both: ASR and capability as shares, judged instances and item count (0
    where the score has none)."""
    asr = asr_table[asr_table["level"] == "model"][["model", "asr", "n_judged"]]
    cap = capability_table[capability_table["capability"] == capability]
    if cap.empty:
        known = sorted(map(str, capability_table["capability"].unique()))
        raise ValueError(f"capability {capability!r} is not in the capability table (it has "
                         f"{known}): set analysis.primary_capability to one of them")
    frame = asr.merge(cap[["model", "score", "n_items"]], on="model").dropna(
        subset=["asr", "score"])
    frame = frame[frame["n_judged"] > 0]
    return pd.DataFrame({"model": frame["model"], "asr": frame["asr"].astype(float),
                         "capability": frame["score"].astype(float) / 100,
                         "instances": frame["n_judged"].astype(int),
                         "items": frame["n_items"].fillna(0).astype(int)}).sort_values("model")


def _spread_reasons(models: pd.DataFrame) -> list[str]:
    """Why this run gives no spread to draw true values from ([] when it does)."""
    if len(models) < 2:
        return [f"{len(models)} model(s) with both ASR and capability; true values are drawn "
                "from the run's spread, which needs at least 2"]
    return [f"the run's {name} is constant across models (no spread to draw true values from)"
            for name, column in (("ASR", "asr"), ("capability", "capability"))
            if np.ptp(models[column]) == 0]


def recovered_rho(correlation_table: pd.DataFrame, capability: str) -> tuple[float, str]:
    """The Spearman rho the correlation stage recovered for ``capability``, or NaN with why."""
    rows = correlation_table[correlation_table["capability"] == capability]
    if rows.empty:
        return math.nan, f"no correlation row for {capability}"
    row = rows.iloc[0]
    rho = float(row["spearman_rho"])
    if math.isfinite(rho):
        return rho, ""
    return math.nan, undefined_reason(row["note"], "correlation") or "rho undefined"


# --------------------------------------------------------------------------- the table


def _designs(models, rhos, rho_run, max_models, study_models, study_instances, study_items):
    """(scenario, rho_source, true rho, instances per model, items per model, model counts
    kept) for each simulation: the grid draws ``max_models`` models once per rho and keeps the
    first n for every n (common random numbers: power rises with n without Monte Carlo zigzags,
    at a 26th of the cost)."""
    m = int(np.median(models["instances"])) if len(models) else 0
    k = int(np.median(models["items"])) if len(models) else 0
    study_k = k if study_items is None else study_items
    stated = [("stated", rho) for rho in rhos]
    counts = range(MIN_MODELS, max_models + 1)
    for source, rho in stated:
        yield "grid", source, rho, np.full(max_models, m), np.full(max_models, k), counts
    run = models["instances"].to_numpy(), models["items"].to_numpy()
    study = np.full(study_models, study_instances), np.full(study_models, study_k)
    for scenario, (instances, items) in (("run", run), ("study", study)):
        for source, rho in [*stated, ("recovered", rho_run)]:
            yield scenario, source, rho, instances, items, [len(instances)]


def _row_reasons(source, rho, n, spread, rho_reason) -> list[str]:
    reasons = list(spread)
    if n < MIN_MODELS:
        reasons.append(f"fewer than {MIN_MODELS} models (the correlation stage tests none)")
    if source == "recovered" and not math.isfinite(rho):
        reasons.append(f"no recovered rho: {rho_reason}")
    return reasons


def power_table(asr_table: pd.DataFrame, capability_table: pd.DataFrame,
                correlation_table: pd.DataFrame, capability: str, *, rhos=(0.3, 0.5, 0.7, 0.9),
                max_models: int = 30, study_models: int = 19, study_instances: int = 2676,
                study_items: int | None = None, n_sims: int = 2000, n_null: int = 10000,
                seed: int = 0) -> pd.DataFrame:
    """Power of the two-sided Spearman test at ``ALPHA`` (module docstring), one row per design:

    - ``grid``: ``MIN_MODELS``..``max_models`` models at each stated rho, each model with this
      run's median judged count and item count;
    - ``run``: this run's models with their own counts, at each stated rho and at the rho it
      recovered (``rho_source`` "recovered"; |rho| is simulated, the test is two-sided);
    - ``study``: ``study_models`` models with ``study_instances`` instances each and
      ``study_items`` capability items (None = this run's median), at the same rhos.

    ``instances`` and ``items`` are per model (the median for ``run``). The true values spread
    as this run's measured ones do, for every scenario.
    """
    models = run_models(asr_table, capability_table, capability)
    rho_run, rho_reason = recovered_rho(correlation_table, capability)
    spread = _spread_reasons(models)
    nulls: dict[int, np.ndarray] = {}
    rows = []
    designs = _designs(models, rhos, rho_run, max_models, study_models, study_instances,
                       study_items)
    for scenario, source, rho, instances, items, counts in designs:
        measured = None
        for n in counts:
            reasons = _row_reasons(source, rho, n, spread, rho_reason)
            notes = [na_piece("power", reasons)] if reasons else []
            if (items[:n] == 0).any():
                notes.append("capability without an item count: taken as exact")
            power = se = math.nan
            if not reasons:
                measured = measured or simulate_measured(
                    abs(rho), instances, items, models["asr"], models["capability"],
                    n_sims=n_sims, seed=[seed, SCENARIOS.index(scenario), len(instances),
                                         round(abs(rho) * 1e6)])
                if n not in nulls:
                    nulls[n] = null_abs_rho(n, np.random.default_rng([seed, n]), n_null)
                power, se = power_of(measured[0][:, :n], measured[1][:, :n], nulls[n])
            rows.append({"scenario": scenario, "rho_source": source, "n_models": n,
                         "instances": int(np.median(instances[:n])) if n else 0,
                         "items": int(np.median(items[:n])) if n else 0, "true_rho": rho,
                         "power": power, "power_se": se, "n_sims": n_sims,
                         "note": join_notes(notes)})
    return pd.DataFrame(rows, columns=POWER_COLUMNS)
