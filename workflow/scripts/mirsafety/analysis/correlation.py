"""Does multi-image reasoning capability go with attack success? Correlations across models.

The paper's headline is a cross-model association between reasoning capability and ASR. With
only ~20 models, the statistics are chosen to lean on few assumptions and to show their
uncertainty:

* Spearman's rho is primary (monotone, robust to a few extreme models); Pearson's r is shown
  beside it.
* p-values come from permuting ASR over models (two-sided, ``(count + 1) / (n_perm + 1)`` so a
  Monte Carlo p is never 0); confidence intervals from a percentile bootstrap over models.
* An OLS slope of ASR on capability gives the effect in ASR units, with HC3 standard errors
  (heteroskedasticity-robust and the best-behaved of the HC family in small samples) and a t
  reference with n - 2 degrees of freedom: the normal reference statsmodels uses by default for
  robust covariances is anti-conservative with ~20 models (p 0.0021 where t(17) gives 0.0068).
* Capability and size go together, so a partial rank correlation controlling for log parameter
  count asks whether the association survives size; leave-one-family-out shows whether a single
  model family drives it.

Every random step draws from ``numpy.random.default_rng`` seeded from ``seed``, so results are
reproducible run to run.

A statistic that cannot be computed is NaN, and the row's ``note`` says why, as one
``"<statistic> n/a: <reason>"`` piece (pieces joined by ``"; "``): ``correlation`` (every
statistic of :func:`correlate`), ``bootstrap CI``, ``OLS SE`` (standard error, p and interval of
the slope), ``partial``, ``rho`` and ``rho_all`` (leave-one-family-out). Readers take the reason
from there with :func:`mirsafety.core.notes.undefined_reason` rather than guessing it.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.multitest import multipletests

from mirsafety.core.notes import join_notes, na_piece
from mirsafety.core.taxonomy import ALL, CATEGORIES, RELATIONS

CORRELATION_COLUMNS = [
    "judge", "capability", "n_models", "models",
    "spearman_rho", "spearman_ci_low", "spearman_ci_high", "spearman_p_perm",
    "pearson_r", "pearson_ci_low", "pearson_ci_high", "pearson_p_perm",
    "ols_slope", "ols_se_hc3", "ols_p", "ols_ci_low", "ols_ci_high",
    "partial_rho_log_params", "partial_p", "n_partial", "n_boot_degenerate", "note",
]
#: The statistics :func:`correlate` returns, in the table's order.
STATISTICS = CORRELATION_COLUMNS[4:17]
GROUP_COLUMNS = ["judge", "capability", "group_type", "group", "n_models", "spearman_rho",
                 "p_perm", "q_fdr", "note"]
LOFO_COLUMNS = ["judge", "capability", "left_out_family", "n_left_out", "models_left_out",
                "n_models", "spearman_rho", "rho_all", "rho_min", "rho_max", "note"]

#: Relative slack where rounding could tip a comparison: permutations giving the observed
#: statistic up to rounding count as "at least as extreme"; a leverage of 1, residue of 0 and an
#: estimate on its interval's bound are recognised as such.
_TIE_TOLERANCE = 1e-10

#: Fewest models any statistic here is computed on; below it every one is n/a, with the reason.
#: It is the smallest n at which a two-sided permutation test can reach p < 0.05 at all: of the
#: n! orderings of ASR the two most extreme give p = 2/n!, i.e. 0.33 with 3 models, 0.083 with 4
#: and 0.017 with 5. Below that a correlation describes a handful of points that no test could
#: tell from chance, and the other statistics degrade with it (3 models leave the OLS slope one
#: degree of freedom, and a ninth of the bootstrap resamples constant).
MIN_MODELS = 5

#: Largest share of bootstrap resamples that may be degenerate (capability or ASR constant in
#: the resample, so no correlation) before the bootstrap intervals are n/a. The percentile
#: interval reads its bounds at the 2.5% and 97.5% points of the resamples kept; once more than
#: 2.5% are left out they could all have belonged to one tail, so the data no longer determine
#: where a bound lies (with one model alone at its capability value about a third are left out,
#: and the interval can exclude its own estimate).
MAX_DEGENERATE_SHARE = 0.025



# --------------------------------------------------------------------------- core statistics


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row of ``a`` with the matching row of ``b`` (broadcasting); NaN where
    a row is constant."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=-1) / denominator
    r = np.where(denominator > 0, r, np.nan)
    return np.clip(r, -1.0, 1.0)


def _permutation_p(x: np.ndarray, y: np.ndarray, observed: float, rng, n_perm: int) -> float:
    """Two-sided Monte Carlo permutation p: shuffling y over models breaks any association
    while keeping both marginal distributions; +1 counts the observed arrangement."""
    if not np.isfinite(observed) or n_perm < 1:
        return math.nan
    order = rng.permuted(np.tile(np.arange(len(y)), (n_perm, 1)), axis=1)
    permuted = _rowwise_pearson(x[None, :], y[order])
    extreme = np.abs(permuted) >= abs(observed) * (1 - _TIE_TOLERANCE) - _TIE_TOLERANCE
    return float((extreme.sum() + 1) / (n_perm + 1))


def _undefined_reasons(x: np.ndarray, y: np.ndarray) -> list[str]:
    """Every reason capability ``x`` and ASR ``y`` have no correlation ([] when they have one):
    fewer than ``MIN_MODELS`` models, either of them constant."""
    reasons = []
    if len(x) < MIN_MODELS:
        reasons.append(f"fewer than {MIN_MODELS} models")
    constant = [name for name, v in (("capability", x), ("ASR", y))
                if len(v) > 1 and np.ptp(v) == 0]
    if constant:
        reasons.append(" and ".join(constant) + " constant across models")
    return reasons


def _bootstrap(x: np.ndarray, y: np.ndarray, rng, n_boot: int):
    """Spearman and Pearson over ``n_boot`` resamples of models (with replacement), and how many
    resamples were degenerate (either variable constant: no correlation) and left out."""
    if n_boot < 1:
        return np.array([]), np.array([]), 0
    index = rng.integers(0, len(x), size=(n_boot, len(x)))
    xb, yb = x[index], y[index]
    usable = (np.ptp(xb, axis=1) > 0) & (np.ptp(yb, axis=1) > 0)
    xb, yb = xb[usable], yb[usable]
    rho = _rowwise_pearson(stats.rankdata(xb, axis=1), stats.rankdata(yb, axis=1))
    r = _rowwise_pearson(xb, yb)
    return rho, r, int((~usable).sum())


def _percentile_ci(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan, math.nan
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def _bootstrap_cis(x, y, rho: float, r: float, rng, n_boot: int) -> tuple[dict, list[str]]:
    """Percentile 95% intervals of rho and r with the count of degenerate resamples, and notes:
    n/a past ``MAX_DEGENERATE_SHARE`` degenerate; an interval that excludes its own estimate
    (possible with a skewed, discrete bootstrap distribution) is kept, and said."""
    boot_rho, boot_r, degenerate = _bootstrap(x, y, rng, n_boot)
    notes = []
    if degenerate > MAX_DEGENERATE_SHARE * n_boot:
        notes.append(na_piece("bootstrap CI", [f"{degenerate} of {n_boot} resamples degenerate "
                                          "(capability or ASR constant), more than "
                                          f"{MAX_DEGENERATE_SHARE:.1%}"]))
        boot_rho = boot_r = np.array([])
    elif degenerate:
        notes.append(f"{degenerate} of {n_boot} bootstrap resamples degenerate, left out")
    result = {"n_boot_degenerate": degenerate}
    for key, name, estimate, values in (("spearman", "Spearman", rho, boot_rho),
                                        ("pearson", "Pearson", r, boot_r)):
        low, high = _percentile_ci(values)
        result[f"{key}_ci_low"], result[f"{key}_ci_high"] = low, high
        if low - estimate > _TIE_TOLERANCE or estimate - high > _TIE_TOLERANCE:
            notes.append(f"{name} bootstrap interval [{low:.3f}, {high:.3f}] excludes its "
                         f"estimate {estimate:.3f}")
    return result, notes


def _ols_hc3(x: np.ndarray, y: np.ndarray) -> tuple[dict, list[str]]:
    """Slope of y on x with its HC3 standard error, and p and 95% interval from t with n - 2
    degrees of freedom (statsmodels, ``use_t=True``), and notes. HC3 divides each squared
    residual by (1 - h)^2: a model with leverage h = 1 (every other model shares one capability
    value) makes that 0/0, so the standard error, p and interval are n/a (the slope is not)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        fit = sm.OLS(y, sm.add_constant(x, has_constant="add")).fit(cov_type="HC3", use_t=True)
        low, high = fit.conf_int(alpha=0.05)[1]
    slope = {"ols_slope": float(fit.params[1])}
    inference = {"ols_se_hc3": fit.bse[1], "ols_p": fit.pvalues[1], "ols_ci_low": low,
                 "ols_ci_high": high}
    centred = (x - x.mean()) ** 2
    if (1 / len(x) + centred / centred.sum()).max() > 1 - _TIE_TOLERANCE:
        return {**slope, **dict.fromkeys(inference, math.nan)}, [na_piece("OLS SE", [
            "every model but one shares one capability value (leverage 1, where HC3 is 0/0)"])]
    return {**slope, **{k: float(v) for k, v in inference.items()}}, []


def _empty_correlation(n: int, note: str) -> dict:
    return {"n": n, **dict.fromkeys(STATISTICS, math.nan), "n_boot_degenerate": 0, "note": note}


def _complete_pairs(x, y) -> tuple[np.ndarray, np.ndarray, list[str]]:
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length ({len(x)} vs {len(y)})")
    keep = np.isfinite(x) & np.isfinite(y)
    notes = [f"dropped {int((~keep).sum())} pair(s) with a missing value"] if not keep.all() else []
    return x[keep], y[keep], notes


def correlate(x, y, *, n_boot: int = 2000, n_perm: int = 10000, seed: int = 0) -> dict:
    """Association of capability ``x`` with ASR ``y`` across models (one value per model).

    Returns ``n``; ``spearman_rho`` (primary) and ``pearson_r``, each with a percentile
    bootstrap 95% CI over models (``*_ci_low``/``*_ci_high``) and a two-sided permutation p
    (``*_p_perm``); ``ols_slope`` of y on x with ``ols_se_hc3``, ``ols_p`` and
    ``ols_ci_low``/``ols_ci_high`` (HC3, t reference with n - 2 degrees of freedom);
    ``n_boot_degenerate`` (resamples with a constant variable, left out) and ``note`` ("" if
    none). Pairs with a missing value are dropped (noted). With fewer than ``MIN_MODELS``
    models, or capability or ASR constant, every statistic is NaN and ``note`` says
    ``correlation n/a: <reasons>``; the bootstrap intervals and the slope's inference can also
    be n/a on their own (``bootstrap CI n/a: ...``, ``OLS SE n/a: ...``).
    """
    x, y, notes = _complete_pairs(x, y)
    reasons = _undefined_reasons(x, y)
    if reasons:
        return _empty_correlation(len(x), join_notes([*notes, na_piece("correlation", reasons)]))
    boot_rng, perm_rng = (np.random.default_rng([seed, stream]) for stream in (0, 1))
    rank_x, rank_y = stats.rankdata(x), stats.rankdata(y)
    rho = float(_rowwise_pearson(rank_x, rank_y))
    r = float(_rowwise_pearson(x, y))
    intervals, interval_notes = _bootstrap_cis(x, y, rho, r, boot_rng, n_boot)
    ols, ols_notes = _ols_hc3(x, y)
    return {"n": len(x), "spearman_rho": rho, "pearson_r": r, **intervals, **ols,
            "spearman_p_perm": _permutation_p(rank_x, rank_y, rho, perm_rng, n_perm),
            "pearson_p_perm": _permutation_p(x, y, r, perm_rng, n_perm),
            "note": join_notes([*notes, *interval_notes, *ols_notes])}


def _residuals(values: np.ndarray, covariate: np.ndarray) -> np.ndarray:
    design = np.column_stack([np.ones_like(covariate), covariate])
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    return values - design @ coef


def _explained(ranks: np.ndarray, residuals: np.ndarray) -> bool:
    """Whether nothing but floating-point residue is left of ``ranks`` after the covariate."""
    centred = ranks - ranks.mean()
    return bool(np.linalg.norm(residuals) <= _TIE_TOLERANCE * np.linalg.norm(centred))


def partial_spearman(x, y, z) -> dict:
    """Rank correlation of x and y with z (e.g. log parameters) held fixed: bigger models may
    both reason better and comply more, and this asks whether capability still tracks ASR once
    size is accounted for.

    All three are ranked; the ranks of x and of y are each regressed on the ranks of z (with an
    intercept) and the residuals correlated (the same value as pingouin's
    ``partial_corr(method="spearman")``). p is a t-test with n - 3 degrees of freedom. Rows with
    any missing value are dropped. Returns ``{"n", "rho", "p", "note"}``: rho and p are NaN and
    ``note`` gives the reasons with fewer than ``MIN_MODELS`` rows, x or y constant, or x's or
    y's ranks a linear function of z's (z equal to x, say), where what is left to correlate is
    floating-point residue.
    """
    x, y, z = (np.asarray(v, float).ravel() for v in (x, y, z))
    if not len(x) == len(y) == len(z):
        raise ValueError("x, y and z differ in length")
    keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    x, y, z = x[keep], y[keep], z[keep]
    n = len(x)
    reasons = _undefined_reasons(x, y)
    if not reasons:
        rx, ry, rz = (stats.rankdata(v) for v in (x, y, z))
        res_x, res_y = _residuals(rx, rz), _residuals(ry, rz)
        reasons = [f"{name} ranks fully explained by the covariate's ranks"
                   for name, ranks, res in (("capability", rx, res_x), ("ASR", ry, res_y))
                   if _explained(ranks, res)]
    if reasons:
        return {"n": n, "rho": math.nan, "p": math.nan, "note": ", ".join(reasons)}
    rho = float(_rowwise_pearson(res_x, res_y))
    df = n - 3
    with np.errstate(divide="ignore"):
        t = rho * math.sqrt(df / (1 - rho**2)) if abs(rho) < 1 else math.copysign(math.inf, rho)
    return {"n": n, "rho": rho, "p": float(2 * stats.t.sf(abs(t), df)), "note": ""}


def _spearman(x, y) -> tuple[float, str]:
    """Spearman rho of the complete pairs, and why it is undefined ("" when it is not)."""
    x, y, _ = _complete_pairs(x, y)
    reasons = _undefined_reasons(x, y)
    if reasons:
        return math.nan, ", ".join(reasons)
    return float(_rowwise_pearson(stats.rankdata(x), stats.rankdata(y))), ""


def leave_one_family_out(df: pd.DataFrame, *, x: str = "score", y: str = "asr",
                         family: str = "family", model: str = "model"
                         ) -> tuple[pd.DataFrame, dict]:
    """Spearman rho recomputed with each model family left out in turn: several sizes of one
    family share training data and alignment, so one family could carry the whole association.

    ``df`` has one row per model. Returns the rows (``left_out_family``, ``n_left_out``,
    ``models_left_out``, ``n_models``, ``spearman_rho``, ``note``; families in sorted order) and
    a summary ``{"rho_all", "rho_min", "rho_max", "family_at_min", "family_at_max",
    "n_families", "note"}``. A missing family counts as its own family ``"unknown"``. An
    undefined rho is NaN and the row's note says why (``rho n/a: ...``); the summary's note does
    the same for ``rho_all`` and for ``rho_min``/``rho_max``.
    """
    df = df.assign(**{family: df[family].fillna("unknown").astype(str)})
    rows = []
    for name in sorted(df[family].unique()):
        out = df[df[family] == name]
        kept = df[df[family] != name]
        rho, reason = _spearman(kept[x], kept[y])
        rows.append({"left_out_family": name, "n_left_out": len(out),
                     "models_left_out": ";".join(sorted(map(str, out[model]))),
                     "n_models": int((kept[x].notna() & kept[y].notna()).sum()),
                     "spearman_rho": rho, "note": na_piece("rho", [reason]) if reason else ""})
    table = pd.DataFrame(rows, columns=["left_out_family", "n_left_out", "models_left_out",
                                        "n_models", "spearman_rho", "note"])
    finite = table.dropna(subset=["spearman_rho"])
    rho_all, reason_all = _spearman(df[x], df[y])
    summary = {"rho_all": rho_all, "n_families": len(table),
               "rho_min": math.nan, "rho_max": math.nan,
               "family_at_min": None, "family_at_max": None,
               "note": join_notes([na_piece("rho_all", [reason_all]) if reason_all else "",
                              "" if len(finite) else na_piece("rho_min/rho_max", [
                                  "no family can be left out leaving a defined rho"])])}
    if len(finite):
        low = finite.loc[finite["spearman_rho"].idxmin()]
        high = finite.loc[finite["spearman_rho"].idxmax()]
        summary.update(rho_min=float(low["spearman_rho"]), rho_max=float(high["spearman_rho"]),
                       family_at_min=low["left_out_family"],
                       family_at_max=high["left_out_family"])
    return table, summary


def pc1_capability(capability_wide: pd.DataFrame) -> tuple[pd.Series, float]:
    """One capability score from several benchmarks: the first principal component.

    ``capability_wide`` has one row per model (index) and one column per benchmark. Models
    missing any benchmark are dropped (PCA needs complete rows); columns are standardised
    (mean 0, SD 1 with ddof=1) so no benchmark dominates by its scale. The sign of a principal
    component is arbitrary, so it is chosen to correlate positively with the models' mean
    standardised score ("higher = more capable"). Returns the scores (Series named ``pc1``,
    indexed by model) and the share of variance PC1 explains.
    """
    complete = capability_wide.dropna(how="any").astype(float)
    if complete.shape[1] < 2:
        raise ValueError("pc1_capability needs at least two benchmark columns")
    if len(complete) < 3:
        raise ValueError(f"pc1_capability needs at least 3 models with every benchmark; "
                         f"{len(complete)} have them")
    spread = complete.std(ddof=1)
    if (spread == 0).any():
        raise ValueError("benchmark(s) constant across models: "
                         + ", ".join(map(str, spread.index[spread == 0])))
    z = ((complete - complete.mean()) / spread).to_numpy()
    _, singular, vt = np.linalg.svd(z, full_matrices=False)
    scores = z @ vt[0]
    mean = z.mean(axis=1)
    direction = np.corrcoef(scores, mean)[0, 1] if np.ptp(mean) > 0 else vt[0].sum()
    if direction < 0:
        scores = -scores
    explained = float(singular[0] ** 2 / (singular**2).sum())
    return pd.Series(scores, index=complete.index, name="pc1"), explained


def pc1_rows(capability_table: pd.DataFrame, capabilities: list[str],
             label: str = "derived:pc1") -> pd.DataFrame:
    """PC1 of ``capabilities`` as rows of a capability table (so it can be correlated like any
    other source); ``source`` names the inputs and the variance explained."""
    wide = (capability_table[capability_table["capability"].isin(capabilities)]
            .pivot(index="model", columns="capability", values="score")
            .reindex(columns=capabilities))
    scores, explained = pc1_capability(wide)
    return pd.DataFrame({
        "model": scores.index, "capability": label, "score": scores.to_numpy(),
        "ci_low": math.nan, "ci_high": math.nan, "n_items": math.nan,
        "source": f"PC1 of {';'.join(capabilities)} ({explained:.1%} of variance)"})


# --------------------------------------------------------------------------- tables


def _model_asr(asr_table: pd.DataFrame) -> pd.DataFrame:
    rows = asr_table[asr_table["level"] == "model"]
    if rows["model"].duplicated().any():
        raise ValueError("ASR table has several level=='model' rows for one model")
    return rows[["model", "asr"]]


def _scores(capability_table: pd.DataFrame, capability: str) -> pd.Series:
    rows = capability_table[capability_table["capability"] == capability]
    duplicated = rows["model"][rows["model"].duplicated()]
    if len(duplicated):
        raise ValueError(f"capability {capability!r} has several rows for: "
                         + ", ".join(sorted(map(str, duplicated.unique()))))
    return rows.set_index("model")["score"].astype(float)


def _capabilities(capability_table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(capability_table["capability"]))


def _joined(asr_table, capability_table, capability) -> tuple[pd.DataFrame, list[str]]:
    """Models with both an ASR and a score for ``capability``, and notes naming the rest."""
    asr = _model_asr(asr_table)
    scores = _scores(capability_table, capability)
    frame = asr.assign(score=asr["model"].map(scores))
    notes = []
    no_asr = sorted(map(str, frame.loc[frame["asr"].isna(), "model"]))
    no_score = sorted(map(str, frame.loc[frame["asr"].notna() & frame["score"].isna(), "model"]))
    if no_score:
        notes.append("no score: " + ", ".join(no_score))
    if no_asr:
        notes.append("no ASR (nothing judged): " + ", ".join(no_asr))
    scored_only = sorted(map(str, set(scores.dropna().index) - set(asr["model"])))
    if scored_only:
        notes.append("score but no ASR: " + ", ".join(scored_only))
    return frame.dropna(subset=["asr", "score"]).sort_values("model"), notes


def correlation_table(asr_table: pd.DataFrame, capability_table: pd.DataFrame,
                      model_info: pd.DataFrame, judge: str, *, n_boot: int = 2000,
                      n_perm: int = 10000, seed: int = 0) -> pd.DataFrame:
    """One row per capability source: model-level ASR (``level == "model"``) against the
    source's score, with the statistics of :func:`correlate` and the partial Spearman rho
    controlling for log10 parameter count (models without ``params_b`` left out of that, see
    ``n_partial``). Models without a score are left out of the row and named in ``note``, as is
    the reason for every statistic that is n/a (see the module docstring)."""
    info = model_info.drop_duplicates("model").set_index("model")
    rows = []
    for capability in _capabilities(capability_table):
        frame, notes = _joined(asr_table, capability_table, capability)
        stats_ = correlate(frame["score"], frame["asr"], n_boot=n_boot, n_perm=n_perm,
                           seed=seed)
        params = frame["model"].map(info["params_b"]).astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_params = np.log10(params.where(params > 0))
        partial = partial_spearman(frame["score"], frame["asr"], log_params)
        no_params = sorted(map(str, frame.loc[log_params.isna(), "model"]))
        if no_params:
            notes.append("no params_b (left out of partial): " + ", ".join(no_params))
        notes += [stats_["note"], na_piece("partial", [partial["note"]]) if partial["note"] else ""]
        rows.append({
            "judge": judge, "capability": capability, "n_models": stats_["n"],
            "models": ";".join(sorted(map(str, frame["model"]))),
            **{c: stats_[c] for c in STATISTICS},
            "partial_rho_log_params": partial["rho"], "partial_p": partial["p"],
            "n_partial": partial["n"], "n_boot_degenerate": stats_["n_boot_degenerate"],
            "note": join_notes(notes),
        })
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)


def _group_order(values, vocabulary) -> list[str]:
    values = set(values) - {ALL}
    return [v for v in vocabulary if v in values] + sorted(values - set(vocabulary))


def group_correlation_table(asr_table: pd.DataFrame, capability_table: pd.DataFrame,
                            capability: str, judge: str, *, n_perm: int = 10000,
                            seed: int = 0) -> pd.DataFrame:
    """Spearman rho of capability with ASR within each relation type (``model_relation`` rows)
    and each risk category (``model_category`` rows), to see where the association lives.
    15 tests invite false positives, so ``q_fdr`` adjusts the permutation p-values by
    Benjamini–Hochberg within each group type (relations among themselves, categories among
    themselves). No bootstrap here: these are descriptive breakdowns."""
    scores = _scores(capability_table, capability)
    rows = []
    for group_type, level, vocabulary in (("relation", "model_relation", RELATIONS),
                                          ("category", "model_category", CATEGORIES)):
        level_rows = asr_table[asr_table["level"] == level]
        for group in _group_order(level_rows[group_type], vocabulary):
            part = level_rows[level_rows[group_type] == group]
            frame = part.assign(score=part["model"].map(scores)).dropna(subset=["asr", "score"])
            missing = sorted(map(str, set(part["model"]) - set(frame["model"])))
            result = correlate(frame["score"], frame["asr"], n_boot=0, n_perm=n_perm, seed=seed)
            notes = [f"no score or ASR: {', '.join(missing)}" if missing else "", result["note"]]
            rows.append({"judge": judge, "capability": capability, "group_type": group_type,
                         "group": group, "n_models": result["n"],
                         "spearman_rho": result["spearman_rho"],
                         "p_perm": result["spearman_p_perm"],
                         "note": join_notes(notes)})
    table = pd.DataFrame(rows, columns=[c for c in GROUP_COLUMNS if c != "q_fdr"])
    table["q_fdr"] = math.nan
    for _, index in table.groupby("group_type").groups.items():
        p = table.loc[index, "p_perm"]
        tested = p.dropna()
        if len(tested):
            table.loc[tested.index, "q_fdr"] = multipletests(tested.to_numpy(),
                                                             method="fdr_bh")[1]
    return table[GROUP_COLUMNS]


def lofo_table(asr_table: pd.DataFrame, capability_table: pd.DataFrame,
               model_info: pd.DataFrame, judge: str,
               capabilities: list[str] | None = None) -> pd.DataFrame:
    """Leave-one-family-out rows for each capability source (all by default), with the full
    rho and the min/max over left-out families repeated on every row of a source."""
    info = model_info.drop_duplicates("model").set_index("model")
    tables = []
    for capability in capabilities or _capabilities(capability_table):
        frame, _ = _joined(asr_table, capability_table, capability)
        frame = frame.assign(family=frame["model"].map(info["family"]))
        rows, summary = leave_one_family_out(frame)
        tables.append(rows.assign(judge=judge, capability=capability,
                                  rho_all=summary["rho_all"], rho_min=summary["rho_min"],
                                  rho_max=summary["rho_max"],
                                  note=[join_notes([n, summary["note"]]) for n in rows["note"]]))
    if not tables:
        return pd.DataFrame(columns=LOFO_COLUMNS)
    return pd.concat(tables, ignore_index=True)[LOFO_COLUMNS]
