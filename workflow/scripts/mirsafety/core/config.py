"""Config validation: fill defaults from the JSON schema and reject mistakes by name.

Snakemake's own ``validate`` stops at jsonschema's generic messages; a researcher who mistypes a
key deserves to be told which key, where it sits and what is allowed there.
"""

import copy
from pathlib import Path

import jsonschema
import yaml


class ConfigError(ValueError):
    """The config does not match the schema; the message lists every problem."""


def _with_defaults(validator_class):
    """A validator class that writes each property's ``default`` into the instance as it goes.

    Parents carry ``default: {}`` so that nested defaults are filled even when a whole section is
    missing from the user's config.
    """
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if validator.is_type(instance, "object"):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _describe(error) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        keys = ", ".join(f"'{'.'.join([*map(str, error.absolute_path), k])}'" for k in unknown)
        return (
            f"unknown config key {keys}; allowed at {where}: {', '.join(allowed)}. "
            "Fix: remove or rename it."
        )
    if error.validator == "oneOf" and "description" in error.schema:
        return f"config key '{where}' matches none of its allowed forms: {error.schema['description']}"
    return f"config key '{where}': {error.message}"


def validate_config(config: dict, schema_path) -> dict:
    """Return a validated copy of ``config`` with every default filled in.

    Raises ConfigError naming each offending key and the schema file that documents it.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator_class = _with_defaults(jsonschema.validators.validator_for(schema))
    filled = copy.deepcopy(config) if config else {}
    errors = sorted(validator_class(schema).iter_errors(filled), key=lambda e: list(e.path))
    if errors:
        problems = "\n".join(f"  - {_describe(e)}" for e in errors)
        raise ConfigError(f"invalid config (schema: {schema_path}):\n{problems}")
    return filled


def without_excluded(config: dict) -> dict:
    """The validated config with ``analysis.exclude_models`` taken out of the model registry.

    Every excluded name must be registered (a typo would otherwise exclude nothing, silently).
    """
    excluded = config["analysis"]["exclude_models"]
    unknown = sorted(set(excluded) - set(config["models"]))
    if unknown:
        raise ConfigError(f"analysis.exclude_models names unregistered model(s): "
                          f"{', '.join(unknown)}. Fix: use the names under models.")
    models = {name: spec for name, spec in config["models"].items() if name not in excluded}
    return {**config, "models": models}


#: Why a model of each backend gets no entropy pass unless entropy.models names it.
_NO_ENTROPY = {
    "openai": "an API model: its attention cannot be read",
    "vllm": "generated with vLLM, whose engine does not expose attention, and not loadable "
            "through transformers for the teacher-forced pass",
    "mir_import": "answers imported from the authors' results, with no local weights registered",
}


def without_entropy(models: dict, measured: list[str]) -> dict[str, str]:
    """The registered models outside ``measured`` (the entropy pass's models), each with why:
    the paper says which models the entropy comparison leaves out."""
    return {name: _NO_ENTROPY.get(spec["backend"], "left out by entropy.models")
            for name, spec in models.items() if name not in measured}
