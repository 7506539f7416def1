"""Conda envs (``envs/*.yaml``): conda's format, requirements.txt's pins, what the rules import.

Conda channels cannot be reached from these machines, so nothing here creates an env: CI
installs the pip path (requirements.txt). These checks keep the env files correct anyway:

* format: each file is YAML without repeated keys and valid against a JSON schema of conda's
  environment.yml (``envcheck.ENV_SCHEMA``: name, channels, dependencies, variables, prefix;
  conda match specs and one ``pip:`` list); channels are conda-forge and nodefaults; every pip
  entry is pinned ``name==version``.
* pins: every pip entry, and every conda entry requirements.txt also pins (``pytorch`` is
  torch), has requirements.txt's version. An env is a subset of requirements.txt, not equal.
  ``envcheck.ENV_PINS`` are an env's own pins where its engine forbids requirements.txt's
  (vllm.yaml: vLLM's torch, torchvision, transformers and numpy).
* rules: every rule names an existing env and script; every env is used.
* imports: what a rule's script can import (``envcheck.ImportScan``: the script and the
  mirsafety code it reaches, imports inside reachable functions included), less the standard
  library, mirsafety and snakemake (injected by the script directive), mapped to distributions
  with ``importlib.metadata.packages_distributions()`` (PIL -> pillow), must be in its env.
  ``envcheck.ENGINE_IMPORTS`` names the modules only one engine's env carries (vllm: the
  generate rules pick envs/vllm.yaml per model with a function for ``conda:``, and such a rule is
  checked once per env it can get).
* exactly that: an env's Python packages are what its rules import plus the pinned
  ``envcheck.COMPANIONS`` of those (tokenizers, safetensors and huggingface_hub next to
  transformers: direct requirements whose versions matter, pinned so the env matches the pip
  path); an extra package fails, and so does a missing companion. Other transitive
  requirements (numpy for torch, ...) are left to the solver.
* GPU: envs whose rules import torch take PyPI's CUDA wheel of torch at requirements.txt's pin,
  plus what transformers needs at run time there (``envcheck.GPU_RUNTIME_PINS``: torchvision),
  which no rule imports and requirements.txt (CPU) cannot carry.
* paper: its env carries texlive-core and latexmk, and the paper rule does run latexmk.

The negative tests run the same checks on synthetic files, to show each can fail.
"""

import ast
import re
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

import envcheck
from conftest import REPO

ENVS = sorted((REPO / "envs").glob("*.yaml"))
RULES = envcheck.parse_rules(REPO / "workflow" / "rules")
PACKAGE_DIR = REPO / "workflow" / "scripts" / envcheck.PACKAGE
SCAN = envcheck.ImportScan(PACKAGE_DIR)
PINS = envcheck.requirement_pins(REPO / "requirements.txt")
VALIDATOR = jsonschema.Draft202012Validator(envcheck.ENV_SCHEMA)


def rules_of(env_path: Path) -> list:
    return [rule for rule in RULES if rule.env == env_path.resolve()]


def conda_entries(env: dict) -> dict:
    """{conda name: (version, build)} of an env's conda match specs."""
    entries = {}
    for item in env["dependencies"]:
        if isinstance(item, str):
            name, version, build = envcheck.conda_spec(item)
            entries[name] = (version, build)
    return entries


def pip_entries(env: dict) -> list[str]:
    return next((d["pip"] for d in env["dependencies"] if isinstance(d, dict)), [])


def test_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(envcheck.ENV_SCHEMA)


def test_requirements_are_pinned():
    assert PINS, "requirements.txt pins nothing"


def test_rules_are_parsed():
    texts = [smk.read_text() for smk in (REPO / "workflow" / "rules").glob("*.smk")]
    declared = sum(
        len(re.findall(r"^(?:rule|checkpoint)\s+\w+\s*:", t, re.MULTILINE))
        for t in texts
    )
    assert len({(rule.smk, rule.name) for rule in RULES}) == declared > 0


def test_generate_rules_get_the_env_of_the_models_engine():
    envs = {(rule.name, rule.env.name) for rule in RULES}
    for name in ("generate", "reasoning_generate"):
        assert {(name, "generate.yaml"), (name, "vllm.yaml")} <= envs


def test_every_rule_names_an_existing_env_and_script():
    for rule in RULES:
        assert rule.env is not None, f"rule {rule.name} ({rule.smk.name}) lacks conda:"
        assert rule.env.is_file(), f"rule {rule.name}: {rule.env} does not exist"
        assert rule.script is not None, (
            f"rule {rule.name} ({rule.smk.name}) lacks script:"
        )
        assert rule.script.is_file(), f"rule {rule.name}: {rule.script} does not exist"
    named = {rule.env for rule in RULES}
    assert named == {p.resolve() for p in ENVS}, (
        "an env file is unused or a rule lacks conda:"
    )


@pytest.mark.parametrize("path", ENVS, ids=[p.name for p in ENVS])
def test_env_is_valid_conda_env_yaml(path):
    env = envcheck.load_env(path)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in VALIDATOR.iter_errors(env)
    ]
    assert not errors, f"{path.name} is not a conda env file: {errors}"
    assert env["channels"] == ["conda-forge", "nodefaults"], path.name
    conda = conda_entries(env)
    assert conda.get("python", (None,))[0], f"{path.name}: python is not pinned"
    if pip_entries(env):
        assert "pip" in conda, (
            f"{path.name}: a pip: section needs pip among the dependencies"
        )
    unpinned = [s for s in pip_entries(env) if not envcheck.PIP_PINNED.match(s)]
    assert not unpinned, (
        f"{path.name}: pip entries not pinned as name==version: {unpinned}"
    )


def test_envs_pin_one_python():
    pythons = {
        path.name: conda_entries(envcheck.load_env(path))["python"] for path in ENVS
    }
    assert len(set(pythons.values())) == 1, pythons


@pytest.mark.parametrize("path", ENVS, ids=[p.name for p in ENVS])
def test_env_pins_agree_with_requirements(path):
    own = envcheck.ENV_PINS.get(path.name)
    problems = envcheck.pin_problems(envcheck.load_env(path), PINS, own)
    assert not problems, f"{path.name}: " + "; ".join(problems)


@pytest.mark.parametrize("rule", RULES, ids=[f"{r.name}-{r.env.name}" for r in RULES])
def test_rule_env_has_what_its_script_imports(rule):
    problems = envcheck.missing_imports(rule, envcheck.load_env(rule.env), SCAN, REPO)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", ENVS, ids=[p.name for p in ENVS])
def test_env_has_only_what_its_rules_import(path):
    problems = envcheck.exactness_problems(
        path, envcheck.load_env(path), rules_of(path), SCAN
    )
    assert not problems, "\n".join(problems)


def test_companions_are_requirements_of_their_distribution():
    for dist, companions in envcheck.COMPANIONS.items():
        assert companions <= envcheck.direct_requirements(dist), dist
        assert companions <= set(PINS), (
            f"companions of {dist} must be pinned in requirements"
        )


def test_engine_imports_are_imported_and_only_in_their_env():
    imported = set()
    for rule in RULES:
        imported |= set(SCAN.scan(rule.script))
    for module, env_name in envcheck.ENGINE_IMPORTS.items():
        assert module in imported, f"{module} is an engine import but no rule imports it any more"
        for path in ENVS:
            names = {d.name for d in envcheck.env_dependencies(envcheck.load_env(path))}
            carries = bool(envcheck.distributions(module) & names)
            assert carries == (path.name == env_name), f"{path.name} and {module}"


def test_env_pins_name_existing_envs_and_differ_from_requirements():
    for env_name, pins in envcheck.ENV_PINS.items():
        assert (REPO / "envs" / env_name).is_file(), env_name
        for name, version in pins.items():
            assert PINS.get(name, envcheck.GPU_RUNTIME_PINS.get(name)) != version, (
                f"{env_name}: {name}=={version} is requirements.txt's pin; drop it from ENV_PINS")


def test_package_imports_nothing_by_computed_name():
    """ImportScan follows import statements; importlib or __import__ would escape it."""
    assert not envcheck.dynamic_imports(PACKAGE_DIR)


def test_gpu_envs_take_pypis_cuda_torch_and_torchvision():
    """PyPI's Linux torch wheel is the CUDA build: pinned by pip at requirements.txt's version,
    with the torchvision made for it, the env resolves on any Linux node, GPU or not."""
    gpu = {
        rule.env
        for rule in RULES
        if "torch" in envcheck.third_party(SCAN.scan(rule.script))
    }
    assert {p.name for p in gpu} == {"generate.yaml", "judge.yaml", "entropy.yaml", "vllm.yaml"}
    for path in gpu:
        env = envcheck.load_env(path)
        assert "pytorch" not in conda_entries(env) and "cuda-version" not in conda_entries(env)
        pins = set(pip_entries(env))
        want = {"torch": PINS["torch"], **envcheck.GPU_RUNTIME_PINS,
                **envcheck.ENV_PINS.get(path.name, {})}
        assert f"torch=={want['torch']}" in pins, path.name
        assert {f"{n}=={want[n]}" for n in envcheck.GPU_RUNTIME_PINS} <= pins, path.name


def test_gpu_runtime_pins_are_what_transformers_imports():
    import transformers

    video = (Path(transformers.__file__).parent / "video_processing_utils.py").read_text()
    for name in envcheck.GPU_RUNTIME_PINS:
        assert f"import {name}" in video or f"from {name}" in video, name


def test_paper_env_has_tex_and_the_paper_rule_runs_latexmk():
    env = envcheck.load_env(REPO / "envs" / "paper.yaml")
    assert {"texlive-core", "latexmk"} <= set(conda_entries(env))
    (paper,) = [rule for rule in RULES if rule.name == "paper"]
    assert paper.env.name == "paper.yaml"
    runs_latexmk = False
    for module in SCAN.modules(paper.script):
        tree = ast.parse(module.read_text())
        strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
        imports = {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
        }
        runs_latexmk |= "latexmk" in strings and "subprocess" in imports
    assert runs_latexmk, (
        "the paper rule no longer calls latexmk: is paper.yaml's TeX still needed?"
    )


# Negative tests: the checks on synthetic files.


@pytest.fixture
def fake(tmp_path):
    """A workflow with one rule whose script reaches scipy lazily and torch not at all."""
    package = tmp_path / "scripts" / envcheck.PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text(
        textwrap.dedent("""\
        import json

        from .other import CONSTANT


        def used():
            from scipy import stats

            return stats, CONSTANT


        def unused():
            import torch

            return torch
        """)
    )
    (package / "other.py").write_text("import numpy\n\nCONSTANT = 1\n")
    (tmp_path / "scripts" / "fit.py").write_text(
        textwrap.dedent("""\
        import pandas as pd
        from mirsafety.helper import used

        used(snakemake.input[0])
        """)
    )
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "fit.yaml").write_text(
        textwrap.dedent("""\
        channels: [conda-forge]
        dependencies:
          - python=3.11
          - pip
          - pip:
              - pandas==3.1.1
              - numpy==2.4.6
              - matplotlib==3.11.2
        """)
    )
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "fit.smk").write_text(
        textwrap.dedent("""\
        rule fit:
            output:
                "fit.csv",
            conda:
                "../envs/fit.yaml"
            script:
                "../scripts/fit.py"
        """)
    )
    return tmp_path


def test_scan_follows_what_a_script_reaches(fake):
    scan = envcheck.ImportScan(fake / "scripts" / envcheck.PACKAGE)
    found = envcheck.third_party(scan.scan(fake / "scripts" / "fit.py"))
    assert set(found) == {
        "pandas",
        "numpy",
        "scipy",
    }  # json: stdlib; torch: never called
    assert found["scipy"].where == f"{envcheck.PACKAGE}/helper.py:7"


def test_import_check_reports_a_package_the_env_lacks(fake):
    (rule,) = envcheck.parse_rules(fake / "rules")
    assert (rule.name, rule.env.name, rule.script.name) == ("fit", "fit.yaml", "fit.py")
    scan = envcheck.ImportScan(fake / "scripts" / envcheck.PACKAGE)
    problems = envcheck.missing_imports(rule, envcheck.load_env(rule.env), scan, fake)
    assert len(problems) == 1
    for part in (
        "rule fit",
        "scripts/fit.py",
        "imports scipy",
        "helper.py:7",
        "envs/fit.yaml",
    ):
        assert part in problems[0], problems[0]


def test_exactness_check_reports_a_package_no_rule_imports(fake):
    (rule,) = envcheck.parse_rules(fake / "rules")
    scan = envcheck.ImportScan(fake / "scripts" / envcheck.PACKAGE)
    problems = envcheck.exactness_problems(
        rule.env, envcheck.load_env(rule.env), [rule], scan
    )
    assert len(problems) == 1 and "matplotlib" in problems[0], problems


def test_exactness_check_reports_a_missing_companion(fake):
    (fake / "scripts" / "fit.py").write_text("import transformers\n")
    (rule,) = envcheck.parse_rules(fake / "rules")
    scan = envcheck.ImportScan(fake / "scripts" / envcheck.PACKAGE)
    env = {
        "dependencies": ["pip", {"pip": ["transformers==5.24.0", "tokenizers==0.23.3"]}]
    }
    problems = envcheck.exactness_problems(rule.env, env, [rule], scan)
    assert len(problems) == 2 and all("companion" in p for p in problems), problems


def test_pin_check_reports_mismatches_and_unpinned_entries():
    env = {
        "dependencies": [
            "python=3.11",
            "pytorch=2.0.0=cuda*",
            {
                "pip": [
                    "numpy==1.0",
                    "pandas>=3",
                    "left-pad==1.0",
                    f"PyYAML=={PINS['pyyaml']}",
                ]
            },
        ]
    }
    problems = envcheck.pin_problems(env, PINS)
    assert len(problems) == 4, problems
    for part in ("pytorch=2.0.0=cuda*", "numpy==1.0", "pandas>=3", "left-pad==1.0"):
        assert any(part in p for p in problems), (part, problems)


@pytest.mark.parametrize(
    "env",
    [
        {"dependencies": ["python=3.11"], "channel": ["conda-forge"]},  # unknown key
        {"channels": ["conda-forge"]},  # no dependencies
        {
            "dependencies": ["pip", {"pip": ["a==1"]}, {"pip": ["b==1"]}]
        },  # two pip lists
        {"dependencies": [{"conda": ["a"]}]},  # a mapping that is not pip:
        {"dependencies": ["numpy 1.2 !!"]},  # not a match spec
        {"dependencies": ["pip", {"pip": "a==1"}]},  # pip: not a list
        {"dependencies": [], "variables": {"A": ["b"]}},  # variable values are scalars
    ],
)
def test_schema_rejects_what_conda_would_not_read(env):
    assert not VALIDATOR.is_valid(env)


@pytest.mark.parametrize(
    "spec",
    [
        "numpy",
        "numpy=2.4",
        "numpy==2.4.6",
        "pytorch=2.13.0=cuda*",
        "numpy>=1.2",
        "numpy>=1.2,<2",
        "conda-forge::numpy=2.4",
    ],
)
def test_schema_accepts_match_specs(spec):
    assert VALIDATOR.is_valid({"dependencies": [spec]})


def test_repeated_keys_are_an_error(tmp_path):
    path = tmp_path / "env.yaml"
    path.write_text("dependencies: [a]\ndependencies: [b]\n")
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key"):
        envcheck.load_env(path)
