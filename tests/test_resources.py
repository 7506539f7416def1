"""Job resources scale with the shard: set-up once, then seconds per item, more on a retry."""

import pytest

from mirsafety.core.job_size import job_resources, runtime_minutes
from mirsafety.core.shards import shard_size, shard_slice

RESOURCES = {"gpus": 2, "mem_mb": 64000, "setup_min": 15, "seconds_per_item": 25.6}


@pytest.mark.parametrize("total", [0, 1, 7, 108, 2676])
@pytest.mark.parametrize("shards", [1, 2, 3, 4, 16])
def test_shard_size_is_the_largest_chunk_generation_runs(total, shards):
    chunks = [shard_slice(list(range(total)), k, shards) for k in range(shards)]
    assert shard_size(total, shards) == max(len(c) for c in chunks)


def test_shard_size_refuses_an_impossible_split():
    with pytest.raises(ValueError, match="0 shards"):
        shard_size(10, 0)


def test_runtime_is_setup_plus_items_rounded_up_to_whole_minutes():
    # 669 items (2,676 / 4) x 25.6 s = 17,126.4 s = 285.44 min -> 286, + 15 set-up.
    assert runtime_minutes(RESOURCES, 669) == 301
    assert runtime_minutes(RESOURCES, 0) == 15
    assert runtime_minutes({"setup_min": 0, "seconds_per_item": 0.1}, 1) == 1


def test_more_shards_ask_for_less_time_per_job():
    few, many = (runtime_minutes(RESOURCES, shard_size(2676, n)) for n in (4, 16))
    assert many < few


def test_a_retry_asks_for_the_runtime_times_the_attempt():
    assert runtime_minutes(RESOURCES, 669, attempt=2) == 2 * 301


def test_job_resources_are_snakemake_names():
    assert job_resources(RESOURCES, 669) == {"gpu": 2, "mem_mb": 64000, "runtime": 301}
