"""GPU-hours of a whole run, per model and stage, before anything is submitted.

Two figures per (model, stage): what the work needs by the throughput model (items x seconds
per item x GPUs, plus each job's set-up), and what the jobs request from the scheduler (the
runtime request of ``job_size``, margin and rounding included, on a first attempt). Generation
and reasoning are priced with the model's configured engine and with the other one (vllm <->
transformers); entropy and judging always run transformers. API and CPU jobs cost no GPU-hours.
"""

import csv
import math

from mirsafety.core.job_size import (
    entropy_seconds,
    generation_seconds,
    item_seconds,
    judge_seconds,
    runtime_minutes,
)
from mirsafety.core.shards import shard_size

OTHER_ENGINE = {"vllm": "transformers", "transformers": "vllm"}
COLUMNS = ["model", "stage", "jobs", "gpus", "engine", "needed_gpu_h", "requested_gpu_h",
           "other_engine", "other_needed_gpu_h", "other_requested_gpu_h"]


def gpu_hours(name: str, resources: dict, items: int, jobs: int, derived) -> tuple:
    """(needed, requested) GPU-hours of ``jobs`` jobs of ``items`` items each."""
    gpus = resources["gpus"]
    if not gpus:
        return 0.0, 0.0
    seconds = item_seconds(name, resources, derived)
    needed = jobs * gpus * (resources["setup_min"] / 60 + items * seconds / 3600)
    requested = jobs * gpus * runtime_minutes(resources, items, seconds) / 60
    return needed, requested


def _row(model, stage, jobs, resources, engine, priced: dict) -> dict:
    """A table row; the other engine's cells are empty where the stage has only one engine."""
    other = OTHER_ENGINE.get(engine) if OTHER_ENGINE.get(engine) in priced else ""
    row = {"model": model, "stage": stage, "jobs": jobs, "gpus": resources["gpus"],
           "engine": engine, "other_engine": other}
    for prefix, key in (("", engine), ("other_", other)):
        needed, requested = priced.get(key, ("", ""))
        row[f"{prefix}needed_gpu_h"], row[f"{prefix}requested_gpu_h"] = needed, requested
    return row


def model_rows(name: str, model: dict, run: dict) -> list[dict]:
    """Generation (every condition), reasoning and entropy of one model."""
    res, shards = model["resources"], model["shards"]
    items = shard_size(run["items"], shards)
    engine = model["backend"]
    engines = [engine, OTHER_ENGINE[engine]] if engine in OTHER_ENGINE else [engine]
    rows = []
    for condition in model["conditions"]:
        priced = {e: gpu_hours(name, res, items, shards, generation_seconds(model, condition, e))
                  for e in engines}
        rows.append(_row(name, f"generate/{condition}", shards, res, engine, priced))
    if engine != "mir_import":
        cap = run["reasoning_max_new_tokens"]
        priced = {e: gpu_hours(name, res, run["reasoning_items"], 1,
                               generation_seconds(model, engine=e, reasoning_cap=cap))
                  for e in engines}
        rows.append(_row(name, "reasoning", 1, res, engine, priced))
    if name in run["entropy_models"]:
        priced = {"transformers": gpu_hours(name, res, items, shards, entropy_seconds(model))}
        rows.append(_row(name, "entropy", shards, res, "transformers", priced))
    return rows


def judge_rows(name: str, judge: dict, models: dict, run: dict) -> list[dict]:
    """One row per judged model: every shard of every condition it was generated under."""
    rows = []
    for model_name, model in models.items():
        jobs = model["shards"] * len(model["conditions"])
        items = shard_size(run["items"], model["shards"])
        priced = {"transformers": gpu_hours(name, judge["resources"], items, jobs,
                                            judge_seconds(judge, model))}
        rows.append(_row(model_name, f"judge/{name}", jobs, judge["resources"], "transformers",
                         priced))
    return rows


def cost_table(models: dict, judges: dict, run: dict) -> list[dict]:
    """Every (model, stage) row, then a total row. ``run``: items (instances), reasoning_items,
    reasoning_max_new_tokens, entropy_models."""
    rows = [row for name, model in models.items() for row in model_rows(name, model, run)]
    rows += [row for name, judge in judges.items() for row in judge_rows(name, judge, models, run)]
    rows = [row for row in rows if row["gpus"]]
    total = {"model": "TOTAL", "stage": "all", "jobs": sum(r["jobs"] for r in rows), "gpus": "",
             "engine": "configured", "other_engine": "other where it exists"}
    for key in ("needed_gpu_h", "requested_gpu_h"):
        total[key] = sum(r[key] for r in rows)
        total[f"other_{key}"] = sum(r[f"other_{key}"] if r["other_engine"] else r[key]
                                    for r in rows)
    return [*rows, total]


def write_table(rows: list[dict], path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _fmt(v) for k, v in row.items()} for row in rows)


def _fmt(value):
    return f"{value:.1f}" if isinstance(value, float) and math.isfinite(value) else value


def render(rows: list[dict]) -> str:
    """The table as aligned text, for the log and the console."""
    cells = [COLUMNS] + [[str(_fmt(row[c])) for c in COLUMNS] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells)
