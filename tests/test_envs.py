"""Conda envs: each rule names one that exists, in conda's env format, pinned like requirements."""

import re

import pytest
import yaml
from conftest import REPO

ENVS = sorted((REPO / "envs").glob("*.yaml"))


def requirement_pins() -> dict:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_every_rule_names_an_existing_env():
    named = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*\n\s*"([^"]+)"', smk.read_text()):
            assert (smk.parent / env).resolve().is_file(), f"{smk.name}: {env} does not exist"
            named.add((smk.parent / env).resolve())
    assert named == {p.resolve() for p in ENVS}, "an env file is unused or a rule lacks conda:"


@pytest.mark.parametrize("path", ENVS, ids=[p.name for p in ENVS])
def test_env_is_conda_format_and_pinned_as_requirements(path):
    env = yaml.safe_load(path.read_text())
    assert set(env) <= {"name", "channels", "dependencies"}
    assert "conda-forge" in env["channels"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = requirement_pins()
    for spec in pip:
        name, version = spec.split("==")
        key = name.lower().replace("_", "-")
        assert pins.get(key) == version, f"{path.name}: {spec} disagrees with requirements.txt"
