"""A real generation job killed with SIGKILL mid-shard loses nothing when run again."""

import json
import os
import signal
import subprocess
import time

import pytest
import yaml

from conftest import snakemake, snakemake_command

pytestmark = pytest.mark.workflow

SHARD = "results/generations/tiny-qwen2.5-vl-m/multi_image/000-of-001.jsonl"
LEDGER = "results/generations/tiny-qwen2.5-vl-m/multi_image/.000-of-001.progress.jsonl"


#: A random-weight tiny model answers 48 tokens of gibberish per item, one item at a time: a
#: generation job long enough to be killed in the middle.
ONE_MODEL = {"models": {"tiny-qwen2.5-vl-m": {
    "backend": "transformers", "weights": {"tiny": "tiny-qwen2.5-vl-m"}, "dtype": "float32",
    "system_prompt": "You are a helpful assistant.", "family": "tiny-qwen",
    "decoding": {"do_sample": False, "max_new_tokens": 48}, "batch_size": 1, "shards": 1,
    "resources": {"gpus": 0, "threads": 1, "mem_mb": 2000, "setup_min": 2,
                  "seconds_per_item": 1}}}}


def one_model_config(project):
    (project / "one.yaml").write_text(yaml.safe_dump(ONE_MODEL))


def ledger_items(project) -> int:
    path = project / LEDGER
    return max(0, len(path.read_bytes().split(b"\n")) - 2) if path.exists() else 0


def kill_mid_shard(project, at_least=10) -> int:
    """Start the workflow, SIGKILL its whole process group once some items are done."""
    process = subprocess.Popen(snakemake_command(SHARD, "--configfile", "one.yaml"), cwd=project,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 300
    while ledger_items(project) < at_least and process.poll() is None:
        assert time.monotonic() < deadline, "generation never started"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return ledger_items(project)


def test_sigkill_mid_shard_then_rerun_loses_and_duplicates_nothing(project):
    one_model_config(project)
    started = time.monotonic()
    done_before_kill = kill_mid_shard(project)
    print(f"killed after {time.monotonic() - started:.1f} s with {done_before_kill} item(s) done")
    assert not (project / SHARD).exists(), "a killed shard must not look complete"
    assert 10 <= done_before_kill < 108, "the kill did not land mid-shard"

    assert snakemake(project, "--unlock", "--configfile", "one.yaml").returncode == 0
    rerun = snakemake(project, SHARD, "--configfile", "one.yaml")
    assert rerun.returncode == 0, rerun.stderr
    log = (project / "logs/generate/tiny-qwen2.5-vl-m/multi_image/000-of-001.log").read_text()
    resumed = int(log.split(" already done")[0].rsplit(", ", 1)[1])
    assert done_before_kill - 1 <= resumed <= done_before_kill  # at most the item in flight lost
    records = [json.loads(x) for x in (project / SHARD).read_text().splitlines()]
    instances = [json.loads(x) for x in
                 (project / "results/data/sample/instances.jsonl").read_text().splitlines()]
    assert [r["uid"] for r in records] == [i["uid"] for i in instances]
    assert {r["status"] for r in records} == {"ok"}

    # Greedy decoding at batch size 1: the resumed shard equals one made in a single run.
    (project / SHARD).unlink()
    (project / LEDGER).unlink()
    fresh = snakemake(project, SHARD, "--forcerun", "generate", "--configfile", "one.yaml")
    assert fresh.returncode == 0, fresh.stderr
    again = [json.loads(x) for x in (project / SHARD).read_text().splitlines()]
    strip = ("latency_s",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in records] == \
           [{k: v for k, v in r.items() if k not in strip} for r in again]
