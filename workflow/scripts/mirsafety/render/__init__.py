"""Stage 8, render: figures, LaTeX tables, the numbers macros and the compiled paper.

Every function takes the analysis stage's CSV files (as paths or DataFrames) and writes one
output; nothing here computes a statistic the analysis did not already compute, except the OLS
line and band drawn in ``asr_vs_reasoning`` (refitted on the plotted points) and the summary
numbers the text quotes (``numbers.collect_numbers``).

- ``figures``: PDF figures, byte-stable (no timestamps, fixed compression and hash salt).
- ``tables``: booktabs ``tabular`` fragments with every cell and header LaTeX-escaped.
- ``numbers``: one ``\\newcommand`` per number the paper quotes.
- ``paper``: copies ``paper/`` beside the generated files and runs ``latexmk``.
"""

import math
from pathlib import Path

import pandas as pd

from mirsafety.core.taxonomy import NO_KIND, SAFE_KINDS

#: What the render stage writes (figures/<name>.pdf, tables/<name>.tex, tables/numbers.tex):
#: paper/main.tex reads exactly these, and the workflow's render rule declares them.
FIGURES = ("asr_vs_reasoning", "asr_heatmap", "asr_by_category", "taxonomy_shares",
           "entropy_safe_unsafe", "asr_by_condition", "power_vs_models")
TABLES = ("asr_main", "asr_relation", "correlation", "entropy", "conditions", "judge_audit",
          "excluded")
NUMBERS = "numbers"

#: Safe-answer kinds in the order the figures show them, judges without kinds last.
KIND_ORDER = (*SAFE_KINDS, NO_KIND)


def read_frame(source) -> pd.DataFrame:
    """A DataFrame given as itself or as a CSV path. Only empty cells (and "nan") are missing:
    a model called "NA" or "None" stays a name."""
    if isinstance(source, pd.DataFrame):
        return source.copy()
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"render input {path} does not exist (make it with its rule first)")
    try:
        return pd.read_csv(path, keep_default_na=False, na_values=["", "nan", "NaN"])
    except pd.errors.EmptyDataError:  # not even a header: nothing was measured
        return pd.DataFrame()


def require(frame: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing and len(frame.columns):
        raise ValueError(f"{what} lacks column(s) {missing}; it has {list(frame.columns)}")


def ordered(values, canonical) -> list:
    """Distinct ``values`` in the canonical order, unknown ones after it, sorted."""
    values = list(dict.fromkeys(v for v in values if isinstance(v, str)))
    known = [v for v in canonical if v in values]
    return known + sorted(v for v in values if v not in canonical)


def pretty(name) -> str:
    """A dataset value for display: Spatial_Juxtaposition -> Spatial Juxtaposition."""
    return str(name).replace("_", " ")


def model_level(asr: pd.DataFrame) -> pd.DataFrame:
    """The per-model rows of an ASR table (level ``model``), ASR and its interval in percent,
    sorted by ASR (highest first; ties and missing values by name)."""
    if asr.empty or "level" not in asr:
        return pd.DataFrame(columns=["model", "asr_pct", "lo_pct", "hi_pct", "n_unsafe",
                                     "n_judged", "n_error"])
    rows = asr[asr["level"] == "model"].copy()
    rows["asr_pct"] = rows["asr"].astype(float) * 100
    rows["lo_pct"] = rows["ci_low"].astype(float) * 100
    rows["hi_pct"] = rows["ci_high"].astype(float) * 100
    rows["_key"] = rows["asr_pct"].fillna(-math.inf)
    rows = rows.sort_values(["_key", "model"], ascending=[False, True], kind="mergesort")
    return rows.drop(columns="_key").reset_index(drop=True)


def model_order(asr: pd.DataFrame) -> list[str]:
    """Models by overall ASR, highest first: the order of every figure and table."""
    ordered_models = list(model_level(asr)["model"])
    rest = sorted(set(asr["model"]) - set(ordered_models)) if "model" in asr else []
    return ordered_models + rest


def select_judge(correlation: pd.DataFrame, judge: str | None) -> pd.DataFrame:
    """The rows of one judge. Without ``judge`` the table must hold a single judge."""
    if correlation.empty or "judge" not in correlation:
        return correlation
    judges = sorted(correlation["judge"].dropna().astype(str).unique())
    if judge is None:
        if len(judges) > 1:
            raise ValueError(f"correlation table holds judges {judges}: name the one to render")
        return correlation
    if judge not in judges:
        raise ValueError(f"correlation table has no rows for judge {judge!r}; it has {judges}")
    return correlation[correlation["judge"].astype(str) == judge]


def finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def primary_capability(names, preferred: str | None = None) -> str | None:
    """The capability the text and the first figure panel lead with, chosen by name, never by
    result: ``preferred`` when given (it must exist; the rules pass
    ``config["analysis"]["primary_capability"]``, i.e. common.smk's ``primary_capability()``);
    else as the analysis stage does, the measured score (MuirBench first if measured), then
    published MuirBench (docs/paper-facts.md's default benchmark), then other published scores, by
    name. None when there is no capability at all."""
    names = sorted({str(n) for n in names if isinstance(n, str)})
    if preferred is not None:
        if preferred not in names:
            raise ValueError(f"primary capability {preferred!r} is not among {names}")
        return preferred
    ranked = sorted(names, key=lambda n: (not n.startswith("measured:"),
                                          "muirbench" not in n.lower(), n))
    return ranked[0] if ranked else None


def split_capability(name) -> tuple[str, str]:
    """``measured:mir-reasoning-embedded`` -> (``mir-reasoning-embedded``, ``(measured)``)."""
    kind, sep, bench = str(name).partition(":")
    return (bench, f"({kind})") if sep else (str(name), "")
