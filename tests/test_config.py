"""The config schema: defaults filled, mistakes rejected by name."""

import pytest
import yaml
from conftest import REPO
from mirsafety.config import ConfigError, validate_config

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
