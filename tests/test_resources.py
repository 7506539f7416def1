"""Job resources scale with the shard: set-up once, then seconds per item with a margin, more on
a retry; the seconds per item come from the throughput model unless measured."""

import pytest

from mirsafety.core.job_size import (
    entropy_seconds,
    generation_seconds,
    item_seconds,
    job_resources,
    judge_seconds,
    load_throughput,
    rates,
    runtime_minutes,
)
from mirsafety.core.shards import shard_size, shard_slice

RESOURCES = {"gpus": 2, "mem_mb": 64000, "setup_min": 15, "seconds_per_item": None}
TP = load_throughput()


def model(backend="vllm", family="qwen", params_b=8.0, gpus=1, max_new_tokens=4096, **extra):
    return {"backend": backend, "family": family, "params_b": params_b, "batch_size": 8,
            "decoding": {"max_new_tokens": max_new_tokens},
            "resources": {"gpus": gpus, "mem_mb": 48000, "setup_min": 10,
                          "seconds_per_item": None}, **extra}


@pytest.mark.parametrize("total", [0, 1, 7, 108, 2676])
@pytest.mark.parametrize("shards", [1, 2, 3, 4, 16])
def test_shard_size_is_the_largest_chunk_generation_runs(total, shards):
    chunks = [shard_slice(list(range(total)), k, shards) for k in range(shards)]
    assert shard_size(total, shards) == max(len(c) for c in chunks)


def test_shard_size_refuses_an_impossible_split():
    with pytest.raises(ValueError, match="0 shards"):
        shard_size(10, 0)


def test_runtime_is_setup_plus_items_with_margin_rounded_up_to_whole_minutes():
    # 669 items (2,676 / 4) x 25.6 s x 1.5 = 25,689.6 s = 428.16 min -> 429, + 15 set-up.
    assert runtime_minutes(RESOURCES, 669, 25.6, margin=1.5) == 444
    assert runtime_minutes(RESOURCES, 0, 25.6) == 15
    assert runtime_minutes({"setup_min": 0}, 1, 0.1) == 1


def test_the_default_margin_is_the_throughput_files():
    assert runtime_minutes({"setup_min": 0}, 600, 1.0) == 10 * TP["margin"]


def test_more_shards_ask_for_less_time_per_job():
    few, many = (runtime_minutes(RESOURCES, shard_size(2676, n), 25.6) for n in (4, 16))
    assert many < few


def test_a_retry_asks_for_the_runtime_times_the_attempt():
    once = runtime_minutes(RESOURCES, 669, 25.6)
    assert runtime_minutes(RESOURCES, 669, 25.6, attempt=2) == 2 * once


def test_job_resources_are_snakemake_names():
    got = job_resources(RESOURCES, 669, 25.6)
    assert got == {"gpu": 2, "mem_mb": 64000, "runtime": runtime_minutes(RESOURCES, 669, 25.6)}


def test_vllm_rates_by_hand():
    # 8B on one GPU: 50,000 / 8 prompt tokens/s, 20,000 / 8 generated tokens/s; x2 on 2 GPUs.
    assert rates("vllm", 8.0, 1, 8, TP) == (6250.0, 2500.0)
    assert rates("vllm", 8.0, 2, 8, TP) == (12500.0, 5000.0)


def test_transformers_decoding_is_batch_over_step_and_gains_nothing_from_split_gpus():
    # step = 0.03 s + 16 GB / 1,700 GB/s; 8 sequences at 50% efficiency.
    step = 0.03 + 16 / 1700
    _, decode = rates("transformers", 8.0, 1, 8, TP)
    assert decode == pytest.approx(8 * 0.5 / step)
    assert rates("transformers", 8.0, 4, 8, TP) == rates("transformers", 8.0, 1, 8, TP)


def test_generation_seconds_by_hand():
    # 400 text + 3 x 1,280 image tokens at 6,250/s, then 600 answer tokens at 2,500/s.
    assert generation_seconds(model()) == pytest.approx(4240 / 6250 + 600 / 2500)
    assert generation_seconds(model(), "text_only") == pytest.approx(400 / 6250 + 600 / 2500)


def test_thinking_models_take_longer_and_answers_are_capped_by_max_new_tokens():
    plain, thinking = generation_seconds(model()), generation_seconds(model(family="glm"))
    assert thinking > 2 * plain
    short = generation_seconds(model(max_new_tokens=24))
    assert short == pytest.approx(4240 / 6250 + 24 / 2500)


def test_reasoning_asks_for_a_letter_unless_the_model_thinks():
    letter = generation_seconds(model(), reasoning_cap=4096)
    assert letter == pytest.approx(4240 / 6250 + 16 / 2500)
    thinking = generation_seconds(model(family="glm"), reasoning_cap=1000)
    assert thinking == pytest.approx(4240 / 6250 + 1000 / 2500)


def test_vllm_is_much_faster_than_transformers_for_the_same_model():
    vllm = generation_seconds(model())
    transformers = generation_seconds(model(), engine="transformers")
    assert 5 < transformers / vllm < 30  # vLLM's own comparison: up to 24x


def test_entropy_is_one_forward_over_prompt_and_answer():
    assert entropy_seconds(model()) == pytest.approx((4240 + 600) / (0.5 * 50000 / 8.0))


def test_harmbench_judge_is_a_prefill_of_its_prompt_and_the_answer():
    judge = {"kind": "harmbench", "resources": {"gpus": 1}}
    assert judge_seconds(judge, model()) == pytest.approx((400 + 600) / (50000 / 13.0))
    assert judge_seconds({"kind": "refusal", "resources": {"gpus": 0}}, model()) is None


def test_cpu_or_unsized_models_need_a_measured_seconds_per_item():
    assert generation_seconds(model(gpus=0)) is None
    assert generation_seconds(model(params_b=None)) is None
    with pytest.raises(ValueError, match="'big'.*seconds_per_item"):
        item_seconds("big", {"gpus": 1, "seconds_per_item": None}, None)
    cpu = {"gpus": 0, "seconds_per_item": None}
    assert item_seconds("tiny", cpu, None) == TP["cpu_seconds_per_item"]
    assert item_seconds("tiny", {"gpus": 0, "seconds_per_item": 1}, None) == 1
    assert item_seconds("m", {"gpus": 1, "seconds_per_item": 3.0}, 0.5) == 3.0  # measured wins
