"""The workflow itself, run by Snakemake in a fresh copy of the project (no shared state)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, write_extracted

pytestmark = pytest.mark.workflow

IGNORE = shutil.ignore_patterns(".git", ".venv", "results", "logs", ".snakemake", "__pycache__",
                                ".pytest_cache", "benchmarks")


@pytest.fixture
def project(tmp_path):
    """A copy of the project as a clean clone would have it."""
    root = tmp_path / "project"
    shutil.copytree(REPO, root, ignore=IGNORE)
    return root


def snakemake(project, *args, env=None):
    command = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    return subprocess.run(command, cwd=project, capture_output=True, text=True, env=env)


def test_lint_is_clean(project):
    result = snakemake(project, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stderr


def test_sample_manifest_target_from_a_clean_copy(project):
    result = snakemake(project, "results/data/sample/manifest.json")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((project / "results/data/sample/manifest.json").read_text())
    assert manifest["counts"]["total"] == 108
    assert manifest["count_check"]["status"] == "ok"
    assert "prepared 108 instance(s)" in (project / "logs/data/prepare_sample.log").read_text()
    again = snakemake(project, "results/data/sample/manifest.json")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_unknown_config_key_stops_the_run_by_name(project):
    result = snakemake(project, "-n", "--config", "dataset={'nmae': 'mir'}")
    assert result.returncode != 0
    assert "unknown config key 'dataset.nmae'" in result.stdout + result.stderr


def test_unreachable_hub_fails_at_once_without_leaking_the_token(project):
    secret = "hf_workflowTestSecret123"
    env = {**os.environ, "HF_TOKEN": secret, "HF_ENDPOINT": "http://127.0.0.1:9",
           "HF_HOME": str(project / "hf-home")}
    result = snakemake(project, "--config", "dataset={'name': 'mir'}", env=env)
    assert result.returncode != 0
    log = (project / "logs/data/download_dataset.log").read_text()
    assert "cannot be reached" in log
    assert "dataset.name: sample" in log and "dataset.local_path" in log
    everything = result.stdout + result.stderr + "".join(
        p.read_text(errors="replace") for p in project.rglob("*.log")
    )
    assert secret not in everything
    assert not (project / "results/raw/mir").exists()


def test_local_copy_in_the_authors_layout_is_prepared(project, tmp_path, tiny_records):
    local = write_extracted(tiny_records, tmp_path / "MIR-extracted")
    config = {"dataset": {"name": "mir", "local_path": str(local),
                          "check_published_counts": False}}
    (project / "local.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(project, "--configfile", "local.yaml")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((project / "results/data/mir/manifest.json").read_text())
    assert manifest["source"]["kind"] == "extracted"
    assert manifest["count_check"]["status"] == "mismatch"
    assert "count differs" in (project / "logs/data/prepare_mir.log").read_text()


def test_bad_local_copy_fails_and_leaves_no_declared_output(project, tmp_path, tiny_records):
    tiny_records[3]["images"][0] = {"bytes": b"", "path": None}
    local = write_extracted(tiny_records, tmp_path / "bad")
    config = {"dataset": {"name": "mir", "local_path": str(local),
                          "check_published_counts": False}}
    (project / "bad.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(project, "--configfile", "bad.yaml")
    assert result.returncode != 0
    assert "is empty (0 bytes)" in (project / "logs/data/prepare_mir.log").read_text()
    assert not (project / "results/data/mir").exists() or not any(
        (project / "results/data/mir").iterdir()
    )
