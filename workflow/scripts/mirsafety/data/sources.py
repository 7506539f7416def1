"""Readers for the three places the benchmark can come from, yielding one uniform record type.

A hub snapshot (a real download, or the embedded sample written in the same format) and a folder
written by the authors' ``extract_data.py`` look different on disk; after this module they are
the same stream of ``RawInstance`` objects, so validation and output have one code path.
"""

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pyarrow.parquet as pq

from mirsafety.core.errors import DataError
from mirsafety.data.validate import FIELDS, IMAGE_LISTS, field_problem

HUB_COLUMNS = (*FIELDS, "images")


@dataclass
class ImageRef:
    """One image of an instance: embedded bytes (hub) or a file path (extracted layout).

    ``problem`` is set when the reference itself is unusable (e.g. a path that escapes the
    dataset folder, or a hub image without bytes); the bytes are then never read.
    """

    data: bytes | None = None
    path: Path | None = None
    problem: str | None = None

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        if self.path is None:
            raise FileNotFoundError("is missing (no bytes embedded and no file named)")
        if not self.path.is_file():
            raise FileNotFoundError(f"is missing (file not found: {self.path})")
        return self.path.read_bytes()


@dataclass
class RawInstance:
    """One record as found in the source, before validation; ``origin`` locates it for errors."""

    fields: dict
    images: list[ImageRef]
    origin: str
    problems: list[str] = field(default_factory=list)


@dataclass
class Source:
    """A located dataset: its layout, its size (for progress bars) and a record iterator."""

    kind: str
    root: Path
    count: int
    records: Iterator[RawInstance]


def split_parquet_files(root: Path, split: str) -> list[Path]:
    """Parquet files of one split, found as ``datasets.load_dataset(root, split=split)`` finds
    them (its own layout rules: data/ shards, split-named files or folders, converter refs, or
    one split holding every file), so any layout the hub serves is read."""
    from datasets.data_files import get_data_patterns, resolve_pattern
    from datasets.exceptions import DataFilesNotFoundError

    base = Path(root).resolve()  # datasets answers with absolute paths; give back root's form
    try:
        patterns = {str(name): p for name, p in get_data_patterns(str(base)).items()}
    except (DataFilesNotFoundError, FileNotFoundError):
        return []
    files = set()
    for pattern in patterns.get(split, []):
        try:
            found = resolve_pattern(pattern, base_path=str(base), allowed_extensions=[".parquet"])
        except FileNotFoundError:  # a pattern of the split that matches nothing here
            continue
        files.update(Path(root) / Path(f).relative_to(base) for f in found)
    return sorted(files)


def _hub_records(files: list[Path], root: Path) -> Iterator[RawInstance]:
    for path in files:
        parquet = pq.ParquetFile(path)
        missing = [c for c in HUB_COLUMNS if c not in parquet.schema_arrow.names]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {', '.join(missing)}; a MIR-SafetyBench parquet file "
                f"has {', '.join(HUB_COLUMNS)}. Fix: point dataset.local_path at the benchmark's "
                "own snapshot."
            )
        row = 0
        for batch in parquet.iter_batches(batch_size=8, columns=list(HUB_COLUMNS)):
            for record in batch.to_pylist():
                origin = f"{path.relative_to(root)} row {row}"
                yield _raw_instance(record, "hub_parquet", _hub_image, origin)
                row += 1


def _raw_instance(record: dict, layout: str, image_ref: Callable[..., ImageRef], origin: str,
                  problems=()) -> RawInstance:
    """The record's fields, and its images made into references by ``image_ref`` only once
    their field has the layout's type (a string of paths must not be read letter by letter)."""
    fields = {key: record[key] for key in FIELDS if key in record}
    problem = field_problem("images", record, IMAGE_LISTS[layout])
    images = [] if problem else [image_ref(image) for image in record["images"]]
    fields["image_count"] = None if problem else len(images)
    return RawInstance(fields, images, origin, [*problems, *([problem] if problem else [])])


def _hub_image(image: dict | None) -> ImageRef:
    """A hub image struct; one holding a path but no bytes cannot be read from the snapshot."""
    image = image or {}
    if image.get("bytes") is None and image.get("path"):
        return ImageRef(problem=(
            f"is given by path only ('{image['path']}'): the hub row holds a path but no image "
            "bytes, and that path means nothing outside the machine that wrote the file. Fix: "
            "use the parquet files of the hub dataset itself, which embed the bytes, or rewrite "
            "this file with each image's bytes in it"
        ))
    return ImageRef(data=image.get("bytes"))


def _resolve_extracted_image(relative: str, json_dir: Path, root: Path) -> ImageRef:
    """Image paths in the extracted layout are relative to the category folder (or the root)."""
    candidates = [(json_dir / relative), (root / relative)]
    for candidate in candidates:
        resolved = candidate.resolve()
        if not resolved.is_relative_to(root.resolve()):
            return ImageRef(problem=_outside(relative, candidate, root))
        if resolved.is_file():
            return ImageRef(path=resolved)
    return ImageRef(path=candidates[0])


def _outside(relative: str, candidate: Path, root: Path) -> str:
    """Why an image path leads out of ``root``: by its own text, or through a symlink in the
    folder, which is named with its target (a link looks like an ordinary file to a user)."""
    link = _first_symlink(candidate, root)
    if link is None:
        return f"image path '{relative}' leaves the dataset folder {root}"
    return (f"image path '{relative}' goes through the symlink {link} -> {os.readlink(link)}, "
            f"which leads to {candidate.resolve()}, outside the dataset folder {root}. Fix: "
            "copy the image into the dataset folder in place of the link")


def _first_symlink(candidate: Path, root: Path) -> Path | None:
    """The first symlink on ``candidate``'s way down from ``root``; None when there is none."""
    depth = len(root.parts)
    if candidate.parts[:depth] != root.parts:
        return None
    for end in range(depth + 1, len(candidate.parts) + 1):
        step = Path(*candidate.parts[:end])
        if step.is_symlink():
            return step
    return None


def _extracted_files(root: Path) -> list[Path]:
    return sorted(root.glob("*/*_final.json"))


def _load_extracted(files: list[Path], root: Path) -> dict[Path, list[dict]]:
    """Each ``_final.json`` file's records; raise naming every file that is not a JSON list of
    records (objects), before any record is read."""
    loaded, problems = {}, []
    for path in files:
        name = path.relative_to(root)
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            problems.append(f"{name} is not valid JSON ({error})")
            continue
        if not isinstance(records, list):
            problems.append(f"{name} holds a {type(records).__name__}; it must be a JSON list "
                            "of records, as extract_data.py writes it")
            continue
        problems += [f"{name} record {index} is a {type(record).__name__}; it must be a JSON "
                     "object of the record's fields" for index, record in enumerate(records)
                     if not isinstance(record, dict)]
        loaded[path] = records
    if problems:
        raise DataError(f"{len(problems)} malformed file(s) or record(s) in {root}:", problems)
    return loaded


def _extracted_records(loaded: dict[Path, list[dict]], root: Path) -> Iterator[RawInstance]:
    for path, records in loaded.items():
        relation = path.name.removesuffix("_final.json")
        for index, record in enumerate(records):
            problems = []
            if record.get("relationship_type") not in (None, relation):
                problems.append(
                    f"relationship_type '{record['relationship_type']}' disagrees with its file "
                    f"name ({relation}); fix the record or move it to the right file"
                )
            resolve = partial(_resolve_extracted_image, json_dir=path.parent, root=root)
            raw = _raw_instance(record, "extracted", resolve,
                                f"{path.relative_to(root)} record {index}", problems)
            raw.fields.update(category=path.parent.name, relationship_type=relation)
            yield raw


def open_source(root, split: str = "train") -> Source:
    """Detect the layout of ``root`` and return its record stream; fail if it is neither."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"dataset folder {root} does not exist. Fix: set dataset.local_path to a hub snapshot "
            "folder or an extract_data.py output folder, or use dataset.name: sample."
        )
    extracted = _extracted_files(root)
    if extracted:
        loaded = _load_extracted(extracted, root)
        count = sum(len(records) for records in loaded.values())
        return Source("extracted", root, count, _extracted_records(loaded, root))
    parquet = split_parquet_files(root, split)
    if parquet:
        count = sum(pq.ParquetFile(p).metadata.num_rows for p in parquet)
        return Source("hub_parquet", root, count, _hub_records(parquet, root))
    raise FileNotFoundError(
        f"no MIR-SafetyBench data found in {root}: expected parquet files of split '{split}' "
        "(a hub snapshot, e.g. data/train-00000-of-00001.parquet) or {Category}/{Relation}"
        "_final.json files written by the authors' extract_data.py."
    )
