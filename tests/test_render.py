"""Stage 8, render: figures, tables, number macros and the paper, from synthetic analysis files.

The inputs are made here in the analysis stage's formats (the ASR tables by ``mirsafety.analysis.asr``
itself, from drawn labels), so nothing depends on a workflow run.
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.text
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.container import ErrorbarContainer
from matplotlib.lines import Line2D
from matplotlib.text import Annotation

from mirsafety.analysis.asr import asr_tables, safe_kind_shares
from mirsafety.analysis.conditions import by_condition
from mirsafety.analysis.correlation import correlation_table
from mirsafety.analysis.power import POWER_COLUMNS, power_table
from mirsafety.core.notes import undefined_reason
from mirsafety.core.taxonomy import CATEGORIES, RELATIONS
from mirsafety.render import (
    figures,
    finite,
    numbers,
    paper,
    primary_capability,
    read_frame,
    tables,
)
from mirsafety.render.tables import Latex, latex_escape

REPO = Path(__file__).resolve().parents[1]
MODELS = ["tiny-qwen2.5-vl-s", "tiny-qwen2.5-vl-m", "tiny-idefics3-s", "Model_B%2", "big & #1"]
CAPABILITIES = ["measured:mir-reasoning-embedded", "published:MuirBench"]
KINDS = ["refusal", "misunderstanding", "evasive", "irrelevant"]
HAS_LATEXMK = shutil.which("latexmk") is not None and shutil.which("pdflatex") is not None
HAS_PDFTOTEXT = shutil.which("pdftotext") is not None
NO_TEX = "latexmk/pdflatex not installed: run .ci/install-tex (Debian TeX Live) to test the build"


# --- synthetic inputs ---------------------------------------------------------------------------

def judgments(models, seed=0, p_unsafe=None, per_cell=2) -> pd.DataFrame:
    """Drawn labels for every model × relation × category × per_cell instance."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, model in enumerate(models):
        p = p_unsafe if p_unsafe is not None else 0.15 + 0.7 * k / max(1, len(models) - 1)
        for relation in RELATIONS:
            for category in CATEGORIES:
                for i in range(per_cell):
                    u = rng.random()
                    label = ("error" if u < 0.02 else "unsafe" if rng.random() < p else "safe")
                    kind = KINDS[rng.integers(len(KINDS))] if label == "safe" else None
                    rows.append({"model": model, "uid": f"{category}/{relation}/{i}",
                                 "label": label, "safe_kind": kind, "relation": relation,
                                 "category": category, "seed": f"s{i}"})
    return pd.DataFrame(rows)


def make_inputs(root: Path, models=MODELS, *, seed=0, p_unsafe=None, nan_corr=False,
                no_unsafe=False, capabilities=CAPABILITIES) -> dict:
    """All analysis files render reads, written as CSV under ``root``; returns their paths."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1)
    frame = judgments(models, seed, 0.0 if no_unsafe else p_unsafe)
    asr = asr_tables(frame)
    kinds = safe_kind_shares(frame)
    overall = asr[asr["level"] == "model"].set_index("model")["asr"]
    cap_rows, corr_rows = [], []
    for c, name in enumerate(capabilities):
        scores = {m: float(np.clip(30 + 40 * overall[m] + rng.normal(0, 5), 0, 100))
                  for m in models}
        for m, s in scores.items():
            cap_rows.append({"model": m, "capability": name, "score": s,
                             "ci_low": s - 3 if c == 0 else np.nan,
                             "ci_high": s + 3 if c == 0 else np.nan,
                             "n_items": 90 if c == 0 else np.nan,
                             "source": "measured" if c == 0 else "arXiv:2406.09411"})
        n = len(models)
        nan = nan_corr or n < 3
        rho = np.nan if nan else 0.8 - 0.3 * c
        corr_rows.append({
            "judge": "refusal", "capability": name, "n_models": n, "models": ";".join(models),
            "spearman_rho": rho, "spearman_ci_low": rho - 0.3, "spearman_ci_high": rho + 0.1,
            "spearman_p_perm": np.nan if nan else 0.0004 + 0.2 * c,
            "pearson_r": np.nan if nan else -0.61, "pearson_ci_low": np.nan if nan else -0.9,
            "pearson_ci_high": np.nan if nan else 0.2, "pearson_p_perm": np.nan if nan else 0.03,
            "ols_slope": np.nan if nan else 1.234, "ols_se_hc3": np.nan if nan else 0.3,
            "ols_p": np.nan if nan else 0.01, "ols_ci_low": np.nan if nan else 0.6,
            "ols_ci_high": np.nan if nan else 1.8,
            "partial_rho_log_params": np.nan if nan else 0.5,
            "partial_p": np.nan if nan else 0.2, "n_partial": n,
            "note": "" if not nan else "correlation n/a: " + (
                "fewer than 5 models" if n < 3
                else "capability constant across models")})
    comp_rows, layer_rows = [], []
    for k, m in enumerate(models):
        n_unsafe = int(overall[m] * 108)
        n_safe = 108 - n_unsafe
        safe = 0.62 + 0.01 * k
        unsafe = np.nan if n_unsafe == 0 else safe - 0.031 + 0.04 * (k == len(models) - 1)
        diff = unsafe - safe
        comp_rows.append({"model": m, "n_safe": n_safe, "n_unsafe": n_unsafe,
                          "mean_safe": safe, "mean_unsafe": unsafe, "diff": diff,
                          "diff_ci_low": diff - 0.01, "diff_ci_high": diff + 0.01,
                          "mwu_u": np.nan if n_unsafe == 0 else 1234.0,
                          "mwu_p": np.nan if n_unsafe == 0 else 0.004 * (k + 1),
                          "cliffs_delta": np.nan if n_unsafe == 0 else -0.3})
        for layer in range(4):
            for label, mean, count in (("safe", safe, n_safe), ("unsafe", unsafe, n_unsafe)):
                if count:
                    layer_rows.append({"model": m, "layer": layer, "label": label,
                                       "mean_entropy": mean + 0.02 * layer, "n": count})
    files = {
        "asr": asr, "safe_kinds": kinds, "capability": pd.DataFrame(cap_rows),
        "correlation": pd.DataFrame(corr_rows), "comparison": pd.DataFrame(comp_rows),
        "layers": pd.DataFrame(layer_rows, columns=["model", "layer", "label", "mean_entropy",
                                                    "n"]),
    }
    files["power"] = (power_table(asr, files["capability"], files["correlation"],
                                  capabilities[0], max_models=12, n_sims=200, n_null=2000)
                      if capabilities else pd.DataFrame(columns=POWER_COLUMNS))
    paths = {}
    for key, table in files.items():
        paths[key] = root / f"{key}.csv"
        table.to_csv(paths[key], index=False, float_format="%.6f")
    manifest = {"dataset": "sample", "n_images": 334,
                "counts": {"total": len(RELATIONS) * len(CATEGORIES) * 2,
                           "by_relation": {r: 12 for r in RELATIONS},
                           "by_category": {c: 18 for c in CATEGORIES}}}
    paths["manifest"] = root / "manifest.json"
    paths["manifest"].write_text(json.dumps(manifest))
    return paths


def render_all(inputs: dict, out: Path, judge="refusal") -> dict:
    """What the render rules do: figures, tables and numbers under ``out`` (the generated dir)."""
    figs = figures.write_figures(out / "figures", inputs["asr"], inputs["capability"],
                                 inputs["correlation"], inputs["safe_kinds"],
                                 inputs["comparison"], inputs["layers"], judge=judge,
                                 power=inputs["power"])
    tabs = tables.write_tables(out / "tables", inputs["asr"], inputs["correlation"],
                               inputs["comparison"], judge=judge)
    values = numbers.collect_numbers(inputs["asr"], inputs["correlation"], inputs["comparison"],
                                     inputs["capability"], inputs["manifest"],
                                     safe_kinds=inputs["safe_kinds"], judge=judge,
                                     power=inputs["power"])
    nums = numbers.write_numbers(out / "tables" / "numbers.tex", values)
    return {"figures": figs, "tables": tabs, "numbers": nums, "values": values}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("inputs"))


DEGENERATE = {
    "single_model": {"models": ["only-model"]},
    "nan_correlations": {"nan_corr": True},
    "no_unsafe_answers": {"no_unsafe": True},
    "two_models_no_capability": {"models": ["a", "b"], "capabilities": []},
}


# --- figures ------------------------------------------------------------------------------------

def texts(fig):
    return [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text()]


def test_every_figure_renders_readable_and_byte_stable(inputs, tmp_path):
    start = time.perf_counter()
    first = figures.write_figures(tmp_path / "a", inputs["asr"], inputs["capability"],
                                  inputs["correlation"], inputs["safe_kinds"],
                                  inputs["comparison"], inputs["layers"], power=inputs["power"])
    elapsed = time.perf_counter() - start
    second = figures.write_figures(tmp_path / "b", inputs["asr"], inputs["capability"],
                                   inputs["correlation"], inputs["safe_kinds"],
                                   inputs["comparison"], inputs["layers"], power=inputs["power"])
    assert set(first) == set(figures.FIGURE_FILES)
    for key, path in first.items():
        data = path.read_bytes()
        assert data.startswith(b"%PDF") and len(data) > 2000, key
        assert data == second[key].read_bytes(), f"{key} differs between two renders"
        assert b"CreationDate" not in data and b"ModDate" not in data, key
        assert b"matplotlib" not in data.lower(), f"{key} names its producer"
    print(f"{len(first)} figures in {elapsed:.2f} s")


def test_figures_are_byte_stable_across_processes(inputs, tmp_path):
    """Another interpreter with another hash seed writes the same bytes."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2])\n"
        "from pathlib import Path\n"
        "from mirsafety.render import figures\n"
        "i = {k: Path(sys.argv[4]) / f'{k}.csv' for k in "
        "['asr','capability','correlation','safe_kinds','comparison','layers','power']}\n"
        "figures.write_figures(Path(sys.argv[3]), i['asr'], i['capability'], i['correlation'],"
        " i['safe_kinds'], i['comparison'], i['layers'], power=i['power'])\n")
    root = inputs["asr"].parent
    runs = []
    for salt in ("1", "2"):
        out = tmp_path / salt
        env = {**os.environ, "PYTHONHASHSEED": salt}
        subprocess.run([sys.executable, "-c", script, str(REPO / "workflow" / "scripts"),
                        str(REPO / "tests"), str(out), str(root)], check=True, env=env)
        runs.append(out)
    for name in figures.FIGURE_FILES.values():
        assert (runs[0] / name).read_bytes() == (runs[1] / name).read_bytes(), name


def conditions_table(models, seed=0) -> pd.DataFrame:
    """ASR per model and condition as the analysis stage writes it, each condition drawn anew."""
    return by_condition(pd.concat([judgments(models, seed + k).assign(condition=condition)
                                   for k, condition in enumerate(figures.CONDITION_ORDER)]))


def run_like_inputs(root: Path) -> dict:
    """The default run's shape (issue 14): one measured capability on which every model scores
    0% (so no correlation), ASRs close together, entropies near 1 that differ by about 1e-6."""
    data = make_inputs(root, nan_corr=True, p_unsafe=0.75, capabilities=CAPABILITIES[:1])
    capability = pd.read_csv(data["capability"]).assign(score=0.0, ci_low=0.0, ci_high=3.1)
    capability.to_csv(data["capability"], index=False)
    power_table(pd.read_csv(data["asr"]), capability, pd.read_csv(data["correlation"]),
                CAPABILITIES[0], max_models=12, n_sims=200).to_csv(data["power"], index=False)
    comp = pd.read_csv(data["comparison"])
    k = np.arange(len(comp))
    safe = 0.99994 - 1e-4 * (k == 1)
    comp.assign(mean_safe=safe, mean_unsafe=safe + 5e-7, diff=5e-7, diff_ci_low=-8e-7 * (k + 1),
                diff_ci_high=1.7e-6 * (k + 1)).to_csv(data["comparison"], index=False)
    layers = pd.read_csv(data["layers"])
    layers.assign(mean_entropy=0.9998 + (layers["mean_entropy"] - 0.6) * 1e-3).to_csv(
        data["layers"], index=False)
    return data


FIGURE_CASES = ["default", *sorted(DEGENERATE), "run_like", "many_models"]
MANY_MODELS = [f"vendor/model_{k}-{'x' * k}" for k in range(12)]
TEXT_TOLERANCE_PX = 1.0
# Axes whose label names a bounded quantity: its domain, and whether a zoom must be said.
DOMAINS = {"(%)": (0.0, 100.0, False), "entropy": (0.0, 1.0, True)}


def every_figure(data: dict, out: Path) -> dict:
    """Every figure of one input, as ``write_figures`` draws them, as Figure objects."""
    models = sorted(pd.read_csv(data["asr"])["model"].unique())
    return {
        "asr_vs_reasoning": figures.asr_vs_reasoning(data["asr"], data["capability"],
                                                     data["correlation"], out / "1.pdf"),
        "asr_heatmap": figures.asr_heatmap(data["asr"], out / "2.pdf"),
        "asr_by_category": figures.asr_by_category(data["asr"], out / "3.pdf"),
        "taxonomy_shares": figures.taxonomy_shares(data["safe_kinds"], out / "4.pdf"),
        "entropy_safe_unsafe": figures.entropy_safe_unsafe(data["comparison"], data["layers"],
                                                           out / "5.pdf"),
        "asr_by_condition": figures.asr_by_condition(conditions_table(models), out / "6.pdf"),
        "power_vs_models": figures.power_vs_models(data["power"], out / "7.pdf"),
    }


def drawn_texts(fig):
    """The renderer and the texts a reader sees: each Text the renderer draws (tick labels in
    view, offset texts, titles, axis labels, annotations, legend entries), once."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    drawn, draw_text = {}, renderer.draw_text

    def record(gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if mtext is not None and s.strip():
            drawn[id(mtext)] = mtext
        return draw_text(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)

    renderer.draw_text = record
    fig.draw(renderer)
    return renderer, list(drawn.values())


def outline(text, renderer) -> np.ndarray:
    """The corners (display pixels) of a text's box, turned with the text: the axis-aligned
    box of a slanted tick label would claim its neighbour's space. The text alone, without an
    annotation's leader line."""
    box = matplotlib.text.Text.get_window_extent(text, renderer)
    angle = np.radians(text.get_rotation())
    if np.isclose(np.sin(2 * angle), 0):
        return np.array([[box.x0, box.y0], [box.x1, box.y0], [box.x1, box.y1], [box.x0, box.y1]])
    width, height, _ = renderer.get_text_width_height_descent(
        text.get_text(), text.get_fontproperties(), ismath=False)
    along, across = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle),
                                                                          np.cos(angle)])
    centre = np.array([(box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2])
    return np.array([centre + a * width / 2 * along + b * height / 2 * across
                     for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))])


def overlap_depth(p: np.ndarray, q: np.ndarray) -> float:
    """How far two convex outlines overlap (pixels; ≤ 0: apart), by separating axes."""
    depth = np.inf
    for poly in (p, q):
        for edge in np.roll(poly, -1, axis=0) - poly:
            axis = np.array([-edge[1], edge[0]]) / np.hypot(*edge)
            a, b = p @ axis, q @ axis
            depth = min(depth, min(a.max(), b.max()) - max(a.min(), b.min()))
    return depth


def overprinted(renderer, shown) -> list:
    """Pairs of drawn texts that overlap by more than ``TEXT_TOLERANCE_PX``."""
    outlines = [outline(t, renderer) for t in shown]
    low, high = [o.min(axis=0) for o in outlines], [o.max(axis=0) for o in outlines]
    return [(shown[i].get_text(), shown[j].get_text())
            for i in range(len(shown)) for j in range(i + 1, len(shown))
            if (np.minimum(high[i], high[j]) - np.maximum(low[i], low[j]) > 0).all()
            and overlap_depth(outlines[i], outlines[j]) > TEXT_TOLERANCE_PX]


def cut_off(fig, renderer, shown) -> list:
    """Drawn texts that reach past the figure's edge by more than ``TEXT_TOLERANCE_PX``."""
    width, height = fig.bbox.width, fig.bbox.height
    return [t.get_text() for t in shown
            if ((corners := outline(t, renderer)) < -TEXT_TOLERANCE_PX).any()
            or (corners[:, 0] > width + TEXT_TOLERANCE_PX).any()
            or (corners[:, 1] > height + TEXT_TOLERANCE_PX).any()]


def out_of_domain(fig, shown) -> list:
    """Axes of a bounded quantity (``DOMAINS``) whose limits pass the domain by more than 5% of
    its width, that show a tick value outside it, or that zoom in without saying so."""
    shown = {id(t) for t in shown}
    wrong = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            label = axis.get_label_text()
            bounds = next((d for key, d in DOMAINS.items() if key in label), None)
            if bounds is None or not axis.get_ticklocs().size:
                continue
            low, high, say_zoom = bounds
            margin = 0.05 * (high - low)
            view = sorted(axis.get_view_interval())
            ticks = [float(t.get_text().replace("−", "-")) for t in axis.get_ticklabels()
                     if id(t) in shown]
            if view[0] < low - margin or view[1] > high + margin:
                wrong.append((label, "limits", view))
            if any(v < low or v > high for v in ticks):
                wrong.append((label, "ticks", ticks))
            if say_zoom and view[1] - view[0] < 0.1 * (high - low) and "zoom" not in label:
                wrong.append((label, "zoom not said", view))
    return wrong


def unkeyed(fig) -> list:
    """Series a reader cannot name: no legend entry by label or by colour and marker, no
    label on their points. Unlabelled lines without markers are guides (connectors, reference
    lines, thin per-model profiles keyed as a group) and are not asked for a key."""
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    names = {t.get_text() for legend in legends for t in legend.get_texts()}
    looks = {(to_hex(h.get_color()), h.get_marker()) for legend in legends
             for h in legend.legend_handles if isinstance(h, Line2D)}

    def look(line):
        return to_hex(line.get_color()), line.get_marker()

    missing = []
    for ax in fig.axes:
        pointed = {tuple(np.round(a.xy, 6)) for a in ax.texts if isinstance(a, Annotation)}
        parts = {id(a) for c in ax.containers for a in c.get_children()}
        for c in ax.containers:
            points = c.lines[0].get_xydata() if isinstance(c, ErrorbarContainer) else []
            if not (c.get_label() in names
                    or isinstance(c, ErrorbarContainer) and look(c.lines[0]) in looks
                    or len(points) and all(tuple(np.round(p, 6)) in pointed for p in points)):
                missing.append(c.get_label())
        for line in ax.lines:
            if id(line) in parts or line.get_marker() in (None, "", "None") and \
                    line.get_label().startswith("_"):
                continue
            if line.get_label() not in names and look(line) not in looks:
                missing.append(line.get_label())
        missing += [c.get_label() for c in ax.collections if id(c) not in parts
                    and not c.get_label().startswith("_") and c.get_label() not in names]
    return missing


@pytest.mark.parametrize("case", FIGURE_CASES)
def test_figures_read_well(case, inputs, tmp_path):
    """What a reader checks, for every figure of normal, degenerate and run-like inputs: the
    figure fits the page, no text is below 8 pt, no two texts overprint nor pass the figure's
    edge, bounded axes stay in their domain (a percentage never reads negative), every series
    has a key or a label, no axis leans on an offset text ("1e−6"), conditions are not joined
    as if ordered, and the fit of asr_vs_reasoning is drawn exactly where it is defined."""
    if case == "default":
        data = inputs
    elif case == "run_like":
        data = run_like_inputs(tmp_path / "in")
    else:
        data = make_inputs(tmp_path / "in", **DEGENERATE.get(case, {"models": MANY_MODELS}))
    for key, fig in every_figure(data, tmp_path).items():
        assert fig.get_size_inches()[0] <= figures.TEXT_WIDTH + 1e-9, key
        small = [(t.get_text(), t.get_fontsize()) for t in texts(fig)
                 if t.get_fontsize() < figures.MIN_FONT_PT]
        assert not small, f"{key}: text below {figures.MIN_FONT_PT} pt: {small[:5]}"
        renderer, shown = drawn_texts(fig)
        assert not overprinted(renderer, shown), (key, overprinted(renderer, shown))
        assert not cut_off(fig, renderer, shown), (key, cut_off(fig, renderer, shown))
        assert not out_of_domain(fig, shown), (key, out_of_domain(fig, shown))
        assert not unkeyed(fig), f"{key}: series without a key: {unkeyed(fig)}"
        for ax in fig.axes:
            assert not ax.xaxis.get_offset_text().get_text(), key
            assert not ax.yaxis.get_offset_text().get_text(), key
            if ax.get_visible() and ax.axison and ax.get_xticks().size:
                assert ax.get_xlabel() or ax.get_yticks().size == 0 or ax.images, key
        if key == "asr_by_condition":
            assert all(c.lines[0].get_linestyle() == "None" for c in fig.axes[0].containers)
        profiled = read_frame(data["layers"])["model"].nunique()
        if key == "entropy_safe_unsafe" and 0 < profiled <= figures.NAME_LABELS_MAX:
            # (c): each model its own marker too, never told from another by colour alone
            assert len({line.get_marker() for line in fig.axes[2].lines}) == profiled
        if key == "asr_vs_reasoning":  # the fit is drawn exactly where the analysis defines it
            slopes = read_frame(data["correlation"]).get("ols_slope", pd.Series())
            fitted = [ax for ax in fig.axes if "OLS fit" in [x.get_label() for x in ax.lines]]
            assert len(fitted) == slopes.notna().sum(), case


def test_reasoning_panel_shows_statistics_and_fit(inputs, tmp_path):
    fig = figures.asr_vs_reasoning(inputs["asr"], inputs["capability"], inputs["correlation"],
                                   tmp_path / "r.pdf", judge="refusal")
    panels = [ax for ax in fig.axes if ax.axison]
    titles = [ax.get_title() for ax in panels]  # the leading score first
    assert titles[0] == "mir-reasoning-embedded\n(measured)\nρ = 0.80, r = −0.61\np < 0.001, n = 5"
    assert titles[1] == "MuirBench (published)\nρ = 0.50, r = −0.61\np = 0.200, n = 5"
    fig = figures.asr_vs_reasoning(inputs["asr"], inputs["capability"], inputs["correlation"],
                                   tmp_path / "r.pdf", primary="published:MuirBench")
    assert [ax for ax in fig.axes if ax.axison][0].get_title().startswith("MuirBench")
    words = " ".join(t.get_text() for t in texts(fig))
    for model in MODELS:
        assert model in words
    for ax in panels:
        assert ax.get_xlabel() == "capability score (%)" and ax.get_ylabel() == "ASR (%)"
        assert ax.collections, "no confidence band"  # fill_between
    assert all("OLS fit" in [line.get_label() for line in ax.lines] for ax in panels)
    # the measured score's interval is drawn (the ASR table's own ci_low once shadowed it)
    assert all(len(c.lines[2]) == 2 for c in panels[0].containers)
    assert all(len(c.lines[2]) == 1 for c in panels[1].containers)  # published: none known


def test_figure_captions_promise_only_what_is_drawn():
    """The fit of asr_vs_reasoning is drawn only where it is defined (the default run's scores
    are all 0%), and asr_by_condition joins no conditions: the captions say so."""
    paper_text = (REPO / "paper" / "main.tex").read_text()
    before = paper_text.split(r"\label{fig:reasoning}")[0]
    reasoning = " ".join(before[before.rindex(r"\caption{"):].split())
    report = " ".join((REPO / "workflow" / "report" / "asr_vs_reasoning.rst").read_text().split())
    assert "drawn only where the fit is defined" in reasoning
    assert "drawn only where the fit is defined" in report
    conditions = " ".join((REPO / "workflow" / "report" / "asr_by_condition.rst").read_text()
                          .split())
    assert "no line joins them" in conditions and "no line joins them" in paper_text


@pytest.mark.parametrize("case", sorted(DEGENERATE))
def test_degenerate_inputs_draw_what_exists(case, tmp_path):
    data = make_inputs(tmp_path / "in", **DEGENERATE[case])
    paths = figures.write_figures(tmp_path / "out", data["asr"], data["capability"],
                                  data["correlation"], data["safe_kinds"], data["comparison"],
                                  data["layers"])
    for path in paths.values():
        assert path.read_bytes().startswith(b"%PDF")
    fig = figures.asr_vs_reasoning(data["asr"], data["capability"], data["correlation"],
                                   tmp_path / "x.pdf")
    if case != "no_unsafe_answers":  # each undefined rho with correlation.csv's reason
        shown = " ".join(" ".join(t.get_text() for t in texts(fig)).split())
        assert "ρ n/a" in shown, case
        for note in read_frame(data["correlation"]).get("note", []):
            assert undefined_reason(note, "correlation") in shown, (case, shown)
    if case == "no_unsafe_answers":
        fig = figures.entropy_safe_unsafe(data["comparison"], data["layers"], tmp_path / "e.pdf")
        assert any(figures.TOO_SMALL in t.get_text() for t in texts(fig))
        tables.write_tables(tmp_path / "t", data["asr"], data["correlation"], data["comparison"])
    values = numbers.collect_numbers(data["asr"], data["correlation"], data["comparison"],
                                     data["capability"], data["manifest"],
                                     safe_kinds=data["safe_kinds"])
    assert numbers.numbers_tex(values).count(r"\newcommand") == len(values)


def test_many_models_number_their_points_and_stay_readable(tmp_path):
    models = [f"vendor/model_{k}-{'x' * k}" for k in range(12)]
    data = make_inputs(tmp_path / "in", models=models)
    fig = figures.asr_vs_reasoning(data["asr"], data["capability"], data["correlation"],
                                   tmp_path / "r.pdf")
    words = [t.get_text() for t in texts(fig)]
    assert {str(k) for k in range(1, 13)} <= set(words)  # points carry numbers ...
    for k, model in enumerate(sorted(models)):  # ... keyed below, in name order
        assert f"{k + 1}  {model}" in words
    heat = figures.asr_by_category(data["asr"], tmp_path / "c.pdf")  # a heat map now
    assert heat.axes[0].images
    for fig in (fig, heat, figures.entropy_safe_unsafe(data["comparison"], data["layers"],
                                                       tmp_path / "e.pdf")):
        assert fig.get_size_inches()[0] <= figures.TEXT_WIDTH + 1e-9
        assert min(t.get_fontsize() for t in texts(fig)) >= figures.MIN_FONT_PT
    relation = tables.asr_relation_table(data["asr"])
    assert r"\setlength{\tabcolsep}{3pt}" in relation and ".0 &" not in relation


def test_empty_inputs_do_not_crash(tmp_path):
    empty = {k: pd.DataFrame(columns=c) for k, c in {
        "kinds": ["model", "safe_kind", "n", "share"],
        "comp": tables.ENTROPY_COLUMNS,
        "layers": ["model", "layer", "label", "mean_entropy", "n"],
        "cap": ["model", "capability", "score", "ci_low", "ci_high", "n_items", "source"],
    }.items()}
    fig = figures.taxonomy_shares(empty["kinds"], tmp_path / "t.pdf")
    assert any(figures.TOO_SMALL in t.get_text() for t in texts(fig))
    figures.entropy_safe_unsafe(empty["comp"], empty["layers"], tmp_path / "e.pdf")
    data = make_inputs(tmp_path / "in", models=["m"])
    figures.asr_vs_reasoning(data["asr"], empty["cap"], data["correlation"], tmp_path / "r.pdf")
    assert "(no rows)" in tables.entropy_table(empty["comp"])


# --- tables -------------------------------------------------------------------------------------

def test_latex_escape_every_special_character():
    assert latex_escape("a_b%c&d#e$f{g}h~i^j\\k") == (
        r"a\_b\%c\&d\#e\$f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k")
    assert latex_escape(Latex(r"$\rho$")) == r"$\rho$"


def _unescaped(text: str, char: str) -> list[str]:
    """Header and body rows of a table where ``char`` appears without a backslash, outside
    the math this module writes on purpose ($n_\\mathrm{safe}$)."""
    body = [re.sub(r"\$[^$]*\$", "", line) for line in text.splitlines()
            if line.endswith("\\\\")]
    assert body
    return [line for line in body if re.search(r"(?<!\\)" + re.escape(char), line)]


def test_tables_escape_cells_and_headers(inputs):
    main = tables.asr_main_table(inputs["asr"])
    relation = tables.asr_relation_table(inputs["asr"])
    corr = tables.correlation_table(inputs["correlation"], judge="refusal")
    entropy = tables.entropy_table(inputs["comparison"])
    for text in (main, relation, corr, entropy):
        assert r"\toprule" in text and r"\bottomrule" in text
        assert r"\begin{table}" not in text
        for char in ("%", "_", "#"):
            assert not _unescaped(text, char), (char, _unescaped(text, char))
        for line in text.splitlines():
            if line.startswith("%") or line.startswith("\\") and "&" not in line:
                continue
            # column separators: one fewer than the columns of the tabular
            cols = len(re.search(r"\\begin\{tabular\}\{(\w+)\}", text).group(1))
            if line.endswith(r"\\") and not line.startswith(r"\multicolumn"):
                assert len(re.findall(r"(?<!\\)&", line)) == cols - 1, line
    assert r"Model\_B\%2" in main and r"big \& \#1" in main
    assert r"ASR (\%)" in main and r"95\% CI (\%)" in main
    assert r"\rotatebox" not in relation  # five models: upright headers
    assert r"Spatial Juxtaposition" in relation and "All relations" in relation
    assert r"& $-$0.61 & 0.030 &" in corr and r"{\footnotesize [$-$0.90, 0.20]}" in corr
    assert "$<$0.001" in corr
    assert "mir-reasoning-embedded & 5 & 0.80 &" in corr and "(measured) &" in corr


def test_main_table_rows_match_the_asr_file(inputs):
    asr = pd.read_csv(inputs["asr"])
    overall = asr[asr["level"] == "model"].sort_values("asr", ascending=False)
    text = tables.asr_main_table(inputs["asr"])
    rows = [line for line in text.splitlines() if line.endswith(r"\\")][1:]
    assert len(rows) == len(overall)
    for line, (_, r) in zip(rows, overall.iterrows()):
        assert line.startswith(latex_escape(r["model"]) + " & ")
        assert f"& {r['asr'] * 100:.1f} &" in line
        assert f"[{r['ci_low'] * 100:.1f}, {r['ci_high'] * 100:.1f}]" in line


def test_relation_table_rotates_many_model_headers(tmp_path):
    data = make_inputs(tmp_path, models=[f"model_{k}" for k in range(9)])
    text = tables.asr_relation_table(data["asr"])
    assert text.count(r"\rotatebox{90}{model\_") == 9


ENTROPY_ROW = {"model": "m", "n_safe": 28, "n_unsafe": 80, "mwu_u": 1234.0, "mwu_p": 0.426,
               "cliffs_delta": 0.10}


def entropy_cells(**values) -> list[str]:
    """The cells of the one model row of ``entropy_table``."""
    text = tables.entropy_table(pd.DataFrame([{**ENTROPY_ROW, **values}]))
    row = next(line for line in text.splitlines() if line.startswith("m & "))
    return row.removesuffix(r" \\").split(" & ")


def test_entropy_table_precision_follows_the_values():
    """The default run's entropies sit near 1 and differ by ~1e-6: the means keep the places
    that tell them apart, the difference and its interval turn to m×10^e, nothing reads 1.000
    or 0.000; ordinary values keep three places."""
    tiny = entropy_cells(mean_safe=0.99993914, mean_unsafe=0.9999396, diff=4.6239137e-07,
                         diff_ci_low=-7.8171719e-07, diff_ci_high=1.7407798e-06)
    assert tiny[3:6] == ["0.9999391", "0.9999396",
                         r"$4.6\times10^{-7}$ [$-7.8\times10^{-7}$, $1.7\times10^{-6}$]"]
    usual = entropy_cells(mean_safe=0.62, mean_unsafe=0.589, diff=-0.031, diff_ci_low=-0.041,
                          diff_ci_high=-0.021)
    assert usual[3:6] == ["0.620", "0.589", "$-$0.031 [$-$0.041, $-$0.021]"]
    point = entropy_cells(mean_safe=0.5, mean_unsafe=0.5 + 3e-5, diff=3e-5, diff_ci_low=3e-5,
                          diff_ci_high=3e-5)  # no interval wider than a point: the difference
    assert point[3:6] == ["0.500000", "0.500030", r"$3.0\times10^{-5}$ [$3.0\times10^{-5}$, "
                          r"$3.0\times10^{-5}$]"]


def test_conditions_difference_keeps_its_places():
    """Three discordant pairs of 2,676 are 0.11 pp: one decimal would print 0.1 [0.0, 0.2]."""
    paired = pd.DataFrame([{"model": "m", "condition": "text_only", "relation": "ALL",
                            "n_pairs": 2676, "asr_baseline": 0.5, "asr_condition": 0.50112,
                            "diff": 0.00112, "diff_ci_low": 0.0, "diff_ci_high": 0.00224,
                            "mcnemar_p": 0.25}])
    assert "& 0.11 [0.00, 0.22] &" in tables.conditions_table(paired)
    wide = paired.assign(diff=0.102, diff_ci_low=0.0, diff_ci_high=0.204)
    assert "& 10.2 [0.0, 20.4] &" in tables.conditions_table(wide)


def test_precision_helpers():
    assert tables.decimals_for([0.031, -0.5]) == 3 and tables.decimals_for([0.0, None]) == 0
    assert tables.decimals_for([4.6e-7], least=3) == 8 and tables.decimals_for([12.0], 3) == 3
    assert tables.decimals_for([1e-300]) == tables.MOST_DECIMALS
    assert tables.fmt_sci(-4.6239e-7) == r"$-4.6\times10^{-7}$" and tables.fmt_sci(0) == "0"
    assert tables.fmt_difference(0.0123, 3) == "0.012"
    assert tables.fmt_difference(5e-7, 8) == r"$5.0\times10^{-7}$"


def test_audit_table_shows_coverage_and_says_why_na():
    """The judge table counts the sampled answers people labelled, and an undefined metric reads
    "n/a" with its reason under the rows, never a bare dash or an interval that looks certain."""
    from mirsafety.analysis.audit import judge_vs_people
    key = [{"audit_id": f"m|u{k}", "stratum": "m|R|unsafe"} for k in range(14)]
    human = pd.DataFrame({"audit_id": [f"m|u{k}" for k in range(12)],
                          "human_label": ["unsafe", "safe"] * 6})
    judged = {"few": [{"model": "m", "uid": f"u{k}", "label": "unsafe"} for k in range(4)],
              "all": [{"model": "m", "uid": f"u{k}", "label": ["safe", "unsafe"][k % 3 > 0]}
                      for k in range(14)]}
    text = tables.audit_table(judge_vs_people(human, judged, key))
    rows = {line.split(" & ")[0]: line.removesuffix(r" \\").split(" & ")
            for line in text.splitlines() if " & " in line}
    assert rows["Judge"][1:3] == ["Labelled", "n"]
    assert rows["few"][1:] == ["12/14", "4", "n/a", "n/a", "n/a"]
    assert rows["all"][1:3] == ["12/14", "12"] and "n/a" not in rows["all"]
    assert (r"\multicolumn{6}{l}{\footnotesize few: 2 of 14 sampled answers have no human "
            r"label; metrics n/a: too few labelled pairs (n = 4 \textless{} 10)} \\") in text
    assert r"{\footnotesize all: 2 of 14 sampled answers have no human label} \\" in text


# --- numbers ------------------------------------------------------------------------------------

def test_macro_names_letters_only_and_unique():
    assert numbers.macro_name("asr_max_pct") == "AsrMaxPct"
    assert numbers.macro_name("top5-models") == "TopFiveModels"
    assert numbers.macro_name("n_2676") == "NTwoSixSevenSix"
    with pytest.raises(ValueError, match="both give"):
        numbers.numbers_tex({"asr_max": 1, "asrMax": 2})
    with pytest.raises(ValueError, match="LaTeX command"):
        numbers.numbers_tex({"s": 1})


def test_number_formats():
    tex = numbers.numbers_tex({"n_items": 2676, "asr_pct": 12.345, "rho": -0.1234, "rho_p": 0.0342,
                               "tiny_p": 1e-6, "gone": float("nan"), "name": "a_b%",
                               "entropy_diff_mean": -0.01234, "gone_p": float("nan"),
                               "none_p": None})
    macros = dict(re.findall(r"\\newcommand\{\\([A-Za-z]+)\}\{(.*)\}", tex))
    assert macros == {"NItems": "2,676", "AsrPct": r"12.3\%", "Rho": "$-$0.12",
                      "RhoP": r"\ensuremath{p=0.034}", "TinyP": r"\ensuremath{p<0.001}",
                      "Gone": "n/a", "Name": r"a\_b\%", "EntropyDiffMean": "$-$0.012",
                      "GoneP": r"\ensuremath{p} n/a", "NoneP": r"\ensuremath{p} n/a"}


def test_collect_numbers(inputs):
    values = numbers.collect_numbers(inputs["asr"], inputs["correlation"], inputs["comparison"],
                                     inputs["capability"], inputs["manifest"],
                                     safe_kinds=inputs["safe_kinds"], judge="refusal")
    asr = pd.read_csv(inputs["asr"])
    overall = asr[asr["level"] == "model"]
    assert values["n_models"] == len(MODELS) and values["n_instances"] == 108
    assert values["asr_max_pct"] == pytest.approx(overall["asr"].max() * 100)
    assert values["asr_min_pct"] == pytest.approx(overall["asr"].min() * 100)
    assert values["asr_max_model"] == overall.loc[overall["asr"].idxmax(), "model"]
    assert values["primary_capability"] == "mir-reasoning-embedded (measured)"  # by name
    assert values["primary_rho"] == pytest.approx(0.8) and values["primary_n"] == 5
    assert values["primary_trend"] == "rises with"
    other = numbers.collect_numbers(inputs["asr"], inputs["correlation"], inputs["comparison"],
                                    inputs["capability"], judge="refusal",
                                    primary="published:MuirBench")
    assert other["primary_rho"] == pytest.approx(0.5)
    assert other["primary_trend"] == "is not significantly associated with"
    assert other["n_instances"] == 108 and other["dataset"] == "n/a"  # no manifest
    assert values["entropy_n_lower"] == 4 and values["entropy_n_compared"] == 5
    assert values["entropy_lower_share_pct"] == pytest.approx(80.0)
    shares = sum(values[f"safe_{k}_pct"] for k in KINDS)
    assert shares == pytest.approx(100.0)
    tex = numbers.numbers_tex(values)
    names = re.findall(r"\\newcommand\{\\([^}]*)\}", tex)
    assert len(names) == len(set(names)) == len(values)
    assert all(re.fullmatch("[A-Za-z]+", n) for n in names)


def analysed(data: dict, root: Path, *, models=None, score=None) -> dict:
    """``data`` with correlation.csv as the analysis stage writes it, every model with a
    parameter count; ``models`` keeps only those, ``score`` replaces every capability score."""
    asr, cap = pd.read_csv(data["asr"]), pd.read_csv(data["capability"])
    if models is not None:
        asr, cap = asr[asr["model"].isin(models)], cap[cap["model"].isin(models)]
    if score is not None:
        cap = cap.assign(score=score, ci_low=np.nan, ci_high=np.nan)
    info = pd.DataFrame({"model": sorted(asr["model"].unique())}).assign(
        family=lambda f: f["model"], params_b=lambda f: 2.0 + np.arange(len(f)) % 3)
    out = {**data, "asr": root / "asr.csv", "capability": root / "capability.csv",
           "correlation": root / "correlation.csv"}
    root.mkdir(parents=True, exist_ok=True)
    asr.to_csv(out["asr"], index=False)
    cap.to_csv(out["capability"], index=False)
    correlation_table(asr, cap, info, "refusal", n_boot=200, n_perm=200).to_csv(
        out["correlation"], index=False)
    return out


@pytest.mark.parametrize(("case", "reason"), [
    ("constant capability", "capability constant across models"),
    ("three models", "fewer than 5 models"),
])
def test_undefined_rho_gives_the_analysis_reason(case, reason, inputs, tmp_path):
    """The default run's rho is undefined because every model scores 0%, as correlation.csv
    says; the figure and the paper's macros used to call any undefined rho "n too small" /
    "too few models", and a partial rho of floating-point residue reached the macros."""
    data = (analysed(inputs, tmp_path, score=0.0) if case == "constant capability"
            else analysed(inputs, tmp_path, models=MODELS[:3]))
    fig = figures.asr_vs_reasoning(data["asr"], data["capability"], data["correlation"],
                                   tmp_path / "r.pdf")
    title = " ".join(fig.axes[0].get_title().split())
    assert f"ρ n/a (n = {5 if case == 'constant capability' else 3}): {reason}" in title
    assert "too small" not in title
    values = numbers.collect_numbers(data["asr"], data["correlation"], data["comparison"],
                                     data["capability"], data["manifest"])
    assert values["primary_trend"] == f"cannot be related ({reason}) to"
    assert values["primary_partial_rho"] == f"n/a ({reason})"
    tex = numbers.numbers_tex(values)
    assert rf"\newcommand{{\PrimaryPartialRho}}{{n/a ({latex_escape(reason)})}}" in tex


def test_primary_capability_is_chosen_by_name():
    assert primary_capability(["published:BLINK", "published:MuirBench",
                               "measured:mir-reasoning-embedded"]) == \
        "measured:mir-reasoning-embedded"  # the measured score, as the analysis stage
    assert primary_capability(["published:BLINK", "published:MuirBench"]) == \
        "published:MuirBench"
    assert primary_capability(["measured:a", "measured:muirbench"]) == "measured:muirbench"
    assert primary_capability(["published:BLINK", "published:MMIU"]) == "published:BLINK"
    with pytest.raises(ValueError):
        primary_capability(["a"], preferred="b")


def test_main_tex_quotes_numbers_only_through_macros(inputs):
    """Every macro numbers.tex defines is used by main.tex, and its body holds no digit
    outside citations, labels and file names."""
    text = (REPO / "paper" / "main.tex").read_text()
    values = numbers.collect_numbers(inputs["asr"], inputs["correlation"], inputs["comparison"],
                                     inputs["capability"], inputs["manifest"],
                                     safe_kinds=inputs["safe_kinds"], judge="refusal")
    defined = {numbers.macro_name(k) for k in values}
    used = set(re.findall(r"\\([A-Za-z]+)", text))
    assert defined <= used, f"defined, never quoted: {sorted(defined - used)}"
    body = text.split(r"\begin{document}", 1)[1]
    body = "\n".join(line.split("%")[0] if not line.lstrip().startswith("%") else ""
                     for line in body.replace(r"\%", "PCT").splitlines())
    body = re.sub(r"\\(cite[tp]?|label|ref|input|includegraphics|bibliography|"
                  r"bibliographystyle|fittable|autoref|url)\*?(\[[^\]]*\])?\{[^}]*\}", "", body)
    assert not re.findall(r".{0,30}\d.{0,10}", body), re.findall(r".{0,30}\d.{0,10}", body)


def test_entropy_numbers_keep_their_differences():
    """The paper's entropy sentence: two means 5e-7 apart and differences of 1e-6 are quoted
    with the places (or the m×10^e) that show them, not as 1.000, 1.000 and 0.000."""
    tex = numbers.numbers_tex({"entropy_safe_mean": 0.99993914, "entropy_unsafe_mean": 0.9999396,
                               "entropy_diff_mean": 9.9e-7, "entropy_diff_min": 4.6e-7,
                               "entropy_diff_max": 2.04e-6})
    macros = dict(re.findall(r"\\newcommand\{\\([A-Za-z]+)\}\{(.*)\}", tex))
    assert macros == {"EntropySafeMean": "0.99993914", "EntropyUnsafeMean": "0.99993960",
                      "EntropyDiffMean": r"$9.9\times10^{-7}$",
                      "EntropyDiffMin": r"$4.6\times10^{-7}$",
                      "EntropyDiffMax": r"$2.0\times10^{-6}$"}


def expanded_paper(numbers_file: Path) -> str:
    """main.tex with each macro of ``numbers_file`` replaced by its body."""
    macros = dict(re.findall(r"\\newcommand\{\\([A-Za-z]+)\}\{(.*)\}", numbers_file.read_text()))
    return re.sub(r"\\([A-Za-z]+)(?:\{\})?", lambda m: macros.get(m.group(1), m.group(0)),
                  (REPO / "paper" / "main.tex").read_text())


def p_uses() -> int:
    """How many times main.tex quotes a p-value macro."""
    return len(re.findall(r"\\Primary\w*P\b", (REPO / "paper" / "main.tex").read_text()))


@pytest.mark.parametrize("degenerate", [False, True])
def test_p_values_read_as_a_phrase_defined_or_not(inputs, tmp_path, degenerate):
    """A p-value macro holds the whole "p = 0.030" / "p < 0.001" / "p n/a": the paper never
    glues "p" to "n/a" (it read "pn/a" five times) nor writes the symbol twice."""
    data = make_inputs(tmp_path / "in", models=["only_model%"], no_unsafe=True) \
        if degenerate else inputs
    rendered = render_all(data, tmp_path / "generated")
    defined = [finite(v) for k, v in rendered["values"].items() if k.endswith("_p")]
    assert defined and all(d != degenerate for d in defined)
    raw = expanded_paper(rendered["numbers"])
    text = re.sub(r"\\ensuremath|[${}]", "", raw)
    assert "p$n/a" not in raw and "pn/a" not in text
    assert not re.search(r"\bp\s*p\s*[=<n]", text)  # no "$p$" left before a phrase
    pattern = r"\bp n/a" if degenerate else r"\bp[=<]0\.\d{3}"
    assert p_uses() >= 5 and len(re.findall(pattern, text)) == p_uses()


# --- the paper ----------------------------------------------------------------------------------

def test_missing_generated_file_is_named(inputs, tmp_path):
    out = tmp_path / "generated"
    render_all(inputs, out)
    (out / "tables" / "correlation.tex").unlink()
    with pytest.raises(FileNotFoundError, match=r"tables/correlation\.tex"):
        paper.build_paper(REPO / "paper", out, tmp_path / "paper" / "main.pdf")
    assert not (tmp_path / "paper" / "main.pdf").exists()


def test_missing_latexmk_is_named(inputs, tmp_path):
    out = tmp_path / "generated"
    render_all(inputs, out)
    with pytest.raises(FileNotFoundError, match="latexmk not found.*install-tex"):
        paper.build_paper(REPO / "paper", out, tmp_path / "main.pdf",
                          latexmk=str(tmp_path / "no-such-latexmk"))


def test_required_files_are_those_main_tex_reads():
    text = (REPO / "paper" / "main.tex").read_text()
    read = set(re.findall(r"\\(?:input|includegraphics)(?:\[[^\]]*\])?\{generated/([^}]+)\}",
                          text))
    assert read == set(paper.REQUIRED), read ^ set(paper.REQUIRED)


def latex_to_text(value: str) -> str:
    """What pdftotext shows of a macro body (as compared below: no spaces, no hyphens)."""
    text = value.replace("$-$", "\u2212").replace(r"\ensuremath", "")
    for tex, plain in ((r"\%", "%"), (r"\_", "_"), (r"\&", "&"), (r"\#", "#"), ("{}", ""),
                       ("$", ""), ("{", ""), ("}", "")):
        text = text.replace(tex, plain)
    return normalise(text)


def normalise(text: str) -> str:
    return re.sub(r"[\s\-\u00ad]+", "", text).replace("\ufb01", "fi").replace("\ufb02", "fl")


@pytest.mark.skipif(not HAS_LATEXMK, reason=NO_TEX)
def test_paper_builds_quotes_every_number_and_is_byte_stable(inputs, tmp_path):
    out = tmp_path / "generated"
    rendered = render_all(inputs, out)
    start = time.perf_counter()
    pdf = paper.build_paper(REPO / "paper", out, tmp_path / "one" / "main.pdf")
    elapsed = time.perf_counter() - start
    again = paper.build_paper(REPO / "paper", out, tmp_path / "two" / "main.pdf",
                              build_dir=tmp_path / "elsewhere")
    print(f"latexmk build in {elapsed:.1f} s")
    assert pdf.read_bytes().startswith(b"%PDF")
    assert pdf.read_bytes() == again.read_bytes(), "the paper is not byte-stable"
    if not HAS_PDFTOTEXT:
        pytest.skip("pdftotext (poppler-utils) not installed: cannot read the PDF's text")
    shown = normalise(subprocess.run(["pdftotext", "-enc", "UTF-8", str(pdf), "-"], check=True,
                                     capture_output=True, text=True).stdout)
    macros = re.findall(r"\\newcommand\{\\([A-Za-z]+)\}\{(.*)\}",
                        rendered["numbers"].read_text())
    missing = [(name, body) for name, body in macros if latex_to_text(body) not in shown]
    assert not missing, f"numbers.tex values not in the PDF: {missing}"
    assert "Wilson" in shown and "HarmBench" in shown


@pytest.mark.skipif(not HAS_LATEXMK, reason=NO_TEX)
def test_paper_builds_on_degenerate_run(tmp_path):
    data = make_inputs(tmp_path / "in", models=["only_model%"], no_unsafe=True)
    out = tmp_path / "generated"
    render_all(data, out)
    pdf = paper.build_paper(REPO / "paper", out, tmp_path / "main.pdf")
    assert pdf.read_bytes().startswith(b"%PDF")
    if not HAS_PDFTOTEXT:
        pytest.skip("pdftotext (poppler-utils) not installed: cannot read the PDF's text")
    shown = " ".join(subprocess.run(["pdftotext", "-enc", "UTF-8", str(pdf), "-"], check=True,
                                    capture_output=True, text=True).stdout.split())
    assert "pn/a" not in shown and shown.count("p n/a") == p_uses()  # undefined, read whole


def test_latexmk_failure_names_the_error(inputs, tmp_path):
    if not HAS_LATEXMK:
        pytest.skip(NO_TEX)
    out = tmp_path / "generated"
    render_all(inputs, out)
    (out / "tables" / "entropy.tex").write_text("\\begin{tabular}{l}\n\\undefinedmacro\n")
    with pytest.raises(RuntimeError, match="undefinedmacro|Undefined control sequence"):
        paper.build_paper(REPO / "paper", out, tmp_path / "main.pdf")


def test_correlation_table_says_why_a_cell_is_empty():
    corr = pd.DataFrame([{column: math.nan for column in tables.CORRELATION_COLUMNS}
                         | {"capability": "measured:mir-reasoning-embedded", "n_models": 3,
                            "note": "correlation n/a: fewer than 5 models"}])
    text = tables.correlation_table(corr)
    assert "fewer than 5 models" in text and "mir-reasoning-embedded" in text


# --- power and the zoo --------------------------------------------------------------------------

def test_power_numbers_quote_the_run_and_the_study(inputs):
    values = numbers.power_numbers(inputs["power"])
    table = read_frame(inputs["power"])
    run = table[(table["scenario"] == "run") & (table["rho_source"] == "recovered")].iloc[0]
    assert values["power_run_n"] == len(MODELS) and values["power_study_n"] == 19
    assert values["power_study_instances"] == 2676
    assert values["power_run_recovered_pct"] == pytest.approx(run["power"] * 100)
    assert values["power_recovered_rho"] == pytest.approx(abs(run["true_rho"]))
    assert values["power_stated_rhos"] == "0.3, 0.5, 0.7 and 0.9"
    assert values["power_run_stated"].count(r"\%") == 4


def test_undefined_power_gives_the_reason(tmp_path):
    """No recovered rho: the text says why; no spread in the run: the figure says why."""
    values = numbers.power_numbers(make_inputs(tmp_path / "nan", nan_corr=True)["power"])
    assert values["power_run_recovered_pct"].startswith(
        "n/a (no recovered rho: capability constant across models)")
    fig = figures.power_vs_models(run_like_inputs(tmp_path / "flat")["power"], tmp_path / "p.pdf")
    shown = " ".join(t.get_text() for t in texts(fig))
    assert "power n/a" in shown and "capability is constant" in shown


def test_zoo_run_says_it_is_a_method_check(inputs):
    """With a planted rho (the run's models are a zoo) the abstract and the limitations say the
    run is a method check with planted effects, with the planted value; without, nothing."""
    args = (inputs["asr"], inputs["correlation"], inputs["comparison"], inputs["capability"])
    zoo = numbers.collect_numbers(*args, power=inputs["power"], planted_rho=0.9428571428571428)
    assert "method check with planted effects" in zoo["run_nature"]
    assert "not a finding about real models" in zoo["run_nature"]
    assert "planted Spearman rank correlation of 0.94 " in zoo["run_nature_detail"]
    real = numbers.collect_numbers(*args, power=inputs["power"])
    assert real["run_nature"] == real["run_nature_detail"] == ""
    text = (REPO / "paper" / "main.tex").read_text()
    assert text.count(r"\textbf{\RunNature} \RunNatureDetail") == 2
    assert r"\includegraphics{generated/figures/power_vs_models.pdf}" in text
