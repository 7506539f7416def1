"""prepare on every source layout: same result from each, counts and hashes checked."""

import hashlib
import io
import json

import datasets
import hostile_images
import pytest
from PIL import Image

from mirsafety.core.errors import DataError
from mirsafety.core.images import load_instance_images, pixel_sha256
from mirsafety.core.taxonomy import CATEGORIES, RELATIONS
from mirsafety.data.prepare import expected_counts, prepare
from mirsafety.data.sample import HUB_FEATURES, hub_parquet_path
from mirsafety.data.sources import open_source

from conftest import write_extracted, write_hub


def run_prepare(source, out, dataset="sample", spec=None, enforce=True, **kwargs):
    expected = expected_counts(dataset, spec or {"instances_per_cell": 1})
    return prepare(source, out, dataset=dataset, split="train", max_image_pixels=10**7,
                   expected=expected, enforce_counts=enforce, provenance={}, **kwargs)


def test_hub_snapshot_is_prepared_with_hashes_and_counts(tmp_path, tiny_records):
    manifest = run_prepare(write_hub(tiny_records, tmp_path / "hub"), tmp_path / "out")
    out = tmp_path / "out"
    lines = (out / "instances.jsonl").read_text().splitlines()
    assert len(lines) == manifest["counts"]["total"] == 54
    assert manifest["count_check"] == {"status": "ok", "enforced": True, "differences": []}
    assert manifest["source"]["kind"] == "hub_parquet"
    assert set(manifest["counts"]["by_cell"].values()) == {1}
    for path, digest in manifest["images"].items():
        assert hashlib.sha256((out / path).read_bytes()).hexdigest() == digest
    assert len(manifest["images"]) == manifest["n_images"] == sum(
        r["num_images"] for r in tiny_records
    )
    digest = hashlib.sha256((out / "instances.jsonl").read_bytes()).hexdigest()
    assert manifest["files"]["instances.jsonl"] == digest
    assert not list(tmp_path.glob(".*partial"))


def test_records_are_in_canonical_order_with_stable_ids(tmp_path, tiny_records):
    run_prepare(write_hub(tiny_records[::-1], tmp_path / "hub"), tmp_path / "out")
    records = [json.loads(x) for x in (tmp_path / "out" / "instances.jsonl").read_text().split("\n")
               if x]
    order = [(CATEGORIES.index(r["category"]), RELATIONS.index(r["relation"])) for r in records]
    assert order == sorted(order)
    first = records[0]
    assert first["uid"] == f"{first['category']}/{first['relation']}/{first['id']}"
    assert first["relation_group"] == "temporal"
    assert first["images"][0] == f"images/{first['category']}/{first['relation']}/{first['id']}_1.png"


def test_extracted_layout_gives_the_same_instances_as_the_hub(tmp_path, tiny_records):
    run_prepare(write_hub(tiny_records, tmp_path / "hub"), tmp_path / "a")
    manifest = run_prepare(write_extracted(tiny_records, tmp_path / "ext"), tmp_path / "b")
    assert manifest["source"]["kind"] == "extracted"
    a = (tmp_path / "a" / "instances.jsonl").read_bytes()
    assert a == (tmp_path / "b" / "instances.jsonl").read_bytes()


def test_parquet_converter_layout_is_found(tmp_path, tiny_records):
    hub = write_hub(tiny_records, tmp_path / "hub")
    converted = tmp_path / "conv" / "default" / "train"
    converted.mkdir(parents=True)
    next(hub.glob("data/*.parquet")).rename(converted / "0000.parquet")
    assert open_source(tmp_path / "conv").kind == "hub_parquet"


def test_preparing_twice_gives_identical_files(tmp_path, tiny_records):
    source = write_hub(tiny_records, tmp_path / "hub")
    run_prepare(source, tmp_path / "a")
    run_prepare(source, tmp_path / "a")  # over its own earlier output
    run_prepare(source, tmp_path / "b")
    for name in ("instances.jsonl", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_published_counts_are_enforced_for_the_real_dataset(tmp_path, tiny_records):
    source = write_hub(tiny_records, tmp_path / "hub")
    with pytest.raises(DataError) as error:
        run_prepare(source, tmp_path / "out", dataset="mir")
    assert "total: expected 2676, found 54" in str(error.value)
    assert "Analogy: expected 318, found 6" in str(error.value)
    assert "check_published_counts: false" in str(error.value)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_count_mismatch_is_recorded_when_allowed(tmp_path, tiny_records):
    manifest = run_prepare(write_hub(tiny_records, tmp_path / "hub"), tmp_path / "out",
                           dataset="mir", enforce=False)
    assert manifest["count_check"]["status"] == "mismatch"
    assert manifest["count_check"]["enforced"] is False
    assert "total: expected 2676, found 54" in manifest["count_check"]["differences"]


def test_download_provenance_is_carried_into_the_manifest(tmp_path, tiny_records):
    source = write_hub(tiny_records, tmp_path / "hub")
    (source / "source.json").write_text(json.dumps({"commit": "f" * 40, "revision": "main"}))
    manifest = run_prepare(source, tmp_path / "out")
    assert manifest["source"]["commit"] == "f" * 40


def test_folder_without_data_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no MIR-SafetyBench data found"):
        run_prepare(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="dataset.local_path"):
        run_prepare(tmp_path / "missing", tmp_path / "out")


@pytest.mark.parametrize("layout", ["train.parquet", "mir.parquet", "train/part-0.parquet",
                                    "data/train-00000-of-00001.parquet"])
def test_every_layout_datasets_resolves_for_train_is_read(tmp_path, tiny_records, layout):
    """What ``datasets.load_dataset(folder, split="train")`` reads is what prepare reads: split
    in the file name, in a folder name, or one file that is the whole (train) split."""
    hub = write_hub(tiny_records, tmp_path / "hub")
    target = tmp_path / "other" / layout
    target.parent.mkdir(parents=True, exist_ok=True)
    next(hub.glob("data/*.parquet")).rename(target)
    source = open_source(tmp_path / "other")
    assert source.kind == "hub_parquet" and source.count == len(tiny_records)


def test_a_download_fetches_only_the_split_it_reads():
    from mirsafety.data.hub import split_patterns

    files = ["README.md", "data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet",
             "data/test-00000-of-00001.parquet", "images/x.png"]
    assert split_patterns(files, "train") == files[1:3] + ["README.md"]
    converted = ["default/train/0000.parquet", "default/test/0000.parquet"]
    assert split_patterns(converted, "train") == ["default/train/0000.parquet", "README.md"]


def test_image_descriptions_as_one_string_stay_one_description(tmp_path, tiny_records):
    """A dataset build with a string column: one description, not a list of characters."""
    features = datasets.Features({**HUB_FEATURES, "image_descriptions": datasets.Value("string")})
    records = [{**r, "image_descriptions": "a kite over a field"} for r in tiny_records]
    path = hub_parquet_path(tmp_path / "hub")
    path.parent.mkdir(parents=True)
    datasets.Dataset.from_list(records, features=features).to_parquet(str(path))
    run_prepare(tmp_path / "hub", tmp_path / "out")
    first = json.loads((tmp_path / "out" / "instances.jsonl").read_text().splitlines()[0])
    assert first["image_descriptions"] == ["a kite over a field"]


def test_pixel_hashes_match_across_layouts_where_file_hashes_differ(tmp_path, tiny_records):
    hub = run_prepare(write_hub(tiny_records, tmp_path / "hub"), tmp_path / "a")
    first = tiny_records[0]
    with Image.open(io.BytesIO(first["images"][0]["bytes"])) as image:
        reencoded = hostile_images.encode(image, "PNG", compress_level=0)  # same pixels
    assert reencoded != first["images"][0]["bytes"]
    first["images"][0]["bytes"] = reencoded
    extracted = run_prepare(write_extracted(tiny_records, tmp_path / "ext"), tmp_path / "b")
    path = f"images/{first['category']}/{first['relationship_type']}/{first['id']}_1.png"
    assert hub["images"][path] != extracted["images"][path]
    assert hub["image_pixel_sha256"] == extracted["image_pixel_sha256"]
    assert set(hub["image_pixel_sha256"]) == set(hub["images"])
    with Image.open(tmp_path / "b" / path) as image:
        assert extracted["image_pixel_sha256"][path] == pixel_sha256(image)


def test_sixteen_bit_and_alpha_images_are_kept_as_is_and_hashed_as_the_model_sees_them(
        tmp_path, tiny_records):
    record = tiny_records[0]
    record["images"][0]["bytes"] = hostile_images.gradient_16bit_grey()
    record["images"][1]["bytes"] = hostile_images.encode(Image.new("RGBA", (8, 8), (255, 0, 0, 0)))
    manifest = run_prepare(write_hub(tiny_records, tmp_path / "hub"), tmp_path / "out")
    line = (tmp_path / "out" / "instances.jsonl").read_text().splitlines()[0]
    prepared = json.loads(line)
    assert prepared["uid"] == f"{record['category']}/{record['relationship_type']}/1"
    for k, path in enumerate(prepared["images"][:2]):
        assert (tmp_path / "out" / path).read_bytes() == record["images"][k]["bytes"]
        (shown,) = load_instance_images(tmp_path / "out", [path])
        digest = hashlib.sha256(f"RGB {shown.width}x{shown.height}\n".encode() + shown.tobytes())
        assert manifest["image_pixel_sha256"][path] == prepared["image_pixel_sha256"][k] \
            == digest.hexdigest()


def test_extracted_fields_are_carried_as_written(tmp_path, tiny_records):
    """The issue's case: a string image_descriptions in the extracted layout is one description;
    keywords and iteration are carried, not defaulted."""
    tiny_records[0]["image_descriptions"] = "not a list"
    run_prepare(write_extracted(tiny_records, tmp_path / "ext"), tmp_path / "out")
    lines = (tmp_path / "out" / "instances.jsonl").read_text().splitlines()
    by_uid = {r["uid"]: r for r in map(json.loads, lines)}
    first = tiny_records[0]
    record = by_uid[f"{first['category']}/{first['relationship_type']}/{first['id']}"]
    assert record["image_descriptions"] == ["not a list"]
    assert record["image_keywords"] == first["image_keywords"]
    assert record["iteration"] == first["iteration"]


def test_a_source_given_by_a_relative_path_is_read(tmp_path, tiny_records, monkeypatch):
    """The workflow passes results/raw/sample, relative to its working directory."""
    write_hub(tiny_records, tmp_path / "hub")
    monkeypatch.chdir(tmp_path)
    assert open_source("hub").count == len(tiny_records)
    assert all(not record.origin.startswith("/") for record in open_source("hub").records)


def test_a_staging_folder_left_by_a_killed_run_is_cleared_by_the_next(tmp_path, tiny_records):
    stale = tmp_path / ".out.partial"
    (stale / "images").mkdir(parents=True)
    (stale / "manifest.json").write_text("{}")  # as if killed while publishing
    run_prepare(write_hub(tiny_records, tmp_path / "hub"), tmp_path / "out")
    assert not stale.exists()
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["counts"]["total"] == 54
