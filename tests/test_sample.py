"""The embedded sample: deterministic, complete, harmless, and in the hub's on-disk format."""

import hashlib
import io

import pyarrow.parquet as pq
import yaml
from PIL import Image

from mirsafety.core.taxonomy import CATEGORIES, RELATIONS, SAMPLE_PLACEHOLDER
from mirsafety.data.sample import HUB_FEATURES, make_records, write_sample

from conftest import REPO

SPEC = yaml.safe_load((REPO / "resources" / "sample_spec.yaml").read_text())


def test_sample_is_byte_identical_when_made_twice(tmp_path):
    first = write_sample(SPEC, tmp_path / "a").read_bytes()
    second = write_sample(SPEC, tmp_path / "b").read_bytes()
    assert hashlib.sha256(first).digest() == hashlib.sha256(second).digest()


def test_every_cell_is_covered_with_two_to_four_distinct_images():
    records = make_records(SPEC)
    cells = {(r["category"], r["relationship_type"]) for r in records}
    assert cells == {(c, r) for c in CATEGORIES for r in RELATIONS}
    assert len(records) >= 108
    hashes = [hashlib.sha256(i["bytes"]).hexdigest() for r in records for i in r["images"]]
    assert len(hashes) == len(set(hashes))
    for record in records:
        assert 2 <= record["num_images"] == len(record["images"]) <= 4
        assert len(set(record["image_keywords"])) == record["num_images"]
        with Image.open(io.BytesIO(record["images"][0]["bytes"])) as image:
            assert image.size == tuple(SPEC["image_size"])


def test_prompts_are_labelled_synthetic_placeholders():
    for record in make_records(SPEC):
        assert record["revised_prompt"].startswith(SAMPLE_PLACEHOLDER)
        assert record["original_question"].startswith(SAMPLE_PLACEHOLDER)


def test_written_in_the_hub_format(tmp_path):
    path = write_sample(SPEC, tmp_path)
    assert path.relative_to(tmp_path).as_posix() == "data/train-00000-of-00001.parquet"
    schema = pq.read_schema(path)
    assert schema.names == list(HUB_FEATURES)
    assert str(schema.field("images").type) == (
        "list<element: struct<bytes: binary, path: string>>"
    )
    assert str(schema.field("image_keywords").type) == "list<element: string>"
    assert str(schema.field("id").type) == "int64"
    assert b'"_type": "Image"' in schema.metadata[b"huggingface"]
