"""Build the paper: ``paper/`` beside the generated tables, numbers and figures, then latexmk.

The build folder holds ``main.tex`` and ``refs.bib`` from ``paper/`` and, under ``generated/``,
the files in ``REQUIRED`` copied from the generated directory (the workflow's ``results/``):

    generated/tables/{asr_main,asr_relation,correlation,entropy,conditions,judge_audit,
                      numbers}.tex
    generated/figures/{asr_vs_reasoning,asr_heatmap,asr_by_category,taxonomy_shares,
                       entropy_safe_unsafe,asr_by_condition,power_vs_models}.pdf

Every one is checked before LaTeX runs; a missing one stops the build with its name. latexmk runs
with ``SOURCE_DATE_EPOCH=0`` and ``FORCE_SOURCE_DATE=1`` and main.tex sets ``\\pdftrailerid{}``
and ``\\pdfsuppressptexinfo``, so the same inputs give the same PDF bytes.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

from mirsafety.render import NUMBERS
from mirsafety.render.figures import FIGURE_FILES
from mirsafety.render.tables import TABLE_FILES

NUMBERS_FILE = f"tables/{NUMBERS}.tex"
REQUIRED = ([f"tables/{name}" for name in TABLE_FILES.values()] + [NUMBERS_FILE]
            + [f"figures/{name}" for name in FIGURE_FILES.values()])
SOURCES = ["main.tex", "refs.bib"]
LATEXMK = ["latexmk", "-pdf", "-norc", "-interaction=nonstopmode", "-halt-on-error",
           "-file-line-error", "main.tex"]
INSTALL_HINT = "install TeX Live with .ci/install-tex (Debian) or your TeX distribution"


def missing_inputs(paper_dir, generated_dir) -> list[str]:
    """The paper sources and generated files that do not exist, as paths."""
    paper_dir, generated_dir = Path(paper_dir), Path(generated_dir)
    missing = [str(paper_dir / name) for name in SOURCES if not (paper_dir / name).is_file()]
    missing += [str(generated_dir / name) for name in REQUIRED
                if not (generated_dir / name).is_file()]
    return missing


def _log_errors(log: Path, limit: int = 15) -> str:
    """The error lines of a LaTeX log (``file:line: message`` and ``! message``), with context."""
    if not log.exists():
        return "(no main.log was written)"
    lines = log.read_text(errors="replace").splitlines()
    picked = []
    for k, line in enumerate(lines):
        if line.startswith("!") or re.match(r"^[^:\s]+\.(tex|sty|cls|bbl):\d+: ", line):
            picked += lines[k:k + 3]
    return "\n".join(picked[:limit]) or "\n".join(lines[-limit:])


def _undefined(log: Path) -> list[str]:
    text = log.read_text(errors="replace") if log.exists() else ""
    return re.findall(r"LaTeX Warning: ((?:Citation|Reference) `[^']+' [^\n]*undefined)", text)


def build_paper(paper_dir, generated_dir, out_pdf, *, build_dir=None, timeout: float = 300,
                latexmk: str | None = None) -> Path:
    """Compile ``paper_dir``'s main.tex against ``generated_dir`` into ``out_pdf``.

    ``build_dir`` (default: ``build/`` beside ``out_pdf``) is emptied and filled with the
    sources and ``generated/``; latexmk runs there. Raises FileNotFoundError naming every
    missing input before LaTeX runs, and RuntimeError with the log's errors when the build fails
    or leaves a citation or reference undefined. Returns ``out_pdf``.
    """
    paper_dir, generated_dir, out_pdf = Path(paper_dir), Path(generated_dir), Path(out_pdf)
    missing = missing_inputs(paper_dir, generated_dir)
    if missing:
        raise FileNotFoundError("cannot build the paper, missing: " + ", ".join(missing)
                                + ". Make them with the render rules first.")
    command = [latexmk or shutil.which("latexmk") or "latexmk", *LATEXMK[1:]]
    if shutil.which(command[0]) is None:
        raise FileNotFoundError(f"latexmk not found: {INSTALL_HINT}")
    build = Path(build_dir) if build_dir is not None else out_pdf.parent / "build"
    if build.exists():
        shutil.rmtree(build)
    (build / "generated").mkdir(parents=True)
    for name in SOURCES:
        shutil.copyfile(paper_dir / name, build / name)
    for name in REQUIRED:
        target = build / "generated" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(generated_dir / name, target)
    env = {**os.environ, "SOURCE_DATE_EPOCH": "0", "FORCE_SOURCE_DATE": "1", "TZ": "UTC",
           "LC_ALL": "C"}
    try:
        run = subprocess.run(command, cwd=build, env=env, capture_output=True, text=True,
                             timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"latexmk ran longer than {timeout} s in {build}") from error
    log = build / "main.log"
    if run.returncode != 0 or not (build / "main.pdf").is_file():
        raise RuntimeError(f"latexmk failed (exit {run.returncode}) in {build}:\n"
                           f"{_log_errors(log)}\n--- latexmk ---\n{run.stdout[-1500:]}"
                           f"{run.stderr[-1500:]}")
    undefined = _undefined(log)
    if undefined:
        raise RuntimeError(f"the paper built with undefined citations or references "
                           f"(check refs.bib and the labels): {undefined}")
    out_pdf.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(build / "main.pdf", out_pdf)
    return out_pdf


__all__ = ["build_paper", "missing_inputs", "REQUIRED", "NUMBERS_FILE"]
