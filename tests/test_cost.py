"""The cost report: GPU-hours per model and stage from the throughput model, for both engines,
and the study's total under the budget the README states."""

import csv

import pytest
import yaml

from mirsafety.core.config import validate_config, without_excluded
from mirsafety.core.cost import cost_table, render, write_table
from mirsafety.core.job_size import generation_seconds, load_throughput, runtime_minutes
from mirsafety.core.taxonomy import PUBLISHED_TOTAL

from conftest import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
RUN = {"items": 100, "reasoning_items": 10, "reasoning_max_new_tokens": 64,
       "entropy_models": ["local"]}
GPU = {"gpus": 1, "mem_mb": 48000, "setup_min": 6, "seconds_per_item": None}


def local(**extra):
    return {"backend": "vllm", "family": "qwen", "params_b": 8.0, "batch_size": 8, "shards": 2,
            "conditions": ["multi_image", "text_only"], "resources": dict(GPU),
            "decoding": {"max_new_tokens": 4096}, **extra}


def api():
    return {"backend": "openai", "shards": 1, "conditions": ["multi_image"],
            "decoding": {"max_new_tokens": None},
            "resources": {"gpus": 0, "mem_mb": 2000, "setup_min": 5, "seconds_per_item": 20}}


JUDGES = {"hb": {"kind": "harmbench", "resources": {**GPU, "setup_min": 3}},
          "refusal": {"kind": "refusal", "resources": {**GPU, "gpus": 0, "seconds_per_item": 1}}}


@pytest.fixture
def table():
    return cost_table({"local": local(), "api": api()}, JUDGES, RUN)


def by(table, model, stage):
    (row,) = [r for r in table if r["model"] == model and r["stage"] == stage]
    return row


def test_generation_by_hand(table):
    row = by(table, "local", "generate/multi_image")
    seconds = generation_seconds(local())
    # 2 jobs of 50 items: set-up each, then the items; the request adds the margin and rounds.
    assert row["needed_gpu_h"] == pytest.approx(2 * (6 / 60 + 50 * seconds / 3600))
    assert row["requested_gpu_h"] == pytest.approx(2 * runtime_minutes(GPU, 50, seconds) / 60)
    assert (row["engine"], row["other_engine"], row["jobs"]) == ("vllm", "transformers", 2)
    other = generation_seconds(local(), engine="transformers")
    assert row["other_needed_gpu_h"] == pytest.approx(2 * (6 / 60 + 50 * other / 3600))


def test_every_stage_of_a_local_model_and_only_gpu_jobs(table):
    stages = {(r["model"], r["stage"]) for r in table}
    assert {("local", s) for s in ("generate/multi_image", "generate/text_only", "reasoning",
                                   "entropy", "judge/hb")} <= stages
    assert not any(r["model"] == "api" and not r["stage"].startswith("judge/hb") for r in table)
    assert not any(r["stage"] == "judge/refusal" for r in table)  # CPU: no GPU-hours


def test_entropy_and_judges_have_one_engine(table):
    for stage in ("entropy", "judge/hb"):
        row = by(table, "local", stage)
        assert row["engine"] == "transformers" and row["other_engine"] == ""
        assert row["other_needed_gpu_h"] == ""
    judged = by(table, "local", "judge/hb")
    assert judged["jobs"] == 2 * 2  # every shard of every condition


def test_total_sums_the_rows_with_the_configured_engine_where_there_is_no_other(table):
    *rows, total = table
    assert total["model"] == "TOTAL"
    assert total["requested_gpu_h"] == pytest.approx(sum(r["requested_gpu_h"] for r in rows))
    assert total["other_needed_gpu_h"] == pytest.approx(sum(
        r["other_needed_gpu_h"] if r["other_engine"] else r["needed_gpu_h"] for r in rows))
    assert total["other_needed_gpu_h"] > total["needed_gpu_h"]  # transformers is slower


def test_table_is_written_and_printed(table, tmp_path):
    path = tmp_path / "gpu_hours.csv"
    write_table(table, path)
    rows = list(csv.DictReader(path.open()))
    assert rows[-1]["model"] == "TOTAL" and len(rows) == len(table)
    assert rows[0]["needed_gpu_h"] == f"{table[0]['needed_gpu_h']:.1f}"
    assert "TOTAL" in render(table).splitlines()[-1]


def test_a_gpu_model_of_unknown_size_needs_a_measured_time():
    model = local(params_b=None)
    with pytest.raises(ValueError, match="'local'.*seconds_per_item"):
        cost_table({"local": model}, {}, RUN)


def test_the_study_fits_its_budget_and_requests_within_twice_what_it_needs():
    """README: the whole study with vLLM under 200 H100-class GPU-hours requested; requests
    keep a margin over the throughput model's estimate, but less than a factor of 2."""
    study = without_excluded(validate_config(
        yaml.safe_load((REPO / "config" / "study.yaml").read_text()), SCHEMA))
    spec = yaml.safe_load((REPO / "resources" / "reasoning_spec.yaml").read_text())
    run = {"items": PUBLISHED_TOTAL, "reasoning_items": spec["items_per_task"] * len(spec["tasks"]),
           "reasoning_max_new_tokens": study["reasoning"]["max_new_tokens"],
           "entropy_models": study["entropy"]["models"]}
    total = cost_table(study["models"], study["judges"], run)[-1]
    assert total["needed_gpu_h"] < total["requested_gpu_h"] < 2 * total["needed_gpu_h"]
    assert total["requested_gpu_h"] < 200
    assert total["other_requested_gpu_h"] > 5 * total["requested_gpu_h"]
    assert load_throughput()["margin"] < 2
