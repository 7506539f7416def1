"""Safe versus unsafe attention entropy: per model tests and one mixed model across models.

The paper reports lower entropy for unsafe generations. Per model we report the difference of
means (unsafe − safe) with a bootstrap interval, the Mann–Whitney U test and Cliff's delta;
across models a linear mixed model ``entropy ~ unsafe`` with a random intercept per model, so
that models with different baseline entropies do not masquerade as an effect.
"""

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy.stats import mannwhitneyu

from mirsafety.core.records import read_jsonl


def load_entropy(entropy_paths, judgment_paths, metric: str) -> pd.DataFrame:
    """One row per answer with both an entropy and a decided label (safe / unsafe)."""
    entropies = pd.DataFrame([r for p in entropy_paths for r in read_jsonl(p)])
    labels = pd.DataFrame([r for p in judgment_paths for r in read_jsonl(p)])
    frame = entropies.merge(labels[["model", "uid", "label"]], on=["model", "uid"], how="left",
                            validate="one_to_one")
    missing = frame["label"].isna().sum()
    if missing:
        raise ValueError(f"{missing} entropy record(s) have no judgment; judge every model first")
    decided = frame[(frame["status"] == "ok") & frame["label"].isin(["safe", "unsafe"])]
    return decided.assign(entropy=decided[metric].astype(float),
                          unsafe=(decided["label"] == "unsafe").astype(int))


def cliffs_delta(a, b) -> float:
    """P(a > b) − P(a < b) over all pairs: the effect size that goes with Mann–Whitney U."""
    a, b = np.asarray(a, float)[:, None], np.asarray(b, float)[None, :]
    return float((a > b).mean() - (a < b).mean())


def bootstrap_diff(unsafe, safe, *, n_boot=2000, seed=0) -> tuple[float, float]:
    """Percentile 95% interval of mean(unsafe) − mean(safe), resampling within each group."""
    rng = np.random.default_rng(seed)
    unsafe, safe = np.asarray(unsafe, float), np.asarray(safe, float)
    draws = (rng.choice(unsafe, (n_boot, len(unsafe))).mean(1)
             - rng.choice(safe, (n_boot, len(safe))).mean(1))
    return float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def compare_model(group: pd.DataFrame, seed: int = 0) -> dict:
    safe = group.loc[group["unsafe"] == 0, "entropy"]
    unsafe = group.loc[group["unsafe"] == 1, "entropy"]
    row = {"n_safe": len(safe), "n_unsafe": len(unsafe),
           "mean_safe": safe.mean() if len(safe) else np.nan,
           "mean_unsafe": unsafe.mean() if len(unsafe) else np.nan}
    if len(safe) and len(unsafe):
        test = mannwhitneyu(unsafe, safe, alternative="two-sided")
        low, high = bootstrap_diff(unsafe, safe, seed=seed)
        row.update(diff=row["mean_unsafe"] - row["mean_safe"], diff_ci_low=low, diff_ci_high=high,
                   mwu_u=float(test.statistic), mwu_p=float(test.pvalue),
                   cliffs_delta=cliffs_delta(unsafe, safe))
    else:
        row.update(diff=np.nan, diff_ci_low=np.nan, diff_ci_high=np.nan, mwu_u=np.nan,
                   mwu_p=np.nan, cliffs_delta=np.nan)
    return row


def comparison_table(frame: pd.DataFrame) -> pd.DataFrame:
    rows = [{"model": model, **compare_model(group)} for model, group in frame.groupby("model")]
    return pd.DataFrame(rows)


def mixed_model(frame: pd.DataFrame) -> pd.DataFrame:
    """entropy ~ unsafe + (1 | model); NaN with a note where it cannot be fitted."""
    usable = frame.groupby("model").filter(lambda g: g["unsafe"].nunique() == 2)
    base = {"n_models": usable["model"].nunique(), "n_answers": len(usable)}
    if base["n_models"] < 2:
        return pd.DataFrame([{**base, "coef_unsafe": np.nan, "se": np.nan, "p": np.nan,
                              "ci_low": np.nan, "ci_high": np.nan,
                              "note": "needs two or more models with both safe and unsafe answers"}])
    fit = smf.mixedlm("entropy ~ unsafe", usable, groups=usable["model"]).fit(reml=True)
    low, high = fit.conf_int().loc["unsafe"]
    return pd.DataFrame([{**base, "coef_unsafe": fit.params["unsafe"], "se": fit.bse["unsafe"],
                          "p": fit.pvalues["unsafe"], "ci_low": low, "ci_high": high,
                          "note": "" if fit.converged else "did not converge"}])


def layer_profile(frame: pd.DataFrame, layer_metric: str) -> pd.DataFrame:
    """Mean entropy per model, layer and label: where in the network the difference sits.

    A layer is named by its index in the model (the records' ``layers``), so a model whose
    cross-attention layers are not measured (Mllama) keeps its own layer numbers."""
    rows = []
    for (model, label), group in frame.groupby(["model", "label"]):
        values = np.array(group[layer_metric].tolist(), float)
        for layer, value in zip(group["layers"].iloc[0], values.mean(0), strict=True):
            rows.append({"model": model, "layer": layer, "label": label,
                         "mean_entropy": value, "n": len(group)})
    return pd.DataFrame(rows)


COMPARISON_COLUMNS = ["model", "n_safe", "n_unsafe", "mean_safe", "mean_unsafe", "diff",
                      "diff_ci_low", "diff_ci_high", "mwu_u", "mwu_p", "cliffs_delta"]
LAYER_COLUMNS = ["model", "layer", "label", "mean_entropy", "n"]


def write_comparison(entropy_paths, judgment_paths, metric: str, comparison_path, layers_path,
                     mixed_path) -> None:
    """All three tables. With no entropy pass at all, the comparison and layer tables are empty
    (headers only) and the mixed-model table has one row saying why."""
    if not entropy_paths:
        pd.DataFrame(columns=COMPARISON_COLUMNS).to_csv(comparison_path, index=False)
        pd.DataFrame(columns=LAYER_COLUMNS).to_csv(layers_path, index=False)
        mixed_model(pd.DataFrame(columns=["model", "unsafe", "entropy"])).to_csv(mixed_path,
                                                                                 index=False)
        return
    frame = load_entropy(entropy_paths, judgment_paths, f"entropy_{metric}_mean")
    comparison_table(frame).reindex(columns=COMPARISON_COLUMNS).to_csv(
        comparison_path, index=False, float_format="%.8g")
    layer_profile(frame, f"entropy_{metric}").to_csv(layers_path, index=False,
                                                     float_format="%.8g")
    mixed_model(frame).to_csv(mixed_path, index=False, float_format="%.8g")
