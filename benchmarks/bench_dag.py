"""Benchmark of planning the full study: jobs in its DAG and the time a dry run takes.

Plans the study (config/study.yaml: 19 models x 2,676 instances at its shard counts) with the
slurm profile, side by side with the default run (config.yaml: the embedded sample, 3 tiny
models) as the baseline, each as `snakemake -n` in a fresh process from a clean copy of the
project. Wall time includes Snakemake's start-up (parsing the Snakefile, validating the config),
which is what a user waits for; peak RSS is the largest child's so far (the baseline runs
first). Medians of R runs, printed as markdown.
The profile is used without `software-deployment-method: conda` (a dry run with it needs conda).

Run: .venv/bin/python benchmarks/bench_dag.py [--repeats R]
"""

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(".git", ".venv", "results", "logs", ".snakemake", "__pycache__",
                                ".pytest_cache", "benchmarks")
CASES = {"default (baseline)": [], "study": ["--configfile", "config/study.yaml"]}


def copy_project(root: Path) -> Path:
    """A clean copy of the project plus the slurm profile without conda."""
    shutil.copytree(REPO, root / "project", ignore=IGNORE)
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    profile.pop("software-deployment-method")
    (root / "profile").mkdir()
    (root / "profile/config.yaml").write_text(yaml.safe_dump(profile))
    return root / "project"


def dry_run(project: Path, profile: Path, args: list[str]) -> tuple[float, float, int]:
    """Seconds, peak RSS (MiB) and planned jobs of one dry run in a fresh process."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--profile", str(profile), *args], cwd=project,
        capture_output=True, text=True, env={**os.environ, "HF_TOKEN": "dry-run"})
    seconds = time.perf_counter() - start
    if result.returncode:
        sys.exit(result.stderr[-3000:])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child so far
    jobs = int(re.search(r"^total\s+(\d+)$", result.stdout, flags=re.M)[1])
    return seconds, peak / 1024, jobs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats
    with tempfile.TemporaryDirectory() as tmp:
        project = copy_project(Path(tmp))
        rows = {}
        for case, args in CASES.items():
            runs = [dry_run(project, Path(tmp, "profile"), args) for _ in range(repeats)]
            rows[case] = (statistics.median(r[0] for r in runs), max(r[1] for r in runs),
                          runs[0][2])
    base_s, _, base_jobs = rows["default (baseline)"]
    print(f"| case | jobs | dry run (s, median of {repeats}) | vs baseline | peak RSS (MiB) |")
    print("| --- | --: | --: | --: | --: |")
    for case, (seconds, peak, jobs) in rows.items():
        print(f"| {case} | {jobs} | {seconds:.2f} | {seconds / base_s:.2f}x time, "
              f"{jobs / base_jobs:.1f}x jobs | {peak:.0f} |")


if __name__ == "__main__":
    main()
