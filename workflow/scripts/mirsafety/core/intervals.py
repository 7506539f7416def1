"""The Wilson score interval, the one interval every proportion in the study is reported with.

ASR cells, the judge audit's precision and recall, and measured reasoning accuracy all use it:
one definition, so the tables cannot disagree on how an interval was made.
"""

import numpy as np
from statsmodels.stats.proportion import proportion_confint


def wilson(successes, trials) -> tuple[np.ndarray, np.ndarray]:
    """Wilson 95% interval as proportions (arrays in, arrays out); NaN where there were no trials."""
    successes, trials = np.asarray(successes, float), np.asarray(trials, float)
    low, high = np.full_like(trials, np.nan), np.full_like(trials, np.nan)
    some = trials > 0
    low[some], high[some] = proportion_confint(successes[some], trials[some], alpha=0.05,
                                               method="wilson")
    return low, high
