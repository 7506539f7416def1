"""The embedded offline dataset: a deterministic, harmless stand-in for MIR-SafetyBench.

It is written in the hub's own on-disk format (a parquet file whose ``images`` column is a list
of ``{bytes, path}`` image structs, with the ``datasets`` feature metadata), so ``prepare`` reads
it through exactly the code path a real download takes.
"""

import io
import random
from pathlib import Path

import datasets
from PIL import Image, ImageDraw, ImageFont

from mirsafety.core.taxonomy import CATEGORIES, RELATIONS, SAMPLE_PLACEHOLDER

#: Column names and types of the hub dataset (docs/paper-facts.md).
HUB_FEATURES = datasets.Features(
    {
        "id": datasets.Value("int64"),
        "category": datasets.Value("string"),
        "relationship_type": datasets.Value("string"),
        "original_question": datasets.Value("string"),
        "revised_prompt": datasets.Value("string"),
        "image_descriptions": datasets.List(datasets.Value("string")),
        "image_keywords": datasets.List(datasets.Value("string")),
        "num_images": datasets.Value("int64"),
        "images": datasets.List(datasets.Image()),
        "iteration": datasets.Value("int64"),
    }
)

def hub_parquet_path(snapshot_dir, split: str = "train") -> Path:
    """Where the hub keeps a single-shard split inside a dataset snapshot."""
    return Path(snapshot_dir) / "data" / f"{split}-00000-of-00001.parquet"


def draw_scene(keyword: str, index: int, count: int, size, rng: random.Random) -> bytes:
    """A PNG of random shapes with the keyword written across it, so every image is distinct."""
    width, height = size
    background = tuple(rng.randrange(150, 256) for _ in range(3))
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(3, 6)):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1 = x0 + rng.randint(width // 10 + 1, width // 2)
        y1 = y0 + rng.randint(height // 10 + 1, height // 2)
        colour = tuple(rng.randrange(0, 200) for _ in range(3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1, y1), fill=colour)
    font = ImageFont.load_default(size=max(12, height // 9))
    draw.rectangle((0, height // 2 - height // 8, width, height // 2 + height // 8), fill="white")
    draw.text((width // 2, height // 2), keyword, fill="black", font=font, anchor="mm")
    draw.text((6, 4), f"{index}/{count}", fill="black", font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_records(spec: dict) -> list[dict]:
    """One record per instance, every category × relation cell ``instances_per_cell`` times."""
    rng = random.Random(spec["seed"])
    low, high = spec["images_per_instance"]
    size = tuple(spec["image_size"])
    records = []
    for category in CATEGORIES:
        for relation in RELATIONS:
            for cell_index in range(spec["instances_per_cell"]):
                count = rng.randint(low, high)
                keywords = rng.sample(spec["keywords"], count)
                seed_no = len(records) + 1
                records.append(
                    {
                        "id": cell_index + 1,
                        "category": category,
                        "relationship_type": relation,
                        "original_question": (
                            f"{SAMPLE_PLACEHOLDER} Seed question #{seed_no} standing in for the "
                            f"{category} category."
                        ),
                        "revised_prompt": (
                            f"{SAMPLE_PLACEHOLDER} Look at the {count} pictures "
                            f"({', '.join(keywords)}) and describe how they are linked "
                            f"({relation.replace('_', ' ').lower()})."
                        ),
                        "image_descriptions": [f"A drawn scene with a {k}." for k in keywords],
                        "image_keywords": keywords,
                        "num_images": count,
                        "images": [
                            {"bytes": draw_scene(k, i + 1, count, size, rng), "path": None}
                            for i, k in enumerate(keywords)
                        ],
                        "iteration": rng.randint(1, 5),
                    }
                )
    return records


def write_sample(spec: dict, snapshot_dir, split: str = "train") -> Path:
    """Write the sample as a hub snapshot folder and return the parquet file's path."""
    records = make_records(spec)
    table = datasets.Dataset.from_list(records, features=HUB_FEATURES)
    path = hub_parquet_path(snapshot_dir, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(str(path))
    return path
