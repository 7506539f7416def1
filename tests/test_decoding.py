"""Decoding as the registry says it, every value explicit, for each backend.

A value the registry leaves unset must mean "off" (no top-k filter, no repetition penalty), not
whatever default the checkpoint's generation_config.json or the serving library carries, and an
API request must carry only what the registry sets (the authors sent model and messages only).
"""

import pytest
import yaml

from mirsafety.core.config import validate_config
from mirsafety.models.hf import TransformersBackend
from mirsafety.models.openai_api import OpenAIBackend
from mirsafety.models.vllm_backend import sampling_params

from conftest import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
STUDY = validate_config(yaml.safe_load((REPO / "config" / "study.yaml").read_text()), SCHEMA)


def hf_kwargs(decoding: dict) -> dict:
    backend = object.__new__(TransformersBackend)  # the mapping needs no model
    backend.decoding = decoding
    return backend._generation_kwargs()


@pytest.mark.parametrize("name", sorted(STUDY["models"]))
def test_every_study_decoding_maps_onto_each_backend(name):
    decoding = STUDY["models"][name]["decoding"]
    backend = STUDY["models"][name]["backend"]
    if backend == "openai":
        api = OpenAIBackend(**{**STUDY["models"][name]["api"], "api_key_env": None},
                            max_tokens=decoding["max_new_tokens"], seed=decoding["seed"],
                            temperature=decoding["temperature"], top_p=decoding["top_p"])
        assert api.generation_config() == {}  # model and messages only, as the authors sent
        return
    vllm = sampling_params(decoding)  # either engine must mean the same decoding
    assert vllm["max_tokens"] == decoding["max_new_tokens"]
    hf = hf_kwargs(decoding)
    if decoding["do_sample"]:
        assert hf["top_k"] == vllm["top_k"] == 0  # unset: no top-k filter in either
        assert hf["temperature"] == vllm["temperature"] == decoding["temperature"]
        assert hf["top_p"] == vllm["top_p"] == decoding["top_p"]
    else:
        assert vllm["temperature"] == 0.0 and hf["do_sample"] is False
    assert hf["repetition_penalty"] == vllm["repetition_penalty"] == (
        decoding["repetition_penalty"] or 1.0)


def test_a_set_top_k_reaches_both_local_backends():
    decoding = {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20,
                "repetition_penalty": None, "max_new_tokens": 16, "seed": 3}
    assert hf_kwargs(decoding)["top_k"] == 20 and sampling_params(decoding)["top_k"] == 20
