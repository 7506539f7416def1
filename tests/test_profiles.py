"""The execution profiles: valid Snakemake options, documented, and the plan they give.

The dry runs here need neither Slurm nor conda (see conftest.profile_without_conda); the real
Slurm run is tests/test_slurm.py.
"""

import math
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from mirsafety.core.config import validate_config
from mirsafety.core.job_size import (
    entropy_seconds,
    generation_seconds,
    item_seconds,
    job_resources,
    judge_seconds,
    load_throughput,
)
from mirsafety.core.shards import shard_size
from mirsafety.core.taxonomy import PUBLISHED_TOTAL

from conftest import IGNORE, REPO, profile_without_conda, snakemake

PROFILES = ["local", "slurm"]


@pytest.fixture(scope="module")
def snakemake_options():
    """Every long option this Snakemake (with the Slurm executor plugin installed) accepts."""
    help_text = subprocess.run([sys.executable, "-m", "snakemake", "--help"], capture_output=True,
                               text=True, check=True).stdout
    return set(re.findall(r"--([a-z][a-z0-9-]+)", help_text))


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_entry_is_a_snakemake_option(name, snakemake_options):
    config = yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())
    unknown = sorted(set(config) - snakemake_options)
    assert not unknown, f"profiles/{name}: not Snakemake options: {unknown}"


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_entry_has_a_comment(name):
    lines = (REPO / "profiles" / name / "config.yaml").read_text().splitlines()
    for number, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if re.match(r"^[a-z][\w-]*:", line):  # a top-level entry
            above = lines[number - 1].lstrip() if number else ""
            assert "#" in line or above.startswith("#"), f"profiles/{name}:{number + 1}: {line}"


def test_slurm_profile_leaves_partition_and_account_to_the_user():
    text = (REPO / "profiles/slurm/config.yaml").read_text()
    config = yaml.safe_load(text)
    assert config["executor"] == "slurm"
    assert "slurm_account" not in str(config) and "slurm_partition" not in str(config)
    for key in ("slurm_account", "slurm_partition"):
        assert re.search(rf"^\s*#.*SITE.*\n\s*# {key}:", text, flags=re.M), key


def job_blocks(dry_run_output: str) -> list[dict]:
    """Rule, wildcards and resources of every job a dry run prints."""
    jobs = []
    for block in re.split(r"^(?=(?:local)?rule \w+:$)", dry_run_output, flags=re.M):
        head = re.match(r"^(?:local)?rule (\w+):$", block, flags=re.M)
        if not head:
            continue
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, flags=re.M)
        resources = re.search(r"^\s+resources: (.*)$", block, flags=re.M)
        jobs.append({
            "rule": head[1],
            "wildcards": dict(x.split("=", 1) for x in wildcards[1].split(", ")) if wildcards else {},
            "resources": dict(x.split("=", 1) for x in resources[1].split(", ")) if resources else {},
        })
    return jobs


@pytest.fixture(scope="module")
def study_plan(tmp_path_factory):
    """The slurm profile's dry run of the full study: every job with its resources."""
    root = tmp_path_factory.mktemp("study") / "project"
    shutil.copytree(REPO, root, ignore=IGNORE)
    profile = profile_without_conda("slurm", tmp_path_factory.mktemp("profiles"))
    result = snakemake(root, "-n", "--profile", str(profile), "--configfile", "config/study.yaml",
                       env={**os.environ, "HF_TOKEN": "dry-run"})
    assert result.returncode == 0, result.stderr
    study = validate_config(yaml.safe_load((root / "config/study.yaml").read_text()),
                            REPO / "workflow/schemas/config.schema.yaml")
    return job_blocks(result.stdout + result.stderr), study


def test_slurm_dry_run_of_the_study_plans_one_job_per_model_and_shard(study_plan):
    jobs, study = study_plan
    models, judges = study["models"], study["judges"]
    count = {rule: sum(j["rule"] == rule for j in jobs) for rule in ("generate", "judge")}
    runs = sum(m["shards"] * len(m["conditions"]) for m in models.values())
    assert count == {"generate": runs, "judge": runs * len(judges)}


def test_slurm_dry_run_requests_registry_gpus_and_runtime_scaled_by_shard(study_plan):
    jobs, study = study_plan
    checked = set()
    for job in jobs:
        if job["rule"] not in ("generate", "judge", "entropy"):
            continue
        model = study["models"][job["wildcards"]["model"]]
        owner = study["judges"][job["wildcards"]["judge"]] if job["rule"] == "judge" else model
        derived = {"judge": lambda: judge_seconds(owner, model),
                   "entropy": lambda: entropy_seconds(model),
                   "generate": lambda: generation_seconds(model, job["wildcards"]["condition"])}
        seconds = item_seconds("owner", owner["resources"], derived[job["rule"]]())
        want = job_resources(owner["resources"],
                             shard_size(PUBLISHED_TOTAL, model["shards"]), seconds)
        got = job["resources"]
        assert (int(got["gpu"]), int(got["mem_mb"]), int(got["runtime"])) == (
            want["gpu"], want["mem_mb"], want["runtime"]), job
        assert got["cpus_per_gpu"] == "8", job  # the profile's per-rule request
        checked.add((job["rule"], want["gpu"]))
    # GPU and CPU-only jobs of every GPU rule (API models and the refusal judge need no GPU).
    assert checked >= {("generate", 0), ("generate", 1), ("generate", 4), ("judge", 0),
                       ("judge", 1), ("entropy", 1)}


def test_runtime_of_the_72b_model_by_hand(study_plan):
    jobs, _ = study_plan
    job = next(j for j in jobs if j["rule"] == "generate"
               and j["wildcards"]["model"] == "Qwen2.5-VL-72B")
    # vLLM, tensor parallel on 4 GPUs: 4,240 prompt tokens at 4 x 50,000 / 73.4 tokens/s, 600
    # answer tokens at 4 x 20,000 / 73.4; 2,676 / 2 shards -> 1,338 items, x the margin, + 20.
    seconds = 4240 / (4 * 50000 / 73.4) + 600 / (4 * 20000 / 73.4)
    margin = load_throughput()["margin"]
    assert job["resources"]["runtime"] == str(20 + math.ceil(1338 * seconds * margin / 60))
    assert job["resources"]["gpu"] == "4"


def test_local_profile_plans_the_default_run(project, tmp_path):
    plain = snakemake(project, "-n")
    profile = profile_without_conda("local", tmp_path)
    with_profile = snakemake(project, "-n", "--profile", str(profile))
    assert with_profile.returncode == 0, with_profile.stderr
    total = re.compile(r"^total\s+(\d+)$", flags=re.M)
    assert total.search(with_profile.stdout)[1] == total.search(plain.stdout)[1]


def make_recipe(target: str) -> str:
    """The command lines of a Makefile target, as written (variables unexpanded)."""
    text = (REPO / "Makefile").read_text()
    block = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, flags=re.M)
    assert block, f"Makefile has no target {target}"
    return block[1]


def test_make_run_resumes_like_the_local_profile():
    """A run killed after its last item leaves incomplete outputs; the local profile re-runs
    them, and so must ``make run``, or the next run stops with IncompleteFilesException."""
    config = yaml.safe_load((REPO / "profiles/local/config.yaml").read_text())
    assert config["rerun-incomplete"] is True
    assert "--rerun-incomplete" in make_recipe("run").split()
    resuming = re.search(r"\*\*Failures and resuming\.\*\*(.*?)\n## ",
                         (REPO / "docs/running.md").read_text(), flags=re.S)[1]
    assert "--unlock" in resuming and "--rerun-incomplete" in resuming
