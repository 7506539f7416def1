"""Every kind of bad input stops prepare with the instance and the problem named, writing nothing."""

import io

import pytest
from PIL import Image

from mirsafety.core.errors import DataError
from mirsafety.data.prepare import OUTPUTS, expected_counts, prepare

from conftest import png_bytes, write_extracted, write_hub


def big_png(size) -> bytes:
    """A large but tiny-on-disk image: the shape of a decompression bomb."""
    buffer = io.BytesIO()
    Image.new("1", size).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def truncated_png() -> bytes:
    data = png_bytes((64, 64), "blue")
    return data[: len(data) // 2]


def set_image(record, data):
    record["images"][1] = {"bytes": data, "path": None}


def set_field(key, value):
    def mutate(record):
        record[key] = value
    return mutate


# (name, mutation of the first record, expected text in the error)
HUB_CASES = [
    ("missing image bytes", lambda r: set_image(r, None), "image 2 of 2 is missing (no bytes embedded"),
    ("empty image", lambda r: set_image(r, b""), "image 2 of 2 is empty (0 bytes)"),
    ("corrupt image", lambda r: set_image(r, b"GIF89a not really"), "is not a readable image"),
    ("truncated image", lambda r: set_image(r, truncated_png()), "image 2 of 2 is corrupt"),
    ("decompression bomb", lambda r: set_image(r, big_png((4000, 4000))),
     "is 4000x4000 = 16,000,000 pixels, over dataset.max_image_pixels = 1,000,000"),
    ("unknown category", set_field("category", "Weather"), "unknown category 'Weather'"),
    ("unknown relation", set_field("relationship_type", "Telepathy"),
     "unknown relation 'Telepathy'"),
    ("empty prompt", set_field("revised_prompt", "   "), "empty revised_prompt"),
    ("empty question", set_field("original_question", ""), "empty original_question"),
    ("num_images disagrees", set_field("num_images", 4),
     "num_images says 4 but the record has 2 image(s)"),
    ("no images", lambda r: r.update(images=[], num_images=0), "has no images"),
    ("missing id", set_field("id", None), "id None is missing or not usable"),
]


def first_record_with_two_images(records):
    return next(r for r in records if r["num_images"] == 2)


def assert_nothing_written(out):
    assert not any((out / name).exists() for name in OUTPUTS)
    assert not list(out.parent.glob(".*.partial"))


def run(source, out):
    prepare(source, out, dataset="sample", split="train", max_image_pixels=1_000_000,
            expected=expected_counts("sample", {"instances_per_cell": 1}), enforce_counts=True,
            provenance={})


@pytest.mark.parametrize("name, mutate, message", HUB_CASES, ids=[c[0] for c in HUB_CASES])
def test_bad_hub_record_is_named_and_nothing_is_written(tmp_path, tiny_records, name, mutate,
                                                        message):
    record = first_record_with_two_images(tiny_records)
    uid = f"{record['category']}/{record['relationship_type']}/{record['id']}"
    mutate(record)
    out = tmp_path / "data" / "sample"
    with pytest.raises(DataError) as error:
        run(write_hub(tiny_records, tmp_path / "hub"), out)
    text = str(error.value)
    assert message in text
    assert uid in text or "train-00000-of-00001.parquet row" in text
    assert text.endswith("Nothing was written.")
    assert_nothing_written(out)


def test_duplicate_id_names_both_places(tmp_path, tiny_records):
    tiny_records.append(dict(tiny_records[0]))
    out = tmp_path / "out"
    with pytest.raises(DataError) as error:
        run(write_hub(tiny_records, tmp_path / "hub"), out)
    uid = f"{tiny_records[0]['category']}/{tiny_records[0]['relationship_type']}/1"
    assert f"{uid}: duplicate id (first at data/train-00000-of-00001.parquet row 0, again at " \
           "data/train-00000-of-00001.parquet row 54)" in str(error.value)
    assert_nothing_written(out)


def test_every_problem_is_listed_not_just_the_first(tmp_path, tiny_records):
    for record in tiny_records[:3]:
        record["revised_prompt"] = ""
    with pytest.raises(DataError) as error:
        run(write_hub(tiny_records, tmp_path / "hub"), tmp_path / "out")
    assert len(error.value.problems) == 3


def test_failure_keeps_an_earlier_good_output_untouched(tmp_path, tiny_records):
    out = tmp_path / "out"
    run(write_hub(tiny_records, tmp_path / "good"), out)
    before = (out / "manifest.json").read_bytes()
    tiny_records[0]["category"] = "Weather"
    with pytest.raises(DataError):
        run(write_hub(tiny_records, tmp_path / "bad"), out)
    assert (out / "manifest.json").read_bytes() == before


@pytest.mark.parametrize("relative", ["../../outside.png", "/etc/hostname"])
def test_extracted_path_leaving_the_dataset_folder_is_refused(tmp_path, tiny_records, relative):
    root = write_extracted(tiny_records, tmp_path / "ext")
    (tmp_path / "outside.png").write_bytes(png_bytes())
    json_file = next(root.glob("*/*_final.json"))
    json_file.write_text(json_file.read_text().replace('"images/', f'"{relative}", "images/', 1))
    out = tmp_path / "out"
    with pytest.raises(DataError) as error:
        run(root, out)
    assert f"image path '{relative}' leaves the dataset folder" in str(error.value)
    assert_nothing_written(out)


def test_extracted_id_that_would_escape_as_a_file_name_is_refused(tmp_path, tiny_records):
    tiny_records[0]["id"] = "../../evil"
    root = write_extracted(tiny_records[:1], tmp_path / "ext")
    with pytest.raises(DataError, match=r"id '../../evil' is missing or not usable"):
        run(root, tmp_path / "out")


def test_extracted_missing_file_is_named(tmp_path, tiny_records):
    root = write_extracted(tiny_records, tmp_path / "ext")
    victim = next(root.glob("*/images/*/*.png"))
    victim.unlink()
    out = tmp_path / "out"
    with pytest.raises(DataError) as error:
        run(root, out)
    assert f"is missing (file not found: {victim})" in str(error.value)
    assert_nothing_written(out)


def test_extracted_relation_disagreeing_with_its_file_is_refused(tmp_path, tiny_records):
    root = write_extracted(tiny_records, tmp_path / "ext")
    json_file = root / "Violence" / "Analogy_final.json"
    json_file.write_text(json_file.read_text().replace('"Analogy"', '"Causality"'))
    with pytest.raises(DataError, match="disagrees with its file name"):
        run(root, tmp_path / "out")
