"""prepare over seeded random datasets of good and hostile records and images.

Whatever the mix, prepare must end (no hang), and either publish a manifest with every instance
and image intact, or refuse with a DataError naming every bad item and leave nothing behind:
no output that looks complete, no staging folder.
"""

import copy
import functools
import json
import random

import hostile_images
import pytest
from PIL import Image

from mirsafety.core.errors import DataError
from mirsafety.core.images import pixel_sha256
from mirsafety.data import prepare as prepare_module
from mirsafety.data.prepare import OUTPUTS, expected_counts, prepare
from mirsafety.data.sample import make_records
from mirsafety.data.validate import ImageDecoder

from conftest import TINY_SPEC, write_extracted, write_hub

MAX_PIXELS = 100_000
TRIALS = 40
HUB_FILE = "data/train-00000-of-00001.parquet"


def noise(rng: random.Random, mode: str = "RGB") -> Image.Image:
    size = (rng.randint(8, 24), rng.randint(8, 24))
    return Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3)).convert(mode)


def transparent_gif(rng):
    image = noise(rng).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return hostile_images.encode(image, "GIF", transparency=0)


#: Images that must be accepted, by kind.
GOOD = {
    "png": lambda rng: hostile_images.encode(noise(rng)),
    "jpeg": lambda rng: hostile_images.encode(noise(rng), "JPEG"),
    "rgba": lambda rng: hostile_images.encode(noise(rng, "RGBA")),
    "16-bit grey": lambda rng: hostile_images.gradient_16bit_grey(rng.randint(2, 40), 3),
    "16-bit rgb": lambda rng: hostile_images.gradient_16bit_rgb(rng.randint(2, 40), 3),
    "gif with transparency": transparent_gif,
    "webp": lambda rng: hostile_images.encode(noise(rng), "WEBP", lossless=True),
    "bmp": lambda rng: hostile_images.encode(noise(rng), "BMP"),
    "tiff": lambda rng: hostile_images.encode(noise(rng, "RGBA"), "TIFF"),
}

#: Images that must be refused, by kind (None: the hub row holds no bytes).
BAD = {
    "truncated png": lambda rng: (lambda d: d[: len(d) // 2])(GOOD["png"](rng)),
    "truncated jpeg": lambda rng: (lambda d: d[: len(d) // 2])(GOOD["jpeg"](rng)),
    "eps": lambda rng: hostile_images.EPS,
    "looping eps": lambda rng: hostile_images.LOOPING_EPS,
    "random bytes": lambda rng: b"\xfe" + rng.randbytes(rng.randint(1, 200)),
    "empty": lambda rng: b"",
    "huge declared size": lambda rng: hostile_images.huge_declared_png(rng.randint(400, 3000)),
    "missing": lambda rng: None,
}


def make_trial(seed: int, base: list[dict]):
    """Records for one trial, what prepare must name in them (uid or hub row, and "image k of n"
    or None), and the kinds of image used. Two trials in five are clean."""
    rng = random.Random(seed)
    hostile = rng.random() < 0.6
    records, bad, used = [], [], set()
    for record in rng.sample(base, rng.randint(2, 5)):
        record = copy.deepcopy(record)
        count = rng.randint(1, 3)
        kinds = [rng.choice(list(BAD)) if hostile and rng.random() < 0.25
                 else rng.choice(list(GOOD)) for _ in range(count)]
        used.update(kinds)
        record["images"] = [{"bytes": (BAD.get(k) or GOOD[k])(rng), "path": None} for k in kinds]
        record["num_images"] = count
        uid = f"{record['category']}/{record['relationship_type']}/{record['id']}"
        if hostile and rng.random() < 0.1:
            record["category"] = "Weather"
            bad.append((f"{HUB_FILE} row {len(records)}: ", None))
        else:
            bad += [(uid, f"image {k} of {count} ") for k, kind in enumerate(kinds, 1)
                    if kind in BAD]
        records.append(record)
    if hostile and rng.random() < 0.2 and records[0]["category"] != "Weather":
        records.append(copy.deepcopy(records[0]))
        first = records[0]
        bad.append((f"{first['category']}/{first['relationship_type']}/{first['id']}: duplicate id",
                    None))
    return records, bad, used


def layout(seed: int, records: list[dict], bad: list) -> str:
    """Every third trial without record-level faults or missing bytes uses the extracted layout
    (it has no way to hold either)."""
    hub_only = any(n is None for _, n in bad) or any(
        i["bytes"] is None for r in records for i in r["images"])
    return "extracted" if seed % 3 == 2 and not hub_only else "hub"


def named(problems: list[str], item: str, image: str | None) -> bool:
    return any(item in p and (image is None or image in p) for p in problems)


def assert_intact(out, records: list[dict]) -> None:
    """Every instance and image of ``records`` is in the published dataset, unchanged."""
    manifest = json.loads((out / "manifest.json").read_text())
    prepared = {r["uid"]: r for r in map(json.loads, (out / "instances.jsonl").open())}
    assert len(prepared) == len(records) == manifest["counts"]["total"]
    for record in records:
        mine = prepared[f"{record['category']}/{record['relationship_type']}/{record['id']}"]
        assert mine["revised_prompt"] == record["revised_prompt"]
        assert mine["num_images"] == len(record["images"]) == len(mine["images"])
        for path, image in zip(mine["images"], record["images"], strict=True):
            assert (out / path).read_bytes() == image["bytes"]
            with Image.open(out / path) as stored:
                assert manifest["image_pixel_sha256"][path] == pixel_sha256(stored)


@pytest.fixture(scope="module")
def base_records():
    return make_records(TINY_SPEC)


@pytest.mark.parametrize("seed", range(TRIALS))
def test_prepare_publishes_everything_intact_or_names_every_bad_item(tmp_path, base_records,
                                                                      monkeypatch, seed):
    # a hung decoder is refused after 5 s; the deadline catches any other hang
    monkeypatch.setattr(prepare_module, "ImageDecoder",
                        functools.partial(ImageDecoder, timeout_s=5))
    records, bad, _ = make_trial(seed, base_records)
    writer = write_extracted if layout(seed, records, bad) == "extracted" else write_hub
    source, out = writer(records, tmp_path / "source"), tmp_path / "data" / "fuzz"
    with hostile_images.deadline(20):
        try:
            prepare(source, out, dataset="fuzz", split="train", max_image_pixels=MAX_PIXELS,
                    expected=expected_counts("sample", {"instances_per_cell": 1}),
                    enforce_counts=False, provenance={})
        except DataError as error:
            assert bad, f"refused a good dataset: {error}"
            missed = [b for b in bad if not named(error.problems, *b)]
            assert not missed, f"not named: {missed} in {error.problems}"
            assert not any((out / name).exists() for name in OUTPUTS)
        else:
            assert not bad, f"accepted {bad}"
            assert_intact(out, records)
    assert not list(out.parent.glob(".*.partial"))


def test_the_trials_cover_every_kind_of_input(base_records):
    trials = [make_trial(seed, base_records) for seed in range(TRIALS)]
    assert set().union(*(used for _, _, used in trials)) == set(GOOD) | set(BAD)
    named_items = [item for _, bad, _ in trials for item, _ in bad]
    assert any("duplicate id" in i for i in named_items)
    assert any(i.startswith(HUB_FILE) for i in named_items)  # the bad category
    assert sum(not bad for _, bad, _ in trials) >= TRIALS // 4  # enough clean datasets
    assert {layout(seed, *trial[:2]) for seed, trial in enumerate(trials)} == {"hub", "extracted"}


def test_the_looping_eps_of_the_issue_is_refused_at_once(tmp_path, base_records):
    records = copy.deepcopy(base_records[:1])
    records[0]["images"][0]["bytes"] = hostile_images.LOOPING_EPS
    out = tmp_path / "data" / "mir"
    with hostile_images.deadline(20), pytest.raises(DataError, match="is in EPS format"):
        prepare(write_hub(records, tmp_path / "hub"), out, dataset="mir", split="train",
                max_image_pixels=MAX_PIXELS, expected=expected_counts("mir"),
                enforce_counts=False, provenance={})
    assert not list(out.parent.glob(".*.partial"))
