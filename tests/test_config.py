"""The config schema: defaults filled, mistakes rejected by name."""

import pytest
import yaml

from mirsafety.core.config import ConfigError, validate_config, without_excluded

from conftest import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def test_empty_config_gets_every_default():
    config = validate_config({}, SCHEMA)
    assert config["dataset"]["name"] == "sample"
    assert config["dataset"]["repo_id"] == "thu-coai/MIR-SafetyBench"
    assert config["dataset"]["local_path"] is None
    assert config["dataset"]["check_published_counts"] is True
    assert config["sample"]["spec"] == "resources/sample_spec.yaml"


def test_partial_section_keeps_user_values_and_fills_the_rest():
    config = validate_config({"dataset": {"name": "mir", "revision": "abc"}}, SCHEMA)
    assert config["dataset"]["name"] == "mir"
    assert config["dataset"]["revision"] == "abc"
    assert config["dataset"]["split"] == "train"


def test_input_is_not_modified():
    user = {"dataset": {"name": "mir"}}
    validate_config(user, SCHEMA)
    assert user == {"dataset": {"name": "mir"}}


def test_shipped_config_is_valid_and_runs_the_sample():
    config = validate_config(yaml.safe_load((REPO / "config.yaml").read_text()), SCHEMA)
    assert config["dataset"]["name"] == "sample"


@pytest.mark.parametrize(
    "config, key",
    [({"datset": {}}, "'datset'"), ({"dataset": {"locl_path": "/x"}}, "'dataset.locl_path'")],
)
def test_unknown_key_is_named(config, key):
    with pytest.raises(ConfigError) as error:
        validate_config(config, SCHEMA)
    assert f"unknown config key {key}" in str(error.value)
    assert "Fix: remove or rename it" in str(error.value)


def test_wrong_values_are_named_together():
    with pytest.raises(ConfigError) as error:
        validate_config({"dataset": {"name": "full", "max_image_pixels": 0}}, SCHEMA)
    message = str(error.value)
    assert "'dataset.name'" in message and "'full' is not one of" in message
    assert "'dataset.max_image_pixels'" in message


def model_config(**entry):
    return {"models": {"m": {"backend": "transformers", "weights": {"tiny": "t"}, **entry}}}


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"models": {"m": {"backend": "transformers"}}}, "'weights' is a required property"),
        (model_config(weights={"tiny": "t", "hub_id": "org/x"}), "matches none of its allowed forms"),
        ({"models": {"m": {"backend": "openai"}}}, "'api' is a required property"),
        (model_config(backend="onnx"), "'onnx' is not one of"),
        (model_config(decoding={"temprature": 0.7}), "unknown config key 'models.m.decoding.temprature'"),
        (model_config(shards=0), "'models.m.shards': 0 is less than the minimum of 1"),
        ({"models": {"bad name": {"backend": "openai"}}}, "'bad name' does not match"),
    ],
)
def test_bad_model_entry_is_named(config, expected):
    with pytest.raises(ConfigError) as error:
        validate_config(config, SCHEMA)
    assert expected in str(error.value)


def test_model_defaults_are_filled():
    model = validate_config(model_config(), SCHEMA)["models"]["m"]
    assert model["decoding"] == {"do_sample": False, "temperature": None, "top_p": None, "top_k": None,
                                 "repetition_penalty": None, "max_new_tokens": 1024, "seed": 0}
    assert model["single_image"] is False and model["thinking"] == "auto"
    assert model["resources"] == {"gpus": 0, "threads": 2, "mem_mb": 4000, "setup_min": 10,
                                  "seconds_per_item": None}


def test_study_config_registers_19_real_models():
    config = validate_config(yaml.safe_load((REPO / "config" / "study.yaml").read_text()), SCHEMA)
    models = config["models"]
    assert len(models) == 19
    assert config["dataset"]["name"] == "mir"
    for name, model in models.items():
        if model["backend"] == "openai":
            assert model["api"]["api_key_env"], name
        else:
            assert "hub_id" in model["weights"] and model["resources"]["gpus"] >= 1, name
            assert model["params_b"] and model["family"], name
        if model["decoding"]["do_sample"]:
            assert model["decoding"]["seed"] is not None, name
    assert models["Llama-3.2-11B-Vision"]["single_image"] is True
    assert models["Qwen2.5-VL-7B"]["decoding"]["repetition_penalty"] == 1.05
    assert models["Qwen2.5-VL-7B"]["image_pixels"] == {"min": 224 * 224, "max": 1280 * 28 * 28}


def test_excluded_models_leave_the_registry_and_typos_are_named():
    config = validate_config({"models": {"a": {"backend": "transformers", "weights": {"tiny": "t"}},
                                         "b": {"backend": "transformers", "weights": {"tiny": "t"}}},
                              "analysis": {"exclude_models": {"b": "needs remote code"}}}, SCHEMA)
    assert list(without_excluded(config)["models"]) == ["a"]
    config["analysis"]["exclude_models"] = {"c": "typo"}
    with pytest.raises(ConfigError, match="unregistered model.*c"):
        without_excluded(config)
