"""What a model, judge or entropy job asks the scheduler for, scaled by the size of its shard.

A job's wall time is ``setup_min`` (scheduling, loading the weights) plus its items times the
seconds one item takes, with a safety margin, doubled on a retry. The seconds per item come from
a throughput model (``resources/throughput.yaml``): the tokens an item costs (prompt with its
images, the answer expected of the model's family, longer for thinking models) over the tokens
per second of the engine for a model of that size on the requested GPUs. A registry entry's
``resources.seconds_per_item`` (a measured shard, a CPU or API job) overrides the derived figure.
"""

import functools
import math
from pathlib import Path

import yaml

MUIRBENCH_ITEMS = 2600  # MuirBench's test split (Wang et al., 2024)
THROUGHPUT = Path(__file__).resolve().parents[4] / "resources" / "throughput.yaml"
IMAGELESS = ("text_only",)  # conditions whose prompt carries no image


@functools.cache
def load_throughput(path: str = str(THROUGHPUT)) -> dict:
    return yaml.safe_load(Path(path).read_text())


def answer_tokens(model: dict, tp: dict, reasoning_cap: int | None = None) -> int:
    """Tokens a model is expected to generate per item, capped by its max_new_tokens: its
    family's answer (thinking families longer); on the reasoning set a letter, unless it thinks."""
    tokens = tp["tokens"]
    thinking = model.get("family") in tp["thinking_families"]
    expected = tokens["thinking_answer"] if thinking else tokens["answer"]
    if reasoning_cap is not None:
        return min(expected if thinking else tokens["reasoning_answer"], reasoning_cap)
    cap = model["decoding"]["max_new_tokens"]
    return min(expected, cap) if cap else expected


def prompt_tokens(tp: dict, condition: str = "multi_image") -> int:
    tokens = tp["tokens"]
    images = 0 if condition in IMAGELESS else tokens["images_per_item"] * tokens["image_tokens"]
    return tokens["prompt_text"] + images


def rates(engine: str, params_b: float, gpus: int, batch_size: int, tp: dict) -> tuple:
    """(prompt tokens/s, generated tokens/s) of one job. vLLM splits a model by tensor
    parallelism, so its GPUs add up; transformers' device_map runs them one after another."""
    spec = tp["engines"][engine]
    if engine == "vllm":
        return (gpus * spec["prefill_per_gpu_b"] / params_b,
                gpus * spec["decode_per_gpu_b"] / params_b)
    step = spec["step_overhead_s"] + 2 * params_b / spec["bandwidth_gb_s"]
    return spec["prefill_per_gpu_b"] / params_b, batch_size * spec["batch_efficiency"] / step


def _derivable(entry: dict, params_b) -> bool:
    return bool(entry["resources"]["gpus"]) and bool(params_b)


def generation_seconds(model: dict, condition: str = "multi_image", engine: str | None = None,
                       reasoning_cap: int | None = None, tp: dict | None = None) -> float | None:
    """Seconds per generated item with ``engine`` (default: the model's backend); None when the
    model runs on no GPU or its size is unknown (then seconds_per_item must be set)."""
    tp = tp or load_throughput()
    if not _derivable(model, model.get("params_b")):
        return None
    prefill, decode = rates(engine or model["backend"], model["params_b"],
                            model["resources"]["gpus"], model["batch_size"], tp)
    return (prompt_tokens(tp, condition) / prefill
            + answer_tokens(model, tp, reasoning_cap) / decode)


def entropy_seconds(model: dict, tp: dict | None = None) -> float | None:
    """Seconds per answer of the entropy pass: one transformers forward over prompt and answer."""
    tp = tp or load_throughput()
    if not _derivable(model, model.get("params_b")):
        return None
    spec = tp["engines"]["transformers"]
    prefill = spec["entropy_prefill_factor"] * spec["prefill_per_gpu_b"] / model["params_b"]
    return (prompt_tokens(tp) + answer_tokens(model, tp)) / prefill


def judge_seconds(judge: dict, model: dict, tp: dict | None = None) -> float | None:
    """Seconds per verdict of a classifier judge on GPU: a prefill of its prompt and the answer."""
    tp = tp or load_throughput()
    if judge["kind"] != "harmbench" or not _derivable(judge, tp["judge_params_b"]):
        return None
    prefill, _ = rates("transformers", tp["judge_params_b"], judge["resources"]["gpus"], 1, tp)
    return (tp["tokens"]["judge_prompt"] + answer_tokens(model, tp)) / prefill


def item_seconds(name: str, resources: dict, derived: float | None) -> float:
    """The entry's measured seconds_per_item if set, else the throughput model's figure; a CPU
    or API job without either gets the throughput file's cpu_seconds_per_item."""
    seconds = resources.get("seconds_per_item") or derived
    if seconds is None and not resources["gpus"]:
        seconds = load_throughput()["cpu_seconds_per_item"]
    if seconds is None:
        raise ValueError(
            f"'{name}': no GPU or no params_b, so its time per item cannot be derived from "
            "resources/throughput.yaml; set resources.seconds_per_item (or gpus and params_b)"
        )
    return seconds


def runtime_minutes(resources: dict, items: int, seconds: float, attempt: int = 1,
                    margin: float | None = None) -> int:
    """Wall-time to request, in minutes: set-up plus items with the margin, times the attempt."""
    margin = load_throughput()["margin"] if margin is None else margin
    minutes = resources["setup_min"] + math.ceil(items * seconds * margin / 60)
    return max(1, minutes) * attempt


def job_resources(resources: dict, items: int, seconds: float, attempt: int = 1) -> dict:
    """The Snakemake resources of one job: GPUs, memory and the scaled runtime."""
    return {
        "gpu": resources["gpus"],
        "mem_mb": resources["mem_mb"],
        "runtime": runtime_minutes(resources, items, seconds, attempt),
    }
