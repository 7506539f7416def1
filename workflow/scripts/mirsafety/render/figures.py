"""The paper's figures as PDF, drawn for print and byte-stable.

Sizes: every figure is at most ``TEXT_WIDTH`` inches wide and main.tex includes it at its natural
size, so a font of 8 pt in the file is 8 pt on the page (no text here is smaller). Colours: the
Okabe–Ito palette (colour-blind safe), with markers or hatches as a second cue; sequential maps
use cividis. Bytes: no dates or producer in the PDF, fixed compression and hash salt, TrueType
(Type 42) fonts, no pyplot state: drawing the same input twice gives the same file.

Each function takes the analysis stage's CSV files (paths or DataFrames), writes ``out_pdf`` and
returns the matplotlib ``Figure``. Degenerate input (one model, NaN correlations, no unsafe
answers, an empty table) draws what exists and says why a statistic is missing: the reason the
analysis gave (``core.notes.undefined_reason``), or "n too small".

One module for all seven figures, about 780 lines: they share the page geometry, palette, label
placement, axis rules and byte-stable saving above, and a figure's code is found here by its
name.
"""

import math
import textwrap
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.textpath import TextToPath
from matplotlib.ticker import FuncFormatter, MaxNLocator, ScalarFormatter
from matplotlib.transforms import Bbox
from scipy import stats

from mirsafety.core.notes import undefined_reason
from mirsafety.core.taxonomy import ALL, CATEGORIES, RELATIONS
from mirsafety.render import (
    FIGURES,
    KIND_ORDER,
    finite,
    model_level,
    model_order,
    ordered,
    pretty,
    primary_capability,
    read_frame,
    require,
    select_judge,
    split_capability,
)

TEXT_WIDTH = 6.3   # inches: main.tex's \textwidth (a4paper, 2.35 cm margins) is 6.4 in
COLUMN_WIDTH = 3.4
MIN_FONT_PT = 8
# Okabe & Ito (2008), without yellow (too light on white); black last.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
HATCHES = ["", "///", "...", "xxx", "\\\\\\", "+++", "ooo"]
SAFE_COLOUR, UNSAFE_COLOUR = "#0072B2", "#D55E00"
KIND_COLOURS = {"refusal": "#0072B2", "misunderstanding": "#E69F00", "evasive": "#CC79A7",
                "irrelevant": "#009E73", "none": "#999999"}
TOO_SMALL = "n too small"
DOT_PLOT_MAX = 10  # more models than this: asr_by_category is a heat map
NAME_LABELS_MAX = 8  # more models than this: points carry numbers, keyed below the panels
FIGURE_FILES = {name: f"{name}.pdf" for name in FIGURES}
CONDITION_ORDER = ["multi_image", "single_image", "prompt_only", "text_only"]
RC = {
    "font.family": "DejaVu Sans",
    "font.size": 8, "axes.labelsize": 8, "axes.titlesize": 9, "xtick.labelsize": 8,
    "ytick.labelsize": 8, "legend.fontsize": 8, "legend.title_fontsize": 8,
    "figure.titlesize": 9, "axes.linewidth": 0.6, "lines.linewidth": 1.0,
    "xtick.major.width": 0.6, "ytick.major.width": 0.6, "axes.spines.top": False,
    "axes.spines.right": False, "legend.frameon": False,
    "pdf.fonttype": 42, "pdf.compression": 6, "svg.hashsalt": "mirsafety-render",
    "svg.fonttype": "none", "path.simplify": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
}
PDF_METADATA = {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}


def _figure(width, height) -> Figure:
    return Figure(figsize=(min(width, TEXT_WIDTH), height), layout="constrained")


def _save(fig: Figure, out_pdf) -> Figure:
    out_pdf = Path(out_pdf)
    out_pdf.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_pdf, format="pdf", metadata=PDF_METADATA)
    return fig


def _by_name(models) -> list:
    """Models in name order, case aside: the order that gives each its ``_style`` in every
    figure."""
    return sorted(models, key=lambda m: (m.lower(), m))


def _style(k: int) -> dict:
    """The k-th model's colour and marker: distinct for 56 models."""
    return {"color": PALETTE[k % len(PALETTE)], "marker": MARKERS[k % len(MARKERS)]}


def _key_columns(labels, width_in: float, handletextpad=None, columnspacing=None) -> int:
    """How many columns (at most 3) a key of ``labels`` across a figure ``width_in`` wide can
    have without running past its edge: each column as wide as the widest label, its handle and
    the spacing (pads in font sizes; rcParams' where not given, as ``fig.legend`` takes them)."""
    rc = matplotlib.rcParams
    prop = FontProperties(family=rc["font.family"], size=MIN_FONT_PT)
    widest = max(TextToPath().get_text_width_height_descent(t, prop, ismath=False)[0]
                 for t in labels)
    pads = rc["legend.handlelength"] \
        + (rc["legend.handletextpad"] if handletextpad is None else handletextpad) \
        + (rc["legend.columnspacing"] if columnspacing is None else columnspacing)
    fits = int((width_in * 72 - 2 * MIN_FONT_PT) // (widest + pads * MIN_FONT_PT))
    return max(1, min(3, len(labels), fits))


def _note(ax, text, x=0.5, y=0.5, **kw):
    kw = {"ha": "center", "va": "center", "fontsize": MIN_FONT_PT, "color": "#444444", **kw}
    ax.text(x, y, text, transform=ax.transAxes, **kw)


def _empty(ax, text=TOO_SMALL):
    ax.set_xticks([])
    ax.set_yticks([])
    _note(ax, text)


def _fmt_p(p) -> str:
    if not finite(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def _luminance(rgba) -> float:
    r, g, b = rgba[:3]
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


# --- ASR against multi-image reasoning capability ------------------------------------------------

def _ols_band(x, y, grid, level=0.95):
    """Classical OLS fit of y on x and the pointwise confidence band of its mean on ``grid``."""
    n = len(x)
    slope, intercept = np.polyfit(x, y, 1)
    fit = intercept + slope * grid
    resid = y - (intercept + slope * x)
    s2 = resid @ resid / (n - 2)
    sxx = ((x - x.mean()) ** 2).sum()
    se = np.sqrt(s2 * (1 / n + (grid - x.mean()) ** 2 / sxx))
    t = stats.t.ppf(0.5 + level / 2, n - 2)
    return fit, fit - t * se, fit + t * se


def asr_vs_reasoning(asr, capability, correlation, out_pdf, *, judge: str | None = None,
                     primary: str | None = None) -> Figure:
    """One panel per capability score: each model's ASR (%, Wilson 95% interval) against its
    score (%, with its interval where known); the OLS line with its 95% confidence band
    (classical, refitted on the plotted points) only where the analysis stage defines the fit
    (its OLS slope is a number: enough models, scores not all equal), keyed below the panels;
    above the panel the correlation row's Spearman ρ, Pearson r, the permutation p of ρ and n.
    The leading score (``primary``, default ``primary_capability``'s choice) is the first
    panel, the others follow by name. Points carry the model's name, placed by ``_place_tags``
    so that no two labels overprint; with more than ``NAME_LABELS_MAX`` models, or where a name
    finds no free place beside its point (models crowded at one score), they carry a number,
    keyed (with the marker) below the panels."""
    asr, cap = read_frame(asr), read_frame(capability)
    corr = select_judge(read_frame(correlation), judge)
    require(cap, ["model", "capability", "score"], "capability table")
    models = model_level(asr)
    names = sorted(cap["capability"].dropna().unique()) if len(cap) else []
    lead = primary_capability(names, primary) if names else None
    panels = ([lead] + [n for n in names if n != lead]) if names else [None]
    numbered = len(models) > NAME_LABELS_MAX
    fig, clean = _reasoning_figure(models, cap, corr, panels, numbered)
    if not (clean or numbered):
        fig, _ = _reasoning_figure(models, cap, corr, panels, numbered=True)
    return _save(fig, out_pdf)


def _reasoning_figure(models, cap, corr, panels, numbered: bool):
    """The figure of ``asr_vs_reasoning``, points tagged by name or by number; returns it and
    whether every tag found a free place beside its point."""
    names_sorted = _by_name(models["model"])
    style = {m: {**_style(k), "tag": str(k + 1) if numbered else m}
             for k, m in enumerate(names_sorted)}
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    width = COLUMN_WIDTH if ncols == 1 else TEXT_WIDTH
    with matplotlib.rc_context({**RC, "axes.titlesize": MIN_FONT_PT}):
        fig = _figure(width, 2.9 * nrows + 0.1)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        for ax in axes.flat[len(panels):]:
            ax.set_axis_off()
        tags = [(ax, _reasoning_panel(ax, name, models, cap, corr, style))
                for ax, name in zip(axes.flat, panels)]
        fit = {label: handle for ax in axes.flat
               for handle, label in zip(*ax.get_legend_handles_labels())}
        handles = list(fit.values())
        if numbered:
            handles += [Line2D([], [], color=style[m]["color"], marker=style[m]["marker"],
                               linestyle="", markersize=4, label=f"{style[m]['tag']}  {m}")
                        for m in names_sorted]
        if handles:
            key_columns = _key_columns([h.get_label() for h in handles], width,
                                       handletextpad=0.3, columnspacing=1.2)
            fig.set_figheight(2.9 * nrows + 0.17 * math.ceil(len(handles) / key_columns) + 0.1)
            fig.legend(handles=handles, loc="outside lower center", ncol=key_columns,
                       handletextpad=0.3, columnspacing=1.2)
        return fig, _place_tags(fig, tags)


def _minus(text: str) -> str:
    return text.replace("-", "\u2212")


def _reasoning_panel(ax, name, models, cap, corr, style) -> list:
    """Draw one capability's panel; returns the (tag, point) pairs that ``_place_tags`` labels."""
    ax.set_xlabel("capability score (%)")
    ax.set_ylabel("ASR (%)")
    ax.set_ylim(-4, 104)
    if name is None:
        ax.set_title("no capability scores\nρ n/a")
        return []
    bench, kind = split_capability(name)
    title = f"{bench} {kind}".strip()
    if len(title) > 26:
        title = textwrap.fill(bench, 30, break_on_hyphens=False) + (f"\n{kind}" if kind else "")
    scores = cap[cap["capability"] == name][["model", "score"] + [
        c for c in ("ci_low", "ci_high") if c in cap]]
    points = models[["model", "asr_pct", "lo_pct", "hi_pct"]].merge(scores, on="model").dropna(
        subset=["asr_pct", "score"])  # ASR's own ci_low/ci_high would shadow the score's
    points = points.sort_values("model", kind="mergesort")
    x, y = points["score"].to_numpy(float), points["asr_pct"].to_numpy(float)
    n = len(points)
    row = corr[corr["capability"] == name] if len(corr) else corr
    if n >= 3 and np.ptp(x) > 0 and len(row) and finite(row["ols_slope"].iloc[0]):
        # drawn only where the analysis stage defines the fit (enough models, x not constant)
        grid = np.linspace(x.min(), x.max(), 101)
        fit, low, high = _ols_band(x, y, grid)
        ax.plot(grid, fit, color="#444444", linewidth=1.0, label="OLS fit")
        ax.fill_between(grid, low, high, color="#999999", alpha=0.3, linewidth=0,
                        label="95% CI of the fit")
    tags, extent = [], [*x]
    for _, p in points.iterrows():
        yerr = [[p["asr_pct"] - p["lo_pct"]], [p["hi_pct"] - p["asr_pct"]]]
        xerr = None
        if "ci_low" in p and finite(p.get("ci_low")) and finite(p.get("ci_high")):
            xerr = [[p["score"] - p["ci_low"]], [p["ci_high"] - p["score"]]]
            extent += [p["ci_low"], p["ci_high"]]
        if not (finite(yerr[0][0]) and finite(yerr[1][0])):
            yerr = None
        st = style.get(p["model"], {**_style(0), "tag": p["model"]})
        ax.errorbar(p["score"], p["asr_pct"], yerr=yerr, xerr=xerr, fmt=st["marker"],
                    color=st["color"], markersize=4, elinewidth=0.7, capsize=1.5)
        tags.append((st["tag"], (p["score"], p["asr_pct"])))
    if n:
        _percent_window(ax, min(extent), max(extent))
    rho = row["spearman_rho"].iloc[0] if len(row) else math.nan
    n_corr = row["n_models"].iloc[0] if len(row) else n
    if len(row) and finite(rho) and finite(n_corr):
        r = row["pearson_r"].iloc[0]
        stats_text = _minus(f"ρ = {rho:.2f}, r = " + (f"{r:.2f}" if finite(r) else "n/a")
                            + f"\np {_fmt_p(row['spearman_p_perm'].iloc[0])}, n = {int(n_corr)}")
    else:  # the reason correlation.csv gives, never one guessed here
        reason = (undefined_reason(row["note"].iloc[0], "correlation")
                  or "no reason in correlation.csv") if len(row) else "not in correlation.csv"
        stats_text = (f"ρ n/a (n = {int(n_corr) if finite(n_corr) else n}):\n"
                      + textwrap.fill(reason, 34))
    ax.set_title(f"{title}\n{stats_text}")
    return tags


def _percent_window(ax, low: float, high: float):
    """Show ``low``..``high`` (%) on the x axis with some air but never beyond 0–100: a window
    that would cross 0 or 100 is moved, not cut, and ticks stay inside [0, 100], so a percentage
    never reads negative (all models at 0 gives 0 to 4, not −2 to 2)."""
    pad = max(2.0, 0.15 * (high - low))
    width = min(high - low + 2 * pad, 100.0)
    start = min(max(low - pad, 0.0), 100.0 - width)
    ticks = MaxNLocator(6, steps=[1, 2, 2.5, 5, 10]).tick_values(start, start + width)
    ax.set_xticks([t for t in ticks if start - 1e-9 <= t <= start + width + 1e-9])
    ax.set_xlim(start - 0.03 * width, start + 1.03 * width)


# Where a point's label may go, nearest first: (direction, distance in points); farther than
# NEAR_PT a leader line joins label and point, and the label no longer counts as beside it.
NEAR_PT = 8
TAG_PLACES = [((dx, dy), r) for r in (3, 8, 14, 22, 32)
              for dx, dy in ((1, 0), (-1, 0), (1, 1), (-1, 1), (1, -1), (-1, -1), (0, 1), (0, -1))]
ALIGN = {1: "left", -1: "right", 0: "center"}, {1: "bottom", -1: "top", 0: "center"}
LEADER = {"arrowstyle": "-", "color": "#777777", "linewidth": 0.5, "shrinkA": 0.5,
          "shrinkB": 2.5}


def _place_tags(fig, panels) -> bool:
    """Label each point (``panels``: (axes, [(tag, (x, y))])) at the first of ``TAG_PLACES``
    where the label overprints no other label, marker or error bar and stays inside its panel,
    or else where it overlaps least; returns whether every label found a free place within
    ``NEAR_PT``. Text extents need the laid-out figure, so this runs last; the labels stay out of
    the layout, which they would otherwise move."""
    if not any(tags for _, tags in panels):
        return True
    clean = True
    canvas = FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    renderer = canvas.get_renderer()
    for ax, tags in panels:
        marks, placed = _marks(ax), []
        for tag, xy in tags:
            trial = ax.annotate(tag, xy, xytext=(0, 0), textcoords="offset points",
                                fontsize=MIN_FONT_PT)
            costs, boxes = [], []
            for (dx, dy), r in TAG_PLACES:
                trial.xyann = (dx * r, dy * r)
                trial.set_horizontalalignment(ALIGN[0][dx])
                trial.set_verticalalignment(ALIGN[1][dy])
                boxes.append(box := trial.get_window_extent(renderer))
                outside = box.width * box.height - _overlap(box, ax.bbox)
                costs.append(1000 * (outside + sum(_overlap(box, b) for b in placed))
                             + sum(_overlap(box, b) for b in marks))
            trial.remove()
            best = costs.index(min(costs))
            (dx, dy), r = TAG_PLACES[best]
            clean = clean and costs[best] == 0 and r <= NEAR_PT
            label = ax.annotate(tag, xy, xytext=(dx * r, dy * r), textcoords="offset points",
                                ha=ALIGN[0][dx], va=ALIGN[1][dy], fontsize=MIN_FONT_PT,
                                arrowprops=LEADER if r > NEAR_PT else None)
            label.set_in_layout(False)
            placed.append(boxes[best])
    return clean


def _marks(ax) -> list:
    """Display boxes of the panel's markers and error bars: what point labels keep clear of."""
    half, thin = ax.figure.dpi / 72 * 3, 1.0
    boxes = []
    for container in ax.containers:
        data, _, bars = container.lines
        for x, y in ax.transData.transform(data.get_xydata()):
            boxes.append(Bbox([[x - half, y - half], [x + half, y + half]]))
        for segment in (s for collection in bars for s in collection.get_segments()):
            (x0, y0), (x1, y1) = ax.transData.transform(segment)
            boxes.append(Bbox([[min(x0, x1) - thin, min(y0, y1) - thin],
                               [max(x0, x1) + thin, max(y0, y1) + thin]]))
    return boxes


def _overlap(a, b) -> float:
    """Area (display units²) that boxes ``a`` and ``b`` share."""
    return (max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
            * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0)))


# --- ASR by relation and by category -------------------------------------------------------------

def _heat(asr, level: str, column: str, canonical, out_pdf) -> Figure:
    """ASR (%) of each model (columns, by overall ASR) per ``column`` value (rows), the value in
    the cell, grey where no answer was judged."""
    asr = read_frame(asr)
    cells = asr[asr["level"] == level] if len(asr) else asr
    models = model_order(asr) if len(asr) else []
    rows = ordered(cells[column], canonical) if len(cells) else []
    decimals = 1 if len(models) <= 8 else 0
    with matplotlib.rc_context(RC):
        fig = _figure(2.4 + 0.55 * max(len(models), 1), 1.4 + 0.26 * max(len(rows), 1))
        ax = fig.subplots()
        if not (models and rows):
            _empty(ax)
            return _save(fig, out_pdf)
        grid = (cells.pivot_table(index=column, columns="model", values="asr",
                                  aggfunc="first", dropna=False)
                .reindex(index=rows, columns=models).to_numpy(float) * 100)
        cmap = matplotlib.colormaps["cividis"].with_extremes(bad="#dddddd")
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=100, aspect="auto")
        for i in range(len(rows)):
            for j in range(len(models)):
                v = grid[i, j]
                colour = "black" if not finite(v) or _luminance(cmap(v / 100)) > 0.5 else "white"
                ax.text(j, i, f"{v:.{decimals}f}" if finite(v) else "–", ha="center",
                        va="center", fontsize=MIN_FONT_PT, color=colour)
        ax.set_xticks(range(len(models)), models, rotation=40, ha="right",
                      rotation_mode="anchor")
        ax.set_yticks(range(len(rows)), [pretty(r) for r in rows])
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
        fig.colorbar(image, ax=ax, label="ASR (%)", shrink=0.9, pad=0.02)
        return _save(fig, out_pdf)


def asr_heatmap(asr, out_pdf) -> Figure:
    """ASR (%) of each model (columns, by overall ASR) on each relation type (rows), the value
    in the cell; grey where no answer was judged."""
    return _heat(asr, "model_relation", "relation", RELATIONS, out_pdf)


def asr_by_category(asr, out_pdf) -> Figure:
    """ASR (%) per risk category, one marker per model with its Wilson 95% interval. With more
    than ``DOT_PLOT_MAX`` models the markers would crowd: the figure is then a category × model
    heat map like ``asr_heatmap`` (intervals in the tables)."""
    asr = read_frame(asr)
    cells = asr[asr["level"] == "model_category"] if len(asr) else asr
    models = model_order(asr) if len(asr) else []
    if len(models) > DOT_PLOT_MAX:
        return _heat(asr, "model_category", "category", CATEGORIES, out_pdf)
    categories = ordered(cells["category"], CATEGORIES) if len(cells) else []
    style = {m: _style(k) for k, m in enumerate(_by_name(models))}
    with matplotlib.rc_context(RC):
        key_columns = _key_columns(models, TEXT_WIDTH) if models else 1
        legend_rows = math.ceil(len(models) / key_columns)
        fig = _figure(TEXT_WIDTH, 1.0 + 0.32 * max(len(categories), 1) * max(1, len(models) / 5)
                      + 0.18 * legend_rows)
        ax = fig.subplots()
        ax.set_xlabel("ASR (%)")
        ax.set_xlim(-2, 102)
        if not (models and categories):
            _empty(ax)
            return _save(fig, out_pdf)
        offsets = np.linspace(-0.3, 0.3, len(models)) if len(models) > 1 else [0.0]
        for k, model in enumerate(models):
            rows = cells[cells["model"] == model].set_index("category")
            ys, xs, lo, hi = [], [], [], []
            for c, category in enumerate(categories):
                if category not in rows.index or not finite(rows.loc[category, "asr"]):
                    continue
                r = rows.loc[category]
                ys.append(c + offsets[k])
                xs.append(r["asr"] * 100)
                lo.append(r["asr"] * 100 - r["ci_low"] * 100)
                hi.append(r["ci_high"] * 100 - r["asr"] * 100)
            ax.errorbar(xs, ys, xerr=[lo, hi], fmt=style[model]["marker"], markersize=3.5,
                        color=style[model]["color"], elinewidth=0.7, capsize=1.2, label=model)
        ax.set_yticks(range(len(categories)), [pretty(c) for c in categories])
        ax.set_ylim(len(categories) - 0.5, -0.5)
        ax.grid(axis="x", color="#dddddd", linewidth=0.5)
        ax.set_axisbelow(True)
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center",
                   ncol=key_columns)
        return _save(fig, out_pdf)


# --- the kinds of safe answers -----------------------------------------------------------------

def taxonomy_shares(safe_kinds, out_pdf) -> Figure:
    """Per model, how its safe answers divide into kinds (stacked to 100%), the number of safe
    answers in the model's label."""
    kinds = read_frame(safe_kinds)
    require(kinds, ["model", "safe_kind", "n"], "safe-kind table")
    kinds = kinds[kinds["n"] > 0] if len(kinds) else kinds
    models = _by_name(kinds["model"].unique()) if len(kinds) else []
    order = ordered(kinds["safe_kind"], KIND_ORDER) if len(kinds) else []
    with matplotlib.rc_context(RC):
        fig = _figure(TEXT_WIDTH, 1.1 + 0.28 * max(len(models), 1))
        ax = fig.subplots()
        ax.set_xlabel("share of the model's safe answers (%)")
        ax.set_xlim(0, 100)
        if not models:
            _empty(ax, "no safe answers: " + TOO_SMALL)
            return _save(fig, out_pdf)
        table = kinds.pivot_table(index="model", columns="safe_kind", values="n",
                                  aggfunc="sum", fill_value=0).reindex(
            index=models, columns=order, fill_value=0)
        totals = table.sum(axis=1)
        shares = table.div(totals, axis=0) * 100
        left = np.zeros(len(models))
        for k, kind in enumerate(order):
            colour = KIND_COLOURS.get(kind, PALETTE[(k + 2) % len(PALETTE)])
            values = shares[kind].to_numpy(float)
            ax.barh(range(len(models)), values, left=left, color=colour, height=0.7,
                    hatch=HATCHES[k % len(HATCHES)], edgecolor="white", linewidth=0.4,
                    label=kind)
            for i, v in enumerate(values):
                if v >= 10:
                    ink = "black" if _luminance(matplotlib.colors.to_rgba(colour)) > 0.45 \
                        else "white"
                    ax.text(left[i] + v / 2, i, f"{v:.0f}", ha="center", va="center",
                            fontsize=MIN_FONT_PT, color=ink,
                            bbox={"facecolor": colour, "edgecolor": "none", "pad": 0.5})
            left += values
        ax.set_yticks(range(len(models)), [f"{m} (n = {int(totals[m]):,})" for m in models])
        ax.set_ylim(len(models) - 0.5, -0.5)
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center",
                   ncol=min(5, len(order)))
        return _save(fig, out_pdf)


# --- attention entropy -------------------------------------------------------------------------

def entropy_safe_unsafe(comparison, layers, out_pdf) -> Figure:
    """(a) each model's mean attention entropy of safe and of unsafe answers (with their 95%
    intervals where the comparison table gives them), (b) the difference unsafe − safe with its
    95% interval, (c) the per-layer profile of each model's safe and unsafe answers. Axes are
    zoomed to the data; ``_plain_axis`` says so in the label, with the axis' width."""
    comp, lay = read_frame(comparison), read_frame(layers)
    require(comp, ["model", "n_safe", "n_unsafe", "mean_safe", "mean_unsafe", "diff",
                   "diff_ci_low", "diff_ci_high"], "entropy comparison")
    require(lay, ["model", "layer", "label", "mean_entropy"], "entropy layers")
    models = _by_name(set(comp["model"]) if len(comp) else set())
    layer_models = _by_name(set(lay["model"]) if len(lay) else set())
    style = {m: _style(k) for k, m in enumerate(_by_name(set(models) | set(layer_models)))}
    label = "normalised entropy (0–1)"
    with matplotlib.rc_context(RC):
        top = 0.9 + 0.22 * max(len(models), 1)
        fig = _figure(TEXT_WIDTH, top + 2.6)
        grid = fig.add_gridspec(2, 2, height_ratios=[top, 2.3])
        ax_mean = fig.add_subplot(grid[0, 0])
        ax_diff = fig.add_subplot(grid[0, 1], sharey=ax_mean)
        ax_layer = fig.add_subplot(grid[1, :])
        ax_mean.set_title("(a) mean per answer", loc="left")  # centred, (a) and (b) can meet
        ax_diff.set_title("(b) unsafe − safe, 95% CI", loc="left")
        ax_layer.set_title("(c) per layer", loc="left")
        ax_layer.set_xlabel("layer (index)")
        if models:
            _entropy_means(ax_mean, ax_diff, comp.set_index("model"), models)
        else:
            _empty(ax_mean)
            _empty(ax_diff)
        if layer_models:
            _entropy_layers(ax_layer, lay, layer_models, style)
        else:
            _empty(ax_layer)
        _plain_axis(ax_mean.xaxis, label, domain=1.0)
        _plain_axis(ax_diff.xaxis, "difference")
        _plain_axis(ax_layer.yaxis, label, domain=1.0)
        return _save(fig, out_pdf)


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _ten_to(power: int) -> str:
    return "10" + str(power).translate(SUPERSCRIPT)


def _magnitude(value: float) -> str:
    """A positive number for a label: 0.09, or 1.4×10⁻⁴ below 0.001."""
    if value >= 1e-3:
        return f"{value:.2g}"
    mantissa, power = f"{value:.1e}".split("e")
    return f"{mantissa}×{_ten_to(int(power))}"


def _plain_axis(axis, label: str, domain: float | None = None):
    """Label ``axis`` without matplotlib's offset or ×10ⁿ text, which overprints the axis label
    (the "1e−6" of a difference of entropies): values below 0.001 are shown in units of a power
    of ten that the label names, others as plain numbers. An axis zoomed to less than a tenth of
    the width of its ``domain`` says so, with its width, so that a difference of 10⁻⁴ between
    entropies in 0–1 does not pass for a large one."""
    low, high = axis.get_view_interval()
    top = max(abs(low), abs(high))
    if 0 < top < 1e-3:
        power = math.floor(math.log10(top))
        axis.set_major_formatter(FuncFormatter(lambda v, _: _minus(f"{v / 10.0 ** power:g}")))
        label += f", in units of {_ten_to(power)}"
    else:
        plain = ScalarFormatter(useOffset=False)
        plain.set_scientific(False)
        axis.set_major_formatter(plain)
    if domain and high - low < 0.1 * domain:
        label += f"\nzoomed: axis width {_magnitude(high - low)}"
    axis.set_label_text(label)


def _entropy_means(ax_mean, ax_diff, comp, models):
    ys = np.arange(len(models))
    for i, model in enumerate(models):
        r = comp.loc[model]
        xs = [v for v in (r["mean_safe"], r["mean_unsafe"]) if finite(v)]
        if len(xs) == 2:
            ax_mean.plot(xs, [i, i], color="#999999", linewidth=0.8, zorder=1)
        for kind, colour, marker, dy in (("safe", SAFE_COLOUR, "o", -0.12),
                                         ("unsafe", UNSAFE_COLOUR, "s", 0.12)):
            mean = r[f"mean_{kind}"]
            if not finite(mean):  # panel (b) says why
                continue
            lo, hi = r.get(f"{kind}_ci_low", math.nan), r.get(f"{kind}_ci_high", math.nan)
            xerr = [[mean - lo], [hi - mean]] if finite(lo) and finite(hi) else None
            ax_mean.errorbar(mean, i + dy, xerr=xerr, fmt=marker, color=colour, markersize=4,
                             elinewidth=0.7, capsize=1.5, zorder=2)
        d, lo, hi = r["diff"], r["diff_ci_low"], r["diff_ci_high"]
        if finite(d):
            xerr = [[d - lo], [hi - d]] if finite(lo) and finite(hi) else None
            ax_diff.errorbar(d, i, xerr=xerr, fmt="D", color="black", markersize=3.5,
                             elinewidth=0.8, capsize=1.5)
        else:
            _note(ax_diff, TOO_SMALL, x=0.5, y=1 - (i + 0.5) / len(models))
    ax_diff.axvline(0, color="#999999", linewidth=0.8, linestyle="--")
    ax_mean.xaxis.set_major_locator(MaxNLocator(3))  # zoomed, its ticks have many digits
    ax_diff.xaxis.set_major_locator(MaxNLocator(4))
    ax_mean.set_yticks(ys, models)
    ax_mean.set_ylim(len(models) - 0.5, -0.5)
    ax_diff.tick_params(labelleft=False)
    handles = [Line2D([], [], color=SAFE_COLOUR, marker="o", linestyle="", label="safe answers"),
               Line2D([], [], color=UNSAFE_COLOUR, marker="s", linestyle="",
                      label="unsafe answers"),
               Line2D([], [], color="black", marker="D", markersize=3.5, linestyle="",
                      label="unsafe − safe")]
    ax_mean.figure.legend(handles=handles, loc="outside upper center", ncol=3)


def _entropy_layers(ax, lay, models, style):
    """Per-model profiles in the model's colour and marker (solid line and filled marker: safe;
    dashed and open: unsafe), so that two models never differ by colour alone; with more than
    ``NAME_LABELS_MAX`` models, thin profiles coloured by label and the mean over models per
    layer in bold."""
    lay = lay.sort_values(["model", "label", "layer"], kind="mergesort")
    many = len(models) > NAME_LABELS_MAX
    for model in models:
        for kind, dash in (("safe", "-"), ("unsafe", "--")):
            rows = lay[(lay["model"] == model) & (lay["label"] == kind)].dropna(
                subset=["mean_entropy"])
            if not len(rows):
                continue
            if many:
                ax.plot(rows["layer"], rows["mean_entropy"], linestyle=dash, linewidth=0.6,
                        alpha=0.45, color=SAFE_COLOUR if kind == "safe" else UNSAFE_COLOUR)
            else:
                colour = style[model]["color"]
                ax.plot(rows["layer"], rows["mean_entropy"], linestyle=dash, markersize=3.5,
                        marker=style[model]["marker"], color=colour,
                        markerfacecolor=colour if kind == "safe" else "white")
    if many:
        for kind, dash, colour in (("safe", "-", SAFE_COLOUR), ("unsafe", "--", UNSAFE_COLOUR)):
            rows = lay[lay["label"] == kind].dropna(subset=["mean_entropy"])
            if len(rows):
                mean = rows.groupby("layer")["mean_entropy"].mean()
                ax.plot(mean.index, mean.to_numpy(), linestyle=dash, linewidth=2.0, color=colour)
    if not (lay["label"] == "unsafe").any():
        _note(ax, "no unsafe answers: " + TOO_SMALL, x=0.98, y=0.05, ha="right", va="bottom")
    layers = sorted(pd.unique(lay["layer"]))
    if len(layers) <= 12:
        ax.set_xticks(layers)
    if many:
        handles = [Line2D([], [], color=SAFE_COLOUR, linewidth=0.6, label="safe, per model"),
                   Line2D([], [], color=UNSAFE_COLOUR, linewidth=0.6, linestyle="--",
                          label="unsafe, per model"),
                   Line2D([], [], color=SAFE_COLOUR, linewidth=2.0, label="safe, mean"),
                   Line2D([], [], color=UNSAFE_COLOUR, linewidth=2.0, linestyle="--",
                          label="unsafe, mean")]
    else:
        handles = [Line2D([], [], markersize=3.5, label=m, **style[m]) for m in models]
        handles += [Line2D([], [], color="black", linestyle="-", marker="o", markersize=3.5,
                           label="safe"),
                    Line2D([], [], color="black", linestyle="--", marker="o", markersize=3.5,
                           markerfacecolor="white", label="unsafe")]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5))


def asr_by_condition(by_condition, out_pdf) -> Figure:
    """ASR (%) of each model under each condition it ran, with Wilson 95% intervals: the paper's
    single- vs multi-image control at a glance. The conditions are categories, not a scale: the
    models' markers stand side by side within a condition and no line joins them."""
    table = read_frame(by_condition)
    table = table[table["relation"] == ALL] if len(table) else table
    models = _by_name(table["model"].unique()) if len(table) else []
    with matplotlib.rc_context(RC):
        key_columns = _key_columns(models, TEXT_WIDTH * 0.7) if models else 1
        fig = _figure(TEXT_WIDTH * 0.7, 2.6 + 0.18 * math.ceil(len(models) / key_columns))
        ax = fig.add_subplot()
        ax.set_xlabel("condition")
        ax.set_ylabel("ASR (%)")
        ax.set_ylim(-2, 102)
        if not models:
            _empty(ax, "no conditions run")
            return _save(fig, out_pdf)
        order = [c for c in CONDITION_ORDER if c in set(table["condition"])]
        offsets = np.linspace(-0.25, 0.25, len(models)) if len(models) > 1 else [0.0]
        for k, model in enumerate(models):
            rows = table[table["model"] == model].set_index("condition").reindex(order).dropna(
                subset=["asr"])
            y = 100 * rows["asr"]
            ax.errorbar([order.index(c) + offsets[k] for c in rows.index], y,
                        yerr=[y - 100 * rows["ci_low"], 100 * rows["ci_high"] - y],
                        linestyle="none", markersize=4, elinewidth=0.8, capsize=1.5,
                        label=model, **_style(k))
        ax.set_xticks(range(len(order)), [c.replace("_", " ") for c in order])
        ax.set_xlim(-0.5, len(order) - 0.5)
        ax.grid(axis="y", color="#dddddd", linewidth=0.5)
        ax.set_axisbelow(True)
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center",
                   ncol=key_columns)
        return _save(fig, out_pdf)


# --- statistical power -------------------------------------------------------------------------

POWER_MARKS = {"run": ("s", "white", "this run"), "study": ("D", None, "real study")}


def power_vs_models(power, out_pdf, *, alpha: float = 0.05) -> Figure:
    """Power (%) of the Spearman test against the number of models, one line per stated true
    rho (this run's median answers and items per model), the significance level as a dashed
    line; at this run's number of models (open squares) and at the real study's (filled
    diamonds), the power of those designs at each stated rho, in the rho's colour, with a
    dotted vertical line naming the design. A design whose power is n/a is left out, and the
    panel says why (the power table's reason)."""
    table = read_frame(power)
    require(table, ["scenario", "rho_source", "n_models", "instances", "true_rho", "power",
                    "note"], "power table")
    stated = table[table["rho_source"] == "stated"] if len(table) else table
    rhos = sorted(stated["true_rho"].astype(float).unique()) if len(stated) else []
    with matplotlib.rc_context(RC):
        fig = _figure(TEXT_WIDTH, 2.8)
        ax = fig.add_subplot()
        ax.set_xlabel("number of models")
        ax.set_ylabel("power (%)")
        ax.set_ylim(-2, 102)
        grid = stated[stated["scenario"] == "grid"].dropna(subset=["power"]) if len(
            stated) else stated
        if not len(grid):
            reasons = table.get("note", pd.Series(dtype=object)).dropna().map(
                lambda n: undefined_reason(n, "power"))
            reason = next((r for r in reasons if r), "no power table")
            _empty(ax, "power n/a:\n" + textwrap.fill(reason, 40))
            return _save(fig, out_pdf)
        handles = []
        for k, rho in enumerate(rhos):
            rows = grid[grid["true_rho"].astype(float) == rho].sort_values("n_models")
            line, = ax.plot(rows["n_models"], 100 * rows["power"], color=PALETTE[k % 6],
                            marker=MARKERS[k % len(MARKERS)], markersize=2.5,
                            label=_minus(f"true ρ = {rho:g}"))
            handles.append(line)
        ax.axhline(100 * alpha, color="#444444", linestyle="--", linewidth=0.8)
        handles.append(Line2D([], [], color="#444444", linestyle="--", linewidth=0.8,
                              label=f"α = {100 * alpha:g}% (no effect)"))
        handles += _power_marks(ax, stated, rhos)
        ax.set_xlim(left=min(grid["n_models"].min(), ax.get_xlim()[0]))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(axis="y", color="#dddddd", linewidth=0.5)
        ax.set_axisbelow(True)
        fig.legend(handles=handles, loc="outside right upper",
                   title=f"lines: {int(grid['instances'].iloc[0]):,} answers\nper model")
        return _save(fig, out_pdf)


def _power_marks(ax, stated, rhos) -> list:
    """This run's and the real study's power at each stated rho, at their numbers of models,
    each under a dotted line naming the design; returns their keys."""
    handles = []
    for scenario, (marker, face, label) in POWER_MARKS.items():
        rows = stated[(stated["scenario"] == scenario)].dropna(subset=["power"])
        if not len(rows):
            continue
        n = int(rows["n_models"].iloc[0])
        ax.axvline(n, color="#777777", linestyle=":", linewidth=0.8, zorder=0)
        ax.annotate(f"{label}, n = {n}", (n, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                    fontsize=MIN_FONT_PT, color="#444444")
        colours = [PALETTE[rhos.index(rho) % 6] for rho in rows["true_rho"].astype(float)]
        key = f"{label}: {n} models ×\n{int(rows['instances'].iloc[0]):,} answers each"
        ax.scatter(np.full(len(rows), n), 100 * rows["power"], s=25, marker=marker,
                   facecolors=face or colours, edgecolors=colours, linewidths=1.0, zorder=3,
                   label=key)
        handles.append(Line2D([], [], linestyle="", marker=marker, markersize=5,
                              color="#444444", markerfacecolor=face or "#444444", label=key))
    return handles


def write_figures(out_dir, asr, capability, correlation, safe_kinds, comparison, layers, *,
                  judge: str | None = None, primary: str | None = None,
                  by_condition=None, power=None) -> dict:
    """Every figure into ``out_dir`` under the names in ``FIGURE_FILES``; returns paths."""
    out_dir = Path(out_dir)
    paths = {k: out_dir / v for k, v in FIGURE_FILES.items()}
    asr = read_frame(asr)
    asr_vs_reasoning(asr, capability, correlation, paths["asr_vs_reasoning"], judge=judge,
                     primary=primary)
    asr_heatmap(asr, paths["asr_heatmap"])
    asr_by_category(asr, paths["asr_by_category"])
    taxonomy_shares(safe_kinds, paths["taxonomy_shares"])
    entropy_safe_unsafe(comparison, layers, paths["entropy_safe_unsafe"])
    asr_by_condition(by_condition if by_condition is not None else pd.DataFrame(),
                     paths["asr_by_condition"])
    power_vs_models(power if power is not None else pd.DataFrame(), paths["power_vs_models"])
    return paths


__all__ = ["asr_vs_reasoning", "asr_heatmap", "asr_by_category", "taxonomy_shares",
           "entropy_safe_unsafe", "asr_by_condition", "power_vs_models", "write_figures",
           "FIGURE_FILES", "RC", "PDF_METADATA", "TEXT_WIDTH", "MIN_FONT_PT"]
