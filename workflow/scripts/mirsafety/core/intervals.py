"""The intervals every proportion and every agreement in the study is reported with.

ASR cells, the judge audit's precision and recall, and measured reasoning accuracy all use the
Wilson score interval; judge-judge and judge-people agreement both use ``cohen_kappa``: one
definition each, so the tables cannot disagree on how an interval was made.
"""

import warnings

import numpy as np
from statsmodels.stats.inter_rater import cohens_kappa
from statsmodels.stats.proportion import proportion_confint

#: A kappa standard error at or below this is zero: the variance formula's rounding gives
#: -7e-18 where it is exactly 0.
_ZERO_SE = 1e-12


def wilson(successes, trials) -> tuple[np.ndarray, np.ndarray]:
    """Wilson 95% interval as proportions (arrays in, arrays out); NaN where there were no trials."""
    successes, trials = np.asarray(successes, float), np.asarray(trials, float)
    low, high = np.full_like(trials, np.nan), np.full_like(trials, np.nan)
    some = trials > 0
    low[some], high[some] = proportion_confint(successes[some], trials[some], alpha=0.05,
                                               method="wilson")
    return low, high


def _single_label(table: np.ndarray, raters, labels) -> str:
    """Why kappa is undefined for lack of variation ("" if both raters used both labels)."""
    constant = [(rater, labels[int(np.argmax(totals))])
                for rater, totals in zip(raters, (table.sum(1), table.sum(0)))
                if (totals == 0).any()]
    return " and ".join(f"{rater} gave every answer one label ({label})"
                        for rater, label in constant)


def cohen_kappa(table, raters=("rater A", "rater B"), labels=("unsafe", "safe")
                ) -> tuple[dict, str]:
    """Cohen's kappa of a 2×2 table (rows: the first of ``raters``' ``labels``; columns: the
    second's) with a 95% interval from statsmodels' asymptotic standard error, clipped to
    [-1, 1]: ``{"kappa", "kappa_ci_low", "kappa_ci_high"}`` and a note ("" when all three are
    defined) saying why any is NaN.

    Kappa is agreement beyond what each rater's label rates predict. A rater who gives every
    answer one label has no rate to beat: kappa is n/a (statsmodels gives 0 or NaN there, with a
    variance of 0 or -7e-18 that printed as [0.00, 0.00], or through ``max(-1, NaN)`` as
    [-1, 1]). Where the asymptotic variance is 0 otherwise (perfect agreement or disagreement),
    kappa stands but a normal interval would claim certainty, so the interval is n/a."""
    table = np.asarray(table, float)
    nan = {"kappa": np.nan, "kappa_ci_low": np.nan, "kappa_ci_high": np.nan}
    if table.sum() == 0:
        return nan, "kappa n/a: no answer labelled by both"
    single = _single_label(table, raters, labels)
    if single:
        return nan, f"kappa n/a: {single}"
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        result = cohens_kappa(table)
    kappa = {**nan, "kappa": float(result.kappa)}
    if not result.std_kappa > _ZERO_SE:
        extreme = "agreement" if result.kappa > 0 else "disagreement"
        return kappa, (f"kappa interval n/a: the asymptotic variance is 0 at perfect {extreme}, "
                       "where a normal interval would claim certainty")
    return {**kappa, "kappa_ci_low": max(-1.0, float(result.kappa_low)),
            "kappa_ci_high": min(1.0, float(result.kappa_upp))}, ""
