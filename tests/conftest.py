"""Shared fixtures: tiny datasets in each source layout, built on the fly (nothing in git)."""

import io
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

from mirsafety.data.sample import HUB_FEATURES, hub_parquet_path, make_records  # noqa: E402

TINY_SPEC = {
    "seed": 7,
    "instances_per_cell": 1,
    "images_per_instance": [2, 3],
    "image_size": [32, 32],
    "keywords": ["cup", "kite", "lamp", "boat", "tree"],
}


def hand_wilson(k, n, z=1.959963984540054):
    """The Wilson interval written out from its formula, to check the library's against."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def png_bytes(size=(16, 16), colour="red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def write_hub(records: list[dict], root: Path) -> Path:
    """A hub snapshot folder holding ``records`` (hub column names and types)."""
    path = hub_parquet_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(records, features=HUB_FEATURES).to_parquet(str(path))
    return root


def write_extracted(records: list[dict], root: Path) -> Path:
    """The layout of the authors' extract_data.py: {Category}/{Relation}_final.json + PNGs."""
    files: dict[Path, list] = {}
    for record in records:
        relation, category = record["relationship_type"], record["category"]
        paths = []
        for k, image in enumerate(record["images"]):
            relative = f"images/{relation}/{relation}_{record['id']}_{k}.png"
            target = root / category / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(image["bytes"])
            paths.append(relative)
        entry = {k: v for k, v in record.items() if k not in ("category", "num_images", "images")}
        files.setdefault(root / category / f"{relation}_final.json", []).append(
            {**entry, "images": paths}
        )
    for path, entries in files.items():
        path.write_text(json.dumps(entries, indent=1))
    return root


@pytest.fixture
def tiny_records():
    """54 instances, one per category x relation cell, with small distinct images."""
    return make_records(TINY_SPEC)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Every tiny model of resources/tiny_models.yaml, built once per test session: name -> dir."""
    from mirsafety.models.tiny import build_tiny_model

    spec = yaml.safe_load((REPO / "resources" / "tiny_models.yaml").read_text())
    root = tmp_path_factory.mktemp("tiny-models")
    return {name: build_tiny_model(name, spec, root / name) for name in spec["models"]}


def registry_entry(entry: dict) -> dict:
    """A model entry with every schema default filled in, as the workflow sees it."""
    from mirsafety.core.config import validate_config

    schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    return validate_config({"models": {"m": entry}}, schema)["models"]["m"]


IGNORE = shutil.ignore_patterns(".git", ".venv", "results", "logs", ".snakemake", "__pycache__",
                                ".pytest_cache", "benchmarks")


@pytest.fixture
def project(tmp_path):
    """A copy of the project as a clean clone would have it, to run Snakemake in."""
    root = tmp_path / "project"
    shutil.copytree(REPO, root, ignore=IGNORE)
    return root


def profile_without_conda(name: str, dest: Path) -> Path:
    """``profiles/{name}`` as shipped, minus ``software-deployment-method: conda``.

    Conda's channels cannot be reached from the test machines, so the tests run every rule in the
    test environment (the envs themselves are checked in test_envs.py); every other entry of the
    profile is used as the user gets it.
    """
    config = yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())
    assert config.pop("software-deployment-method") == "conda", f"profiles/{name} lost --use-conda"
    (dest / name).mkdir(parents=True)
    (dest / name / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return dest / name


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """A clean copy of the project after the README's main command (the whole default run).

    Shared by the workflow tests and the Slurm test, which compares its tables with these.
    """
    root = tmp_path_factory.mktemp("default") / "project"
    shutil.copytree(REPO, root, ignore=IGNORE)
    result = snakemake(root)
    assert result.returncode == 0, result.stderr
    return root


def snakemake_command(*args) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--cores", "2", *args]


def snakemake(project, *args, env=None):
    return subprocess.run(snakemake_command(*args), cwd=project, capture_output=True, text=True,
                          env=env)
