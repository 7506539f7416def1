"""The numbers the paper's text quotes, as LaTeX macros (``numbers.tex``).

main.tex writes no result as a literal: every one is a macro defined here, so the text can never
disagree with the tables. ``collect_numbers`` always returns the same keys, whatever the data
(a missing value prints as "n/a"), so the paper builds on any run.

Formats, by the key's suffix (one rule for every number of a kind):

- ``*_pct``: a percentage, already ×100: one decimal and ``\\%`` (``12.3\\%``);
- ``*_p``: the whole phrase of a p-value, three decimals or ``<0.001``
  (``\\ensuremath{p=0.034}``), or ``p n/a``, so that the text writes ``\\PrimaryRhoP{}``
  alone and never glues a sign to "n/a";
- ``int``: thousands separated (``2,676``);
- other ``float``: ``PRECISION[key]`` decimals (default 2), a true minus sign; more where the
  values need them to differ (``resolved_precision``), and ``DIFFERENCES`` as m×10^e when
  that is more than ``tables.MAX_DECIMALS``;
- ``str``: LaTeX-escaped text; a ``tables.Latex`` string is written as is.
"""

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from mirsafety.core.notes import undefined_reason
from mirsafety.core.taxonomy import CATEGORIES, RELATIONS
from mirsafety.render import (
    finite,
    model_level,
    pretty,
    primary_capability,
    read_frame,
    select_judge,
    split_capability,
)
from mirsafety.render.tables import (
    Latex,
    decimals_for,
    fmt_difference,
    fmt_float,
    fmt_int,
    latex_escape,
)

NA = "n/a"
PRECISION = {"entropy_diff_mean": 3, "entropy_diff_min": 3, "entropy_diff_max": 3,
             "entropy_safe_mean": 3, "entropy_unsafe_mean": 3}
# Numbers the text sets side by side: shown to the places their gap needs, so that two
# entropies 1e-6 apart never both read 1.000, nor the differences 0.000.
COMPARED = ("entropy_safe_mean", "entropy_unsafe_mean")
DIFFERENCES = ("entropy_diff_mean", "entropy_diff_min", "entropy_diff_max")
# Numbers of the original study (docs/paper-facts.md), quoted as background, not as our results.
PUBLISHED = {"published_instances": 2676, "published_models": 19, "published_relations": 9,
             "published_categories": 6, "published_seeds": 600, "published_min_images": 2,
             "published_max_images": 4}
CI_LEVEL = 95
ALPHA = 0.05
# Commands of the LaTeX kernel and the packages main.tex loads that a short key could shadow;
# \newcommand would stop the build on them, this names the key instead.
RESERVED = {"AA", "AE", "DH", "DJ", "H", "L", "O", "OE", "P", "S", "SS", "TH", "Pr", "Re", "Im",
            "Alph", "Roman", "Large", "LARGE", "Huge", "Ref", "Url", "Hat", "Bar", "Vec", "Dot",
            "Delta", "Gamma", "Lambda", "Omega", "Phi", "Pi", "Psi", "Sigma", "Theta", "Upsilon",
            "Xi", "Join", "Box", "Diamond", "Mc", "Cite", "Citet", "Citep", "Citeauthor",
            "Citeyear", "Autoref", "Nameref", "Hyperref", "Hypertarget", "Hyperlink", "Sc",
            "Sl", "Tt", "Bf", "It", "Rm", "Sf", "Em", "And", "Item", "Label", "Caption"}
_DIGITS = ["Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine"]


def macro_name(key: str) -> str:
    """``asr_max_pct`` -> ``AsrMaxPct``; digits become words (``top5`` -> ``TopFive``); any
    other character separates words. The result is letters only."""
    spaced = re.sub(r"\d", lambda m: " " + _DIGITS[int(m.group())] + " ", str(key))
    words = re.split(r"[^A-Za-z]+", spaced)
    name = "".join(w[:1].upper() + w[1:] for w in words if w)
    if not name:
        raise ValueError(f"number key {key!r} gives no macro name")
    return name


def format_value(key: str, value, precision=None) -> str:
    """One macro body, by the rules in the module docstring."""
    precision = PRECISION if precision is None else precision
    if isinstance(value, Latex):
        return str(value)
    if isinstance(value, str):
        return latex_escape(value)
    if key.endswith("_p") and not isinstance(value, (str, bool)):
        return p_phrase(value)
    if value is None or isinstance(value, bool):
        return NA if value is None else ("yes" if value else "no")
    if isinstance(value, (int, np.integer)):
        return fmt_int(value)
    if not finite(value):
        return NA
    if key.endswith("_pct"):
        return fmt_float(value, 1) + r"\%"
    if key in DIFFERENCES:
        return fmt_difference(value, precision.get(key, 2))
    return fmt_float(value, precision.get(key, 2))


def p_phrase(p) -> str:
    """``p = 0.034``, ``p < 0.001`` or ``p n/a`` (None or NaN): the symbol is part of the
    macro, so the sentence reads the same whether or not the p-value exists."""
    if p is None or not finite(p):
        return rf"\ensuremath{{p}} {NA}"
    relation = "<0.001" if float(p) < 0.001 else f"={float(p):.3f}"
    return rf"\ensuremath{{p{relation}}}"


def resolved_precision(values: dict, precision: dict) -> dict:
    """``precision`` raised where the values need more places (``tables.decimals_for``): the
    ``COMPARED`` numbers to the places of their gap, the ``DIFFERENCES`` to their own."""
    out = dict(precision)
    a, b = (values.get(k) for k in COMPARED)
    groups = ((COMPARED, [a - b] if finite(a) and finite(b) else []),
              (DIFFERENCES, [values.get(k) for k in DIFFERENCES]))
    for keys, sizes in groups:
        out.update(dict.fromkeys(keys, decimals_for(sizes, max(out.get(k, 2) for k in keys))))
    return out


def numbers_tex(values: dict, precision=None) -> str:
    """``\\newcommand{\\Name}{value}`` for each number, sorted by macro name, to the places
    ``resolved_precision`` reads off ``values``. Raises when two keys give the same macro
    name."""
    precision = resolved_precision(values, PRECISION if precision is None else precision)
    seen: dict[str, str] = {}
    lines = ["% generated by mirsafety.render.numbers: one macro per number the paper quotes"]
    for key, value in values.items():
        name = macro_name(key)
        if name in RESERVED:
            raise ValueError(f"key {key!r} gives \\{name}, a LaTeX command already; rename it")
        if name in seen:
            raise ValueError(f"keys {seen[name]!r} and {key!r} both give the macro \\{name}")
        seen[name] = key
    for name in sorted(seen):
        key = seen[name]
        lines.append(f"\\newcommand{{\\{name}}}{{{format_value(key, values[key], precision)}}}")
    return "\n".join(lines) + "\n"


def write_numbers(path, values: dict, precision=None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(numbers_tex(values, precision), encoding="utf-8")
    return path


# --- choosing the numbers ----------------------------------------------------------------------

def _pooled(rows: pd.DataFrame, by: str) -> pd.DataFrame:
    """ASR pooled over models per ``by`` value (unsafe / judged summed over models), percent."""
    if rows.empty:
        return pd.DataFrame(columns=[by, "pct"])
    sums = rows.groupby(by)[["n_unsafe", "n_judged"]].sum()
    sums = sums[sums["n_judged"] > 0]
    return (sums["n_unsafe"] / sums["n_judged"] * 100).rename("pct").reset_index()


def _extreme(pooled: pd.DataFrame, by: str, order, largest: bool):
    if pooled.empty:
        return NA, math.nan
    rank = {v: k for k, v in enumerate(order)}
    pooled = pooled.assign(_r=[rank.get(v, len(rank)) for v in pooled[by]])
    pooled = pooled.sort_values(["pct", "_r"], ascending=[not largest, True], kind="mergesort")
    row = pooled.iloc[0]
    return pretty(row[by]), float(row["pct"])


def _reason(row, statistic: str) -> str | None:
    """Why correlation.csv's ``row`` says ``statistic`` is n/a, in its note's words (None when
    it does not say): the text gives the analysis's reason, never one guessed here."""
    return None if row is None else undefined_reason(row.get("note"), statistic)


def _rho_reason(chosen, row) -> str:
    if chosen is None:
        return "no capability score"
    if row is None:
        return "no row in correlation.csv"
    return _reason(row, "correlation") or "no reason given in correlation.csv"


def _with_reason(value, reason: str | None):
    """``value``, or "n/a (reason)" where it is undefined and the analysis said why."""
    return f"{NA} ({reason})" if reason and not finite(value) else value


def _trend(rho, p, reason: str) -> str:
    """How ASR goes with the capability, for "ASR <trend> <capability>"; an undefined rho
    gives ``reason``."""
    if not finite(rho):
        return f"cannot be related ({reason}) to"
    if finite(p) and p < ALPHA:
        return "rises with" if rho > 0 else "falls with"
    return "is not significantly associated with"


def _power_row(power: pd.DataFrame, scenario: str, source: str):
    """The power table's row of ``scenario`` at ``rho_source``, or None."""
    if power.empty:
        return None
    rows = power[(power["scenario"] == scenario) & (power["rho_source"] == source)]
    return rows.iloc[0] if len(rows) else None


def _power_pct(row):
    """A row's power in percent, or "n/a (reason)" in the power table's words."""
    if row is None:
        return f"{NA} (no power table)"
    return _with_reason(row["power"] * 100, undefined_reason(row["note"], "power"))


def _power_stated(power: pd.DataFrame, scenario: str, column: str) -> Latex:
    """The stated rhos (``column`` "true_rho") or the ``scenario``'s power at each of them
    (``column`` "power"), as "a, b and c" (the text says "respectively")."""
    if power.empty:
        return Latex(NA)
    stated = power[(power["scenario"] == scenario) & (power["rho_source"] == "stated")]
    parts = [f"{value:g}" if column == "true_rho" else format_value("p_pct", value * 100)
             for value in stated[column].astype(float)]
    if not parts:
        return Latex(NA)
    return Latex(parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1])


def power_numbers(power, planted_rho: float | None = None) -> dict:
    """What the text says about power (``power.csv``; see mirsafety.analysis.power) and, when
    the run's models are a zoo (``planted_rho`` given), that it is a method check with planted
    effects, not a finding."""
    power = read_frame(power)
    run, study = (_power_row(power, s, "recovered") for s in ("run", "study"))
    values = {
        "power_run_n": int(run["n_models"]) if run is not None else None,
        "power_run_instances": int(run["instances"]) if run is not None else None,
        "power_study_n": int(study["n_models"]) if study is not None else None,
        "power_study_instances": int(study["instances"]) if study is not None else None,
        "power_recovered_rho": abs(float(run["true_rho"])) if run is not None else math.nan,
        "power_run_recovered_pct": _power_pct(run),
        "power_study_recovered_pct": _power_pct(study),
        "power_stated_rhos": _power_stated(power, "run", "true_rho"),
        "power_run_stated": _power_stated(power, "run", "power"),
        "power_study_stated": _power_stated(power, "study", "power"),
    }
    if planted_rho is None:
        return {**values, "run_nature": "", "run_nature_detail": ""}
    planted = f"{planted_rho:.2f}".replace("-", "\u2212")
    return {**values,
            "run_nature": "This run is a method check with planted effects on tiny trained "
                          "models, not a finding about real models.",
            "run_nature_detail": "Its models are a zoo of tiny models trained on CPU to a "
                                 "reasoning skill and a compliance rate set in a spec, with a "
                                 f"planted Spearman rank correlation of {planted} between the "
                                 "two; what the analysis recovers shows whether the workflow "
                                 "finds an effect known to be there."}


def collect_numbers(asr, correlation, entropy_comparison, capability, manifest=None, *,
                    safe_kinds=None, judge: str | None = None,
                    primary: str | None = None, dataset: str | None = None,
                    power=None, planted_rho: float | None = None) -> dict:
    """The numbers the paper quotes, keyed for ``numbers_tex``.

    ``asr``: one judge's asr.csv; ``correlation``: correlation.csv (the rows of ``judge``);
    ``entropy_comparison``: entropy_comparison.csv; ``capability``: capability.csv;
    ``manifest``: the dataset's manifest.json (dict or path) for the instance counts (else they
    are read off the ASR table); ``safe_kinds``: safe_kinds.csv for the taxonomy shares;
    ``primary``: the capability the text leads with (default: ``primary_capability``);
    ``power``: power.csv, and ``planted_rho`` the zoo's planted rho (None: real models), for
    ``power_numbers``.
    """
    asr, cap = read_frame(asr), read_frame(capability)
    corr = select_judge(read_frame(correlation), judge)
    comp = read_frame(entropy_comparison)
    values: dict = dict(PUBLISHED)
    values["ci_level"] = CI_LEVEL
    values["significance_level"] = ALPHA
    values["judge"] = judge if judge is not None else (
        str(corr["judge"].iloc[0]) if len(corr) and "judge" in corr else NA)

    # the data
    if isinstance(manifest, (str, Path)):
        import json
        manifest = json.loads(Path(manifest).read_text())
    counts = (manifest or {}).get("counts", {})
    models = model_level(asr)
    values["dataset"] = dataset or (manifest or {}).get("dataset") or NA
    n_instances = counts.get("total")
    if n_instances is None and len(models):
        n_instances = int((models["n_judged"] + models["n_error"]).max())
    values["n_instances"] = int(n_instances) if n_instances is not None else None
    values["n_images"] = int(manifest["n_images"]) if manifest and "n_images" in manifest else None
    rel_rows = asr[asr["level"] == "model_relation"] if len(asr) else asr
    cat_rows = asr[asr["level"] == "model_category"] if len(asr) else asr
    values["n_relations"] = len(counts["by_relation"]) if "by_relation" in counts else (
        int(rel_rows["relation"].nunique()) if len(rel_rows) else None)
    values["n_categories"] = len(counts["by_category"]) if "by_category" in counts else (
        int(cat_rows["category"].nunique()) if len(cat_rows) else None)

    # attack success rates
    values["n_models"] = len(models)
    values["n_answers"] = int((models["n_judged"] + models["n_error"]).sum()) if len(models) else 0
    values["n_error"] = int(models["n_error"].sum()) if len(models) else 0
    values["n_clipped"] = int(models["n_clipped"].sum()) if len(models) else 0
    judged = models.dropna(subset=["asr_pct"])
    if len(judged):
        top, bottom = judged.iloc[0], judged.iloc[-1]
        values.update(asr_max_pct=top["asr_pct"], asr_max_model=top["model"],
                      asr_min_pct=bottom["asr_pct"], asr_min_model=bottom["model"],
                      asr_median_pct=float(judged["asr_pct"].median()))
        total = judged["n_judged"].sum()
        values["asr_pooled_pct"] = judged["n_unsafe"].sum() / total * 100 if total else math.nan
    else:
        values.update(asr_max_pct=math.nan, asr_max_model=NA, asr_min_pct=math.nan,
                      asr_min_model=NA, asr_median_pct=math.nan, asr_pooled_pct=math.nan)
    rel = _pooled(rel_rows, "relation")
    values["relation_max"], values["relation_max_pct"] = _extreme(rel, "relation", RELATIONS, True)
    values["relation_min"], values["relation_min_pct"] = _extreme(rel, "relation", RELATIONS, False)
    cat = _pooled(cat_rows, "category")
    values["category_max"], values["category_max_pct"] = _extreme(cat, "category", CATEGORIES, True)
    values["category_min"], values["category_min_pct"] = _extreme(cat, "category", CATEGORIES,
                                                                  False)

    # capability and the correlation
    names = list(corr["capability"]) if len(corr) else list(cap.get("capability", []))
    chosen = primary_capability(names, primary) if names else None
    values["primary_capability"] = " ".join(split_capability(chosen)).strip() if chosen else NA
    values["n_capabilities"] = int(corr["capability"].nunique()) if len(corr) else 0
    row = (corr[corr["capability"] == chosen].iloc[0]
           if chosen is not None and len(corr) and (corr["capability"] == chosen).any() else None)

    def get(column):
        return row[column] if row is not None and column in row.index else math.nan

    n_corr = get("n_models")
    values["primary_n"] = int(n_corr) if finite(n_corr) else None
    values.update(primary_rho=get("spearman_rho"),
                  primary_rho_low=_with_reason(get("spearman_ci_low"),
                                               _reason(row, "bootstrap CI")),
                  primary_rho_high=get("spearman_ci_high"), primary_rho_p=get("spearman_p_perm"),
                  primary_r=get("pearson_r"), primary_r_p=get("pearson_p_perm"),
                  primary_slope=get("ols_slope"),
                  primary_slope_low=_with_reason(get("ols_ci_low"), _reason(row, "OLS SE")),
                  primary_slope_high=get("ols_ci_high"), primary_slope_p=get("ols_p"),
                  primary_partial_rho=_with_reason(get("partial_rho_log_params"),
                                                   _reason(row, "partial")),
                  primary_partial_p=get("partial_p"))
    values["primary_trend"] = _trend(get("spearman_rho"), get("spearman_p_perm"),
                                     _rho_reason(chosen, row))
    rhos = corr["spearman_rho"].astype(float) if len(corr) else pd.Series(dtype=float)
    values["n_capabilities_positive"] = int((rhos > 0).sum())
    scores = cap[cap["capability"] == chosen]["score"].astype(float) if len(cap) else pd.Series(
        dtype=float)
    values["primary_score_min_pct"] = scores.min() if len(scores) else math.nan
    values["primary_score_max_pct"] = scores.max() if len(scores) else math.nan

    # attention entropy
    diffs = comp["diff"].astype(float).dropna() if len(comp) else pd.Series(dtype=float)
    values["entropy_n_models"] = int(len(comp))
    values["entropy_n_compared"] = int(len(diffs))
    values["entropy_n_lower"] = int((diffs < 0).sum())
    values["entropy_lower_share_pct"] = (diffs < 0).mean() * 100 if len(diffs) else math.nan
    values["entropy_diff_mean"] = diffs.mean() if len(diffs) else math.nan
    values["entropy_diff_min"] = diffs.min() if len(diffs) else math.nan
    values["entropy_diff_max"] = diffs.max() if len(diffs) else math.nan
    sig = comp[(comp["mwu_p"].astype(float) < ALPHA)] if len(comp) else comp
    values["entropy_n_significant"] = int(len(sig))
    if len(comp) and (comp["n_safe"].sum() > 0):
        values["entropy_safe_mean"] = float(np.average(comp["mean_safe"].fillna(0),
                                                       weights=comp["n_safe"]))
    else:
        values["entropy_safe_mean"] = math.nan
    if len(comp) and (comp["n_unsafe"].sum() > 0):
        values["entropy_unsafe_mean"] = float(np.average(comp["mean_unsafe"].fillna(0),
                                                         weights=comp["n_unsafe"]))
    else:
        values["entropy_unsafe_mean"] = math.nan

    # the safe-answer taxonomy
    kinds = read_frame(safe_kinds) if safe_kinds is not None else pd.DataFrame()
    total = float(kinds["n"].sum()) if len(kinds) else 0.0
    values["n_safe_answers"] = int(total)
    for kind in ("refusal", "misunderstanding", "evasive", "irrelevant"):
        n = float(kinds.loc[kinds["safe_kind"] == kind, "n"].sum()) if len(kinds) else 0.0
        values[f"safe_{kind}_pct"] = n / total * 100 if total else math.nan
    labelled = total - (float(kinds.loc[kinds["safe_kind"] == "none", "n"].sum())
                        if len(kinds) else 0.0)
    values["safe_unlabelled_pct"] = (total - labelled) / total * 100 if total else math.nan
    values.update(power_numbers(power if power is not None else pd.DataFrame(), planted_rho))
    return values


__all__ = ["numbers_tex", "write_numbers", "collect_numbers", "power_numbers", "macro_name",
           "format_value", "p_phrase", "PRECISION", "PUBLISHED"]
