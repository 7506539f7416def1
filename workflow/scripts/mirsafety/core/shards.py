"""Shards: contiguous chunks of the instance list, one job each, named ``III-of-NNN``.

Generation, judging and entropy all split a model's work the same way, and the workflow names
the jobs before any of them runs, so the naming and the split live in one place.
"""

import math
import re

SHARD_NAME = re.compile(r"^(\d{3})-of-(\d{3})$")


def shard_name(index: int, count: int) -> str:
    return f"{index:03d}-of-{count:03d}"


def parse_shard(name: str) -> tuple[int, int]:
    match = SHARD_NAME.match(name)
    if not match or int(match[1]) >= int(match[2]):
        raise ValueError(f"shard '{name}' is not of the form III-of-NNN with III < NNN")
    return int(match[1]), int(match[2])


def shard_slice(items: list, index: int, count: int) -> list:
    """Contiguous chunk ``index`` of ``count`` near-equal chunks (sizes differ by at most one)."""
    return items[len(items) * index // count: len(items) * (index + 1) // count]


def shard_size(total: int, shards: int) -> int:
    """Items in the largest of ``shards`` near-equal contiguous chunks (``shard_slice``)."""
    if total < 0 or shards < 1:
        raise ValueError(f"cannot split {total} items into {shards} shards")
    return math.ceil(total / shards)
