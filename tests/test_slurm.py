"""The workflow on a real Slurm cluster through profiles/slurm, as a user of an accounting cluster
runs it: the default workflow equal to a local run, and GPU jobs that Slurm schedules as such.

Runs only where CI started a throwaway single-node cluster: .ci/slurm-up installs Debian's Slurm
and MariaDB, REWRITES /etc/slurm/slurm.conf and starts munged, MariaDB, slurmdbd, slurmctld and
slurmd, with two stand-in GPUs on the node and the account `mirsafety` for the user, and .ci/run
then sets MIRSAFETY_SLURM_CLUSTER=1. `make test` on a developer's machine never does that, so
there these tests are skipped (with that reason) rather than touching the machine's Slurm.

The profile is used as shipped, with its SITE account line filled in as a user fills it in; job
states come from sacct (the executor plugin's default on a cluster with accounting), and the tests
read back from sacct what Slurm recorded for every job the run submitted.
"""

import filecmp
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

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

# What .ci/slurm-up made: the account of the user running the tests, the default partition.
ACCOUNT, PARTITION = "mirsafety", "ci"

# A test's impatience, not a cluster setting: the first status check 5 s after a submission
# instead of the profile's 40 s, since every job here takes seconds.
QUICK_POLLING = ["--slurm-init-seconds-before-status-checks", "5"]

# What a reader of the study gets, byte for byte: tables, figures and the paper.
FINAL = ["results/tables", "results/asr", "results/analysis", "results/reasoning/capability.csv",
         "results/figures", "results/paper/main.pdf"]

# The GPU test: one tiny model and one tiny judge asking for a GPU each, one shard, the
# multi-image condition only; its target is one analysis rule on top of one generation, judge and
# entropy job (8 jobs with the data and model-building ones), not the whole workflow.
GPU_CONFIG = {
    "models": {"tiny-qwen2.5-vl-s": {
        "backend": "transformers", "weights": {"tiny": "tiny-qwen2.5-vl-s"}, "dtype": "float32",
        "decoding": {"do_sample": False, "max_new_tokens": 8, "seed": 0}, "batch_size": 8,
        "shards": 1, "conditions": ["multi_image"], "family": "tiny-qwen",
        "resources": {"gpus": 1, "mem_mb": 2000, "setup_min": 2, "seconds_per_item": 1}}},
    "judges": {"tiny-harmbench": {
        "kind": "harmbench", "weights": {"tiny": "tiny-harmbench-cls"}, "variant": "clean",
        "clip": "none", "dtype": "float32", "batch_size": 16,
        "resources": {"gpus": 1, "mem_mb": 2000, "setup_min": 2, "seconds_per_item": 1}}},
    "analysis": {"primary_judge": "tiny-harmbench"},
}
GPU_TARGET = "results/analysis/tiny-harmbench/entropy_comparison.csv"
GPU_RULES = {"generate", "judge", "entropy"}
# The node has 4 CPUs and 2 GPUs, fewer than the profile's 8 CPUs beside each GPU.
GPU_NODE_CPUS_PER_GPU = 2

SACCT_FIELDS = ["JobIDRaw", "Comment", "State", "Partition", "Account", "ReqTRES", "AllocTRES"]


def user_profile(dest, cpus_per_gpu=None):
    """profiles/slurm with its SITE account line filled in (and, for a node smaller than the
    profile assumes, fewer CPUs per GPU), as a user of this cluster would edit it."""
    profile = profile_without_conda("slurm", dest)
    path = profile / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config["default-resources"]["slurm_account"] = ACCOUNT
    if cpus_per_gpu:
        for rule in GPU_RULES:
            config["set-resources"][rule]["cpus_per_gpu"] = cpus_per_gpu
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return profile


def run_through_slurm(root, profile, *args):
    """Snakemake with the profile in ``root``; its log (stdout and stderr), after it succeeded."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", str(profile), *QUICK_POLLING, *args],
        cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-20000:]
    return result.stdout + result.stderr


def submitted(log):
    return re.findall(r"^Job \d+ has been submitted with SLURM jobid (\d+)", log, flags=re.M)


def tres(text):
    """A sacct TRES column ("cpu=2,gres/gpu=1,...") as a dict."""
    return dict(item.split("=", 1) for item in text.split(",") if item)


def recorded(log):
    """What Slurm's accounting recorded for every job of the run: one dict per job, with the rule
    (from the comment the executor plugin gives each job: rule_<rule>[_wildcards_...])."""
    jobs = submitted(log)
    result = subprocess.run(["sacct", "-X", "-n", "-P", "-j", ",".join(jobs),
                             "--format", ",".join(SACCT_FIELDS)],
                            capture_output=True, text=True, check=True)
    records = [dict(zip(SACCT_FIELDS, line.split("|"))) for line in result.stdout.splitlines()]
    for record in records:
        record["rule"] = re.match(r"rule_(.+?)(?:_wildcards_|$)", record["Comment"])[1]
        record["ReqTRES"], record["AllocTRES"] = tres(record["ReqTRES"]), tres(record["AllocTRES"])
    assert sorted(r["JobIDRaw"] for r in records) == sorted(jobs), "sacct lost some jobs"
    return records


def files_under(root, paths):
    found = set()
    for path in paths:
        target = root / path
        assert target.exists(), f"{path} is missing from {root}"
        found |= {p.relative_to(root) for p in ([target] if target.is_file() else target.rglob("*"))
                  if p.is_file()}
    return found


@pytest.fixture(scope="module")
def cluster():
    sinfo = subprocess.run(["sinfo", "-h", "-o", "%P %t"], capture_output=True, text=True)
    assert sinfo.returncode == 0 and "idle" in sinfo.stdout, (
        f"MIRSAFETY_SLURM_CLUSTER=1 but the cluster does not answer: {sinfo.stderr or sinfo.stdout}")


#: What the Slurm run takes from the local one instead of making again: the dataset and the
#: models (built tiny ones and the trained zoo, a third of the run's CPU time). Training is a CPU
#: job like any other, run locally by the default run; the Slurm run makes everything after it.
FROM_LOCAL = ["results/data", "results/models"]


@pytest.fixture(scope="module")
def slurm_run(cluster, default_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm") / "project"
    shutil.copytree(REPO, root, ignore=IGNORE)
    for made in FROM_LOCAL:  # copied with their times, so they stay newer than their inputs
        shutil.copytree(default_run / made, root / made, symlinks=True)
    profile = user_profile(tmp_path_factory.mktemp("profiles"))
    return root, run_through_slurm(root, profile)


@pytest.fixture(scope="module")
def gpu_run(cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm-gpu") / "project"
    shutil.copytree(REPO, root, ignore=IGNORE)
    (root / "gpu.yaml").write_text(yaml.safe_dump(GPU_CONFIG, sort_keys=False))
    profile = user_profile(tmp_path_factory.mktemp("profiles"), GPU_NODE_CPUS_PER_GPU)
    return run_through_slurm(root, profile, GPU_TARGET, "--configfile", "gpu.yaml")


def test_every_compute_job_went_through_slurm(slurm_run):
    _, log = slurm_run
    jobs = submitted(log)
    planned = int(re.search(r"^total\s+(\d+)$", log, flags=re.M)[1])
    local = len(re.findall(r"^localrule \w+:$", log, flags=re.M))
    assert local == 1 and "localrule all:" in log  # only the target rule ran on the login node
    assert len(jobs) == planned - local == len(set(jobs))


def test_slurm_recorded_every_job_completed_in_the_users_account(slurm_run):
    records = recorded(slurm_run[1])
    wrong = [r for r in records if (r["State"], r["Partition"], r["Account"])
             != ("COMPLETED", PARTITION, ACCOUNT)]
    assert not wrong, f"jobs not COMPLETED in partition {PARTITION}, account {ACCOUNT}: {wrong}"
    # The default run's zoo trains and runs on CPUs: none of its jobs holds a GPU.
    assert not [r for r in records if "gres/gpu" in r["AllocTRES"]]


def test_slurm_run_results_equal_the_local_run(slurm_run, default_run):
    root, _ = slurm_run
    ours, theirs = files_under(root, FINAL), files_under(default_run, FINAL)
    assert ours == theirs
    differ = [str(p) for p in sorted(ours) if not filecmp.cmp(root / p, default_run / p,
                                                             shallow=False)]
    assert not differ, f"Slurm and local runs differ in {differ}"


def test_slurm_gave_a_gpu_to_model_and_judge_jobs_only(gpu_run):
    records = recorded(gpu_run)
    assert {r["rule"] for r in records} >= GPU_RULES | {"entropy_compare"}
    assert all(r["State"] == "COMPLETED" and r["Account"] == ACCOUNT for r in records), records
    gpus = {(r["rule"], r["ReqTRES"].get("gres/gpu"), r["AllocTRES"].get("gres/gpu"))
            for r in records}
    expected = {(r["rule"], "1", "1") if r["rule"] in GPU_RULES else (r["rule"], None, None)
                for r in records}
    assert gpus == expected  # (rule, GPUs requested, GPUs allocated) for every job
