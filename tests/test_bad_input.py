"""Every kind of bad input stops prepare with the instance and the problem named, writing nothing."""

import functools
import io
import json
import shutil
import time
from pathlib import Path

import datasets
import hostile_images
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mirsafety.core.errors import DataError
from mirsafety.data import prepare as prepare_module
from mirsafety.data import validate
from mirsafety.data.prepare import OUTPUTS, expected_counts, prepare
from mirsafety.data.sample import HUB_FEATURES, hub_parquet_path
from mirsafety.data.validate import ImageDecoder, check_image

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


# --- invisible prompts, field types and missing fields, misleading messages (issue 16) ---


def refusal(source, out) -> DataError:
    """The DataError prepare raises on ``source``, after checking it wrote nothing."""
    with pytest.raises(DataError) as error:
        run(source, out)
    assert_nothing_written(out)
    return error.value


@pytest.mark.parametrize("key", ["revised_prompt", "original_question"])
@pytest.mark.parametrize("text, shown", [
    ("\u200b", "U+200B"),
    ("\ufeff\u200b\u2060", "U+200B, U+2060, U+FEFF"),
    (" \u200b\n\u00ad\u3000", "U+00AD, U+200B"),
    ("\u202e\x00", "U+0000, U+202E"),
], ids=["zero-width-space", "bom-zwsp-word-joiner", "with-whitespace", "bidi-and-control"])
def test_prompt_of_invisible_characters_is_refused_as_empty(tmp_path, tiny_records, key, text,
                                                            shown):
    tiny_records[0][key] = text
    error = refusal(write_hub(tiny_records, tmp_path / "hub"), tmp_path / "out")
    assert error.problems == [
        f"data/train-00000-of-00001.parquet row 0: empty {key} (only invisible characters: "
        f"{shown}); the instance cannot be asked or judged without it"
    ]


def test_visible_prompt_with_invisible_characters_in_it_is_kept(tmp_path, tiny_records):
    tiny_records[0]["revised_prompt"] = prompt = "\ufeffLook at the\u200b pictures"
    run(write_hub(tiny_records, tmp_path / "hub"), tmp_path / "out")
    lines = (tmp_path / "out" / "instances.jsonl").read_text(encoding="utf-8").splitlines()
    assert prompt in [json.loads(line)["revised_prompt"] for line in lines]


def edit_first_extracted(root, edit) -> str:
    """Apply ``edit`` to record 0 of the first ``_final.json`` file; return that record's origin."""
    json_file = sorted(root.glob("*/*_final.json"))[0]
    records = json.loads(json_file.read_text())
    edit(records[0])
    json_file.write_text(json.dumps(records))
    return f"{json_file.relative_to(root)} record 0"


def drop(key):
    return lambda record: record.pop(key)


# (name, edit of record 0 in the extracted layout, the one problem reported)
EXTRACTED_TYPE_CASES = [
    ("images as a string", set_field("images", "images/Analogy/Analogy_1_0.png"),
     "images is a str; it must be a list of image paths"),
    ("images as an object", set_field("images", {"a": "x.png"}),
     "images is a dict; it must be a list of image paths"),
    ("image path as a number", set_field("images", [1, 2]),
     "images[0] is an int (1); it must be a list of image paths"),
    ("num_images as a string", set_field("num_images", "2"),
     "num_images is a str ('2'); it must be an integer"),
    ("num_images as a bool", set_field("num_images", True),
     "num_images is a bool (True); it must be an integer"),
    ("revised_prompt as a number", set_field("revised_prompt", 42),
     "revised_prompt is an int (42); it must be a string"),
    ("original_question as a list", set_field("original_question", ["a", "b"]),
     "original_question is a list; it must be a string"),
    ("image_descriptions as an object", set_field("image_descriptions", {"1": "a kite"}),
     "image_descriptions is a dict; it must be a list of strings (or one string)"),
    ("image_keywords holding a number", set_field("image_keywords", ["kite", 3]),
     "image_keywords[1] is an int (3); it must be a list of strings (or one string)"),
    ("iteration as a string", set_field("iteration", "3"),
     "iteration is a str ('3'); it must be an integer"),
    ("id as a float", set_field("id", 1.5),
     "id is a float (1.5); it must be an integer or a string"),
    ("no image_descriptions", drop("image_descriptions"),
     "image_descriptions is absent; it must be a list of strings (or one string), because the "
     "contextual HarmBench judge reads them as the images' context. Fix: give the record its "
     "image_descriptions, as the hub dataset and the authors' extract_data.py do"),
    ("null image_descriptions", set_field("image_descriptions", None),
     "image_descriptions is null; it must be a list of strings (or one string), because the "
     "contextual HarmBench judge reads them as the images' context."),
    ("empty image_descriptions", set_field("image_descriptions", []),
     "image_descriptions holds no visible text; the contextual HarmBench judge reads them as "
     "the images' context"),
    ("invisible image_descriptions", set_field("image_descriptions", ["\u200b", " "]),
     "image_descriptions holds no visible text"),
    ("no image_keywords", drop("image_keywords"),
     "image_keywords is absent; it must be a list of strings (or one string), because they name "
     "what each image shows."),
    ("no iteration", drop("iteration"),
     "iteration is absent; it must be an integer, because it records how many rewrites made the "
     "prompt."),
    ("no images", drop("images"),
     "images is absent; it must be a list of image paths, because the instance is its images."),
]


@pytest.mark.parametrize("name, edit, message", EXTRACTED_TYPE_CASES,
                         ids=[c[0] for c in EXTRACTED_TYPE_CASES])
def test_extracted_field_of_the_wrong_type_or_missing_is_named(tmp_path, tiny_records, name,
                                                               edit, message):
    root = write_extracted(tiny_records, tmp_path / "ext")
    origin = edit_first_extracted(root, edit)
    error = refusal(root, tmp_path / "out")
    assert len(error.problems) == 1, error.problems  # one problem, not one per letter or a count
    assert origin in error.problems[0]
    assert message in error.problems[0]


def hub_with(records, root, **features) -> Path:
    """A hub snapshot whose columns have ``features`` instead of the hub's types."""
    path = hub_parquet_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(records, features=datasets.Features({**HUB_FEATURES, **features})
                               ).to_parquet(str(path))
    return root


@pytest.mark.parametrize("column, feature, value, message", [
    ("num_images", datasets.Value("string"), "2",
     "num_images is a str ('2'); it must be an integer"),
    ("iteration", datasets.Value("float64"), 2.5,
     "iteration is a float (2.5); it must be an integer"),
    ("iteration", datasets.Value("int64"), None, "iteration is null; it must be an integer"),
    ("image_descriptions", datasets.List(datasets.Value("string")), None,
     "image_descriptions is null; it must be a list of strings (or one string)"),
    ("image_keywords", datasets.List(datasets.Value("int64")), [1, 2],
     "image_keywords[0] is an int (1); it must be a list of strings (or one string)"),
    ("images", datasets.List(datasets.Value("string")), ["a.png", "b.png"],
     "images[0] is a str ('a.png'); it must be a list of images (structs of bytes and path)"),
], ids=["num_images-string", "iteration-float", "iteration-null", "descriptions-null",
        "keywords-ints", "images-strings"])
def test_hub_column_of_the_wrong_type_is_named(tmp_path, tiny_records, column, feature, value,
                                               message):
    for record in tiny_records:
        record[column] = value
    error = refusal(hub_with(tiny_records, tmp_path / "hub", **{column: feature}), tmp_path / "out")
    assert len(error.problems) == len(tiny_records)
    first = error.problems[0]
    assert "train-00000-of-00001.parquet row 0" in first and message in first


def test_hub_image_given_by_path_only_says_so(tmp_path, tiny_records):
    root = write_hub(tiny_records, tmp_path / "hub")
    path = hub_parquet_path(root)
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows[0]["images"][1] = {"bytes": None, "path": "photos/kite.png"}
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    error = refusal(root, tmp_path / "out")
    assert len(error.problems) == 1
    assert ("image 2 of 3 is given by path only ('photos/kite.png'): the hub row holds a path but "
            "no image bytes") in error.problems[0]
    assert "Fix: use the parquet files of the hub dataset itself" in error.problems[0]
    assert "no file named" not in error.problems[0]


@pytest.mark.parametrize("linked", ["file", "folder"])
def test_symlink_leaving_the_dataset_folder_is_named_with_its_target(tmp_path, tiny_records,
                                                                     linked):
    root = write_extracted(tiny_records, tmp_path / "ext")
    victim = sorted(root.glob("*/images/*/*.png"))[0]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    if linked == "file":
        target = outside / "kite.png"
        target.write_bytes(victim.read_bytes())
        link = victim
        victim.unlink()
    else:
        link = victim.parent
        target = outside / link.name
        shutil.copytree(link, target)
        shutil.rmtree(link)
    link.symlink_to(target)
    error = refusal(root, tmp_path / "out")
    relative = victim.relative_to(root).as_posix().split("/", 1)[1]
    assert (f"image path '{relative}' goes through the symlink {link} -> {target}, which leads "
            f"to {outside / 'kite.png' if linked == 'file' else target / victim.name}, outside "
            f"the dataset folder {root}. Fix: copy the image into the dataset folder in place of "
            "the link") in str(error)


def test_symlink_inside_the_dataset_folder_is_followed(tmp_path, tiny_records):
    root = write_extracted(tiny_records, tmp_path / "ext")
    victim = sorted(root.glob("*/images/*/*.png"))[0]
    kept = root / "kept.png"
    victim.replace(kept)
    victim.symlink_to(kept)
    run(root, tmp_path / "out")
    assert (tmp_path / "out" / "manifest.json").is_file()


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ('{"id": 1}', "holds a dict; it must be a JSON list of records, as extract_data.py writes it"),
    ('["a record?"]', "record 0 is a str; it must be a JSON object of the record's fields"),
], ids=["invalid-json", "object-not-list", "string-record"])
def test_malformed_extracted_file_is_named(tmp_path, tiny_records, content, message):
    root = write_extracted(tiny_records, tmp_path / "ext")
    json_file = sorted(root.glob("*/*_final.json"))[0]
    json_file.write_text(content)
    error = refusal(root, tmp_path / "out")
    assert error.problems[0].startswith(f"{json_file.relative_to(root)} ")
    assert message in error.problems[0]


def test_id_ending_in_a_newline_is_refused(tmp_path, tiny_records):
    tiny_records[0]["id"] = "7\n"
    root = write_extracted(tiny_records[:1], tmp_path / "ext")
    with pytest.raises(DataError, match=r"id '7\\n' is missing or not usable in a file name"):
        run(root, tmp_path / "out")


def test_eps_image_is_refused_by_name_and_never_rendered(tmp_path, tiny_records):
    record = first_record_with_two_images(tiny_records)
    set_image(record, hostile_images.EPS)
    out = tmp_path / "out"
    with pytest.raises(DataError) as error:
        run(write_hub(tiny_records, tmp_path / "hub"), out)
    uid = f"{record['category']}/{record['relationship_type']}/{record['id']}"
    assert f"{uid} (data/train-00000-of-00001.parquet row " in str(error.value)
    assert ("image 2 of 2 is in EPS format; only PNG, JPEG, WEBP, GIF, BMP, TIFF images are "
            "accepted, as other formats can run code or hang when decoded. Fix: convert it to "
            "PNG") in str(error.value)
    assert_nothing_written(out)


#: Bytes that ``hang_on_marker`` decodes forever, standing in for a decoder bug a file triggers.
HANGS = png_bytes((9, 9), "green")


def hang_on_marker(data: bytes, max_pixels: int):
    """``check_image``, except that it never returns for ``HANGS`` (runs in the forked worker)."""
    if data == HANGS:
        time.sleep(3600)
    return check_image(data, max_pixels)


def test_an_image_that_hangs_the_decoder_is_refused_after_the_time_limit(tmp_path, tiny_records,
                                                                         monkeypatch):
    monkeypatch.setattr(validate, "check_image", hang_on_marker)
    monkeypatch.setattr(prepare_module, "ImageDecoder",
                        functools.partial(ImageDecoder, timeout_s=1))
    record = first_record_with_two_images(tiny_records)
    set_image(record, HANGS)
    out = tmp_path / "out"
    started = time.monotonic()
    with pytest.raises(DataError) as error:
        run(write_hub(tiny_records, tmp_path / "hub"), out)
    assert time.monotonic() - started < 30
    uid = f"{record['category']}/{record['relationship_type']}/{record['id']}"
    assert error.value.problems == [
        f"{uid} (data/train-00000-of-00001.parquet row {tiny_records.index(record)}): image 2 of "
        "2 did not finish decoding in 1 s (the decoder hung or crashed) and was refused. Fix: "
        "re-encode it as PNG"]  # the only problem: the images after it were decoded as usual
    assert_nothing_written(out)


@pytest.mark.parametrize("data, message", [
    (hostile_images.huge_declared_png(5000),
     "image 2 of 2 is 5000x5000 = 25,000,000 pixels, over dataset.max_image_pixels = 1,000,000"),
    (b"%PDF-1.4\n%%EOF\n", "image 2 of 2 is not a readable image (unknown or corrupt format; "
                          "accepted: PNG, JPEG, WEBP, GIF, BMP, TIFF)"),
], ids=["huge declared size", "pdf"])
def test_more_hostile_images_are_named(tmp_path, tiny_records, data, message):
    set_image(first_record_with_two_images(tiny_records), data)
    out = tmp_path / "out"
    with pytest.raises(DataError) as error:
        run(write_hub(tiny_records, tmp_path / "hub"), out)
    assert message in str(error.value)
    assert_nothing_written(out)
