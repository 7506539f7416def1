"""Shared fixtures: tiny datasets in each source layout, built on the fly (nothing in git)."""

import io
import json
import sys
from pathlib import Path

import datasets
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

from mirsafety.sample import HUB_FEATURES, hub_parquet_path, make_records  # noqa: E402

TINY_SPEC = {
    "seed": 7,
    "instances_per_cell": 1,
    "images_per_instance": [2, 3],
    "image_size": [32, 32],
    "keywords": ["cup", "kite", "lamp", "boat", "tree"],
}


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
