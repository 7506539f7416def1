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
