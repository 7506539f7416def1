"""The default workflow on a real Slurm cluster through profiles/slurm, equal to a local run.

Runs only where CI started a throwaway single-node cluster: .ci/slurm-up installs Debian's Slurm,
REWRITES /etc/slurm/slurm.conf and starts munged, slurmctld and slurmd, and .ci/run then sets
MIRSAFETY_SLURM_CLUSTER=1. `make test` on a developer's machine never does that, so there this
test is skipped (with that reason) rather than touching the machine's Slurm.
"""

import filecmp
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import IGNORE, REPO, profile_without_conda

pytestmark = [
    pytest.mark.workflow,
    pytest.mark.skipif(
        os.environ.get("MIRSAFETY_SLURM_CLUSTER") != "1",
        reason="no throwaway Slurm cluster here: `bash .ci/run` starts one with .ci/slurm-up "
               "(it rewrites /etc/slurm/slurm.conf, so `make test` never does) and sets "
               "MIRSAFETY_SLURM_CLUSTER=1",
    ),
]

# What a reader of the study gets, byte for byte: tables, figures and the paper.
FINAL = ["results/tables", "results/asr", "results/analysis", "results/reasoning/capability.csv",
         "results/figures", "results/paper/main.pdf"]

# Settings of the throwaway cluster, not of the profile: it has no accounting database, so job
# states come from squeue (MinJobAge=3600 keeps finished jobs visible) and there is no account.
CLUSTER_OPTIONS = ["--slurm-status-command", "squeue", "--slurm-no-account",
                   "--slurm-init-seconds-before-status-checks", "5"]


def files_under(root, paths):
    found = set()
    for path in paths:
        target = root / path
        assert target.exists(), f"{path} is missing from {root}"
        found |= {p.relative_to(root) for p in ([target] if target.is_file() else target.rglob("*"))
                  if p.is_file()}
    return found


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory):
    sinfo = subprocess.run(["sinfo", "-h", "-o", "%P %t"], capture_output=True, text=True)
    assert sinfo.returncode == 0 and "idle" in sinfo.stdout, (
        f"MIRSAFETY_SLURM_CLUSTER=1 but the cluster does not answer: {sinfo.stderr or sinfo.stdout}")
    root = tmp_path_factory.mktemp("slurm") / "project"
    shutil.copytree(REPO, root, ignore=IGNORE)
    profile = profile_without_conda("slurm", tmp_path_factory.mktemp("profiles"))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", str(profile), *CLUSTER_OPTIONS],
        cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-20000:]
    return root, result.stdout + result.stderr


def test_every_compute_job_went_through_slurm(slurm_run):
    _, log = slurm_run
    submitted = re.findall(r"^Job \d+ has been submitted with SLURM jobid (\d+)", log, flags=re.M)
    planned = int(re.search(r"^total\s+(\d+)$", log, flags=re.M)[1])
    local = len(re.findall(r"^localrule \w+:$", log, flags=re.M))
    assert local == 1 and "localrule all:" in log  # only the target rule ran on the login node
    assert len(submitted) == planned - local == len(set(submitted))


def test_slurm_run_results_equal_the_local_run(slurm_run, default_run):
    root, _ = slurm_run
    ours, theirs = files_under(root, FINAL), files_under(default_run, FINAL)
    assert ours == theirs
    differ = [str(p) for p in sorted(ours) if not filecmp.cmp(root / p, default_run / p,
                                                             shallow=False)]
    assert not differ, f"Slurm and local runs differ in {differ}"
