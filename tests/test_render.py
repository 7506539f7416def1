"""Stage 8, render: figures, tables, number macros and the paper, from synthetic analysis files.

The inputs are made here in the analysis stage's formats (the ASR tables by ``mirsafety.analysis.asr``
itself, from drawn labels), so nothing depends on a workflow run.
"""

import json
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

from mirsafety.analysis.asr import asr_tables, safe_kind_shares
from mirsafety.core.taxonomy import CATEGORIES, RELATIONS
from mirsafety.render import figures, numbers, paper, primary_capability, tables
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
            "note": "n < 3" if nan else ""})
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
                                 inputs["comparison"], inputs["layers"], judge=judge)
    tabs = tables.write_tables(out / "tables", inputs["asr"], inputs["correlation"],
                               inputs["comparison"], judge=judge)
    values = numbers.collect_numbers(inputs["asr"], inputs["correlation"], inputs["comparison"],
                                     inputs["capability"], inputs["manifest"],
                                     safe_kinds=inputs["safe_kinds"], judge=judge)
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
                                  inputs["comparison"], inputs["layers"])
    elapsed = time.perf_counter() - start
    second = figures.write_figures(tmp_path / "b", inputs["asr"], inputs["capability"],
                                   inputs["correlation"], inputs["safe_kinds"],
                                   inputs["comparison"], inputs["layers"])
    assert set(first) == set(figures.FIGURE_FILES)
    for key, path in first.items():
        data = path.read_bytes()
        assert data.startswith(b"%PDF") and len(data) > 2000, key
        assert data == second[key].read_bytes(), f"{key} differs between two renders"
        assert b"CreationDate" not in data and b"ModDate" not in data, key
        assert b"matplotlib" not in data.lower(), f"{key} names its producer"
    print(f"six figures in {elapsed:.2f} s")


def test_figures_are_byte_stable_across_processes(inputs, tmp_path):
    """Another interpreter with another hash seed writes the same bytes."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2])\n"
        "from pathlib import Path\n"
        "from mirsafety.render import figures\n"
        "i = {k: Path(sys.argv[4]) / f'{k}.csv' for k in "
        "['asr','capability','correlation','safe_kinds','comparison','layers']}\n"
        "figures.write_figures(Path(sys.argv[3]), i['asr'], i['capability'], i['correlation'],"
        " i['safe_kinds'], i['comparison'], i['layers'])\n")
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


def test_figures_fit_the_page_and_no_text_below_8pt(inputs, tmp_path):
    figs = {
        "asr_vs_reasoning": figures.asr_vs_reasoning(inputs["asr"], inputs["capability"],
                                                     inputs["correlation"], tmp_path / "1.pdf"),
        "asr_heatmap": figures.asr_heatmap(inputs["asr"], tmp_path / "2.pdf"),
        "asr_by_category": figures.asr_by_category(inputs["asr"], tmp_path / "3.pdf"),
        "taxonomy_shares": figures.taxonomy_shares(inputs["safe_kinds"], tmp_path / "4.pdf"),
        "entropy_safe_unsafe": figures.entropy_safe_unsafe(inputs["comparison"],
                                                           inputs["layers"], tmp_path / "5.pdf"),
    }
    for key, fig in figs.items():
        width, _ = fig.get_size_inches()
        assert width <= figures.TEXT_WIDTH + 1e-9, key
        small = [(t.get_text(), t.get_fontsize()) for t in texts(fig)
                 if t.get_fontsize() < figures.MIN_FONT_PT]
        assert not small, f"{key}: text below {figures.MIN_FONT_PT} pt: {small[:5]}"
        for ax in fig.axes:
            if ax.get_visible() and ax.axison and ax.get_xticks().size:
                assert ax.get_xlabel() or ax.get_yticks().size == 0 or key == "asr_heatmap", key


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
    if case != "no_unsafe_answers":
        assert any(figures.TOO_SMALL in t.get_text() for t in texts(fig)), case
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
                               "entropy_diff_mean": -0.01234})
    macros = dict(re.findall(r"\\newcommand\{\\([A-Za-z]+)\}\{(.*)\}", tex))
    assert macros == {"NItems": "2,676", "AsrPct": r"12.3\%", "Rho": "$-$0.12",
                      "RhoP": r"\ensuremath{{}=0.034}", "TinyP": r"\ensuremath{{}<0.001}",
                      "Gone": "n/a", "Name": r"a\_b\%", "EntropyDiffMean": "$-$0.012"}


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


def test_latexmk_failure_names_the_error(inputs, tmp_path):
    if not HAS_LATEXMK:
        pytest.skip(NO_TEX)
    out = tmp_path / "generated"
    render_all(inputs, out)
    (out / "tables" / "entropy.tex").write_text("\\begin{tabular}{l}\n\\undefinedmacro\n")
    with pytest.raises(RuntimeError, match="undefinedmacro|Undefined control sequence"):
        paper.build_paper(REPO / "paper", out, tmp_path / "main.pdf")
