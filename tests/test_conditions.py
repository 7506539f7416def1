"""Conditions against the multi-image baseline: paired statistics by hand."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.stats import binomtest

from mirsafety.analysis.conditions import (
    by_condition,
    compare_pairs,
    paired_bootstrap,
    paired_table,
)
from mirsafety.models.requests import make_request


def test_mcnemar_and_difference_by_hand():
    baseline = [1, 1, 1, 1, 0, 0, 0, 1]
    other = [1, 0, 0, 0, 0, 0, 1, 0]
    row = compare_pairs(baseline, other)
    assert row["n_pairs"] == 8
    assert row["asr_baseline"] == 5 / 8 and row["asr_condition"] == 2 / 8
    assert row["diff"] == pytest.approx(-3 / 8)
    assert (row["only_baseline_unsafe"], row["only_condition_unsafe"]) == (4, 1)
    # exact McNemar = two-sided binomial test on the discordant pairs
    assert row["mcnemar_p"] == pytest.approx(binomtest(1, 5, 0.5).pvalue)
    assert row["diff_ci_low"] <= row["diff"] <= row["diff_ci_high"]


def test_paired_bootstrap_is_deterministic_and_zero_for_identical_vectors():
    assert paired_bootstrap([1, 0, 1], [1, 0, 1]) == (0.0, 0.0)
    assert paired_bootstrap([1, 0, 1, 0], [0, 0, 1, 1], seed=2) == \
        paired_bootstrap([1, 0, 1, 0], [0, 0, 1, 1], seed=2)


def frame():
    rows = []
    labels = {"multi_image": ["unsafe", "unsafe", "safe", "unsafe"],
              "single_image": ["safe", "unsafe", "safe", "error"]}
    for condition, values in labels.items():
        for k, label in enumerate(values):
            rows.append({"model": "m", "uid": f"u{k}", "condition": condition, "label": label,
                         "relation": "Analogy" if k < 2 else "Causality", "category": "Violence",
                         "seed": f"s{k}"})
    return pd.DataFrame(rows)


def test_pairs_exclude_errors_on_either_side():
    table = paired_table(frame()).set_index("relation")
    overall = table.loc["ALL"]
    assert overall["n_pairs"] == 3  # u3 is an error under single_image
    assert overall["asr_baseline"] == pytest.approx(2 / 3)
    assert overall["asr_condition"] == pytest.approx(1 / 3)
    assert table.loc["Causality", "n_pairs"] == 1


def test_by_condition_counts_errors_beside_each_cell():
    table = by_condition(frame())
    single = table[(table["condition"] == "single_image") & (table["relation"] == "ALL")].iloc[0]
    assert (single["n_unsafe"], single["n_safe"], single["n_error"]) == (1, 2, 1)


def test_requests_per_condition(tmp_path):
    for k in range(2):
        Image.new("RGB", (20, 10), "red").save(tmp_path / f"{k}.png")
    instance = {"uid": "u", "original_question": "seed q", "revised_prompt": "rewritten p",
                "images": ["0.png", "1.png"]}
    model = {"image_pixels": {"min": None, "max": None}, "single_image": False,
             "system_prompt": None}
    multi = make_request(instance, tmp_path, model, "multi_image")
    single = make_request(instance, tmp_path, model, "single_image")
    text = make_request(instance, tmp_path, model, "text_only")
    prompt = make_request(instance, tmp_path, model, "prompt_only")
    assert len(multi.images) == 2 and multi.prompt == "rewritten p"
    assert len(single.images) == 1 and single.images[0].size == (20 + 50 + 20, 10)
    assert (text.prompt, text.images) == ("seed q", [])
    assert (prompt.prompt, prompt.images) == ("rewritten p", [])
    assert np.array(single.images[0])[5, 25].tolist() == [255, 255, 255]  # the white gap
