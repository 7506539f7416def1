"""What a model, judge or entropy job asks the scheduler for, scaled by the size of its shard.

A registry entry says how long the job takes to start (``setup_min``: scheduling, loading the
weights) and how long one item takes on the requested hardware (``seconds_per_item``). A shard's
wall-time request is then ``setup_min + items × seconds_per_item``, so a model split into more
shards asks for less time per job, and a job that ran out of time asks for more on its retry.
"""

import math

MUIRBENCH_ITEMS = 2600  # MuirBench's test split (Wang et al., 2024)


def runtime_minutes(resources: dict, items: int, attempt: int = 1) -> int:
    """Wall-time to request, in minutes: set-up plus items, times the attempt number."""
    minutes = resources["setup_min"] + math.ceil(items * resources["seconds_per_item"] / 60)
    return max(1, minutes) * attempt


def job_resources(resources: dict, items: int, attempt: int = 1) -> dict:
    """The Snakemake resources of one job: GPUs, memory and the scaled runtime."""
    return {
        "gpu": resources["gpus"],
        "mem_mb": resources["mem_mb"],
        "runtime": runtime_minutes(resources, items, attempt),
    }
