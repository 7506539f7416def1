"""Readers for the three places the benchmark can come from, yielding one uniform record type.

A hub snapshot (a real download, or the embedded sample written in the same format) and a folder
written by the authors' ``extract_data.py`` look different on disk; after this module they are
the same stream of ``RawInstance`` objects, so validation and output have one code path.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

HUB_COLUMNS = (
    "id",
    "category",
    "relationship_type",
    "original_question",
    "revised_prompt",
    "image_descriptions",
    "image_keywords",
    "num_images",
    "images",
    "iteration",
)


@dataclass
class ImageRef:
    """One image of an instance: embedded bytes (hub) or a file path (extracted layout).

    ``problem`` is set when the reference itself is unusable (e.g. a path that escapes the
    dataset folder); the bytes are then never read.
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

    try:
        patterns = {str(name): p for name, p in get_data_patterns(str(root)).items()}
    except (DataFilesNotFoundError, FileNotFoundError):
        return []
    files = set()
    for pattern in patterns.get(split, []):
        try:
            found = resolve_pattern(pattern, base_path=str(root), allowed_extensions=[".parquet"])
        except FileNotFoundError:  # a pattern of the split that matches nothing here
            continue
        files.update(Path(f) for f in found)
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
                images = [ImageRef(data=(img or {}).get("bytes")) for img in record["images"] or []]
                fields = {k: v for k, v in record.items() if k != "images"}
                fields["image_count"] = len(images)
                yield RawInstance(fields, images, f"{path.relative_to(root)} row {row}")
                row += 1


def _resolve_extracted_image(relative: str, json_dir: Path, root: Path) -> ImageRef:
    """Image paths in the extracted layout are relative to the category folder (or the root)."""
    candidates = [(json_dir / relative), (root / relative)]
    for candidate in candidates:
        resolved = candidate.resolve()
        if not resolved.is_relative_to(root.resolve()):
            return ImageRef(problem=f"image path '{relative}' leaves the dataset folder {root}")
        if resolved.is_file():
            return ImageRef(path=resolved)
    return ImageRef(path=candidates[0])


def _extracted_files(root: Path) -> list[Path]:
    return sorted(root.glob("*/*_final.json"))


def _extracted_records(files: list[Path], root: Path) -> Iterator[RawInstance]:
    for path in files:
        relation = path.name.removesuffix("_final.json")
        for index, record in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            origin = f"{path.relative_to(root)} record {index}"
            paths = record.get("images") or []
            images = [_resolve_extracted_image(str(p), path.parent, root) for p in paths]
            fields = {k: record.get(k) for k in HUB_COLUMNS if k != "images"}
            fields["category"] = path.parent.name
            fields["image_count"] = len(images)
            problems = []
            if fields["relationship_type"] not in (None, relation):
                problems.append(
                    f"relationship_type '{fields['relationship_type']}' disagrees with its file "
                    f"name ({relation}); fix the record or move it to the right file"
                )
            fields["relationship_type"] = relation
            yield RawInstance(fields, images, origin, problems)


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
        count = sum(len(json.loads(p.read_text(encoding="utf-8"))) for p in extracted)
        return Source("extracted", root, count, _extracted_records(extracted, root))
    parquet = split_parquet_files(root, split)
    if parquet:
        count = sum(pq.ParquetFile(p).metadata.num_rows for p in parquet)
        return Source("hub_parquet", root, count, _hub_records(parquet, root))
    raise FileNotFoundError(
        f"no MIR-SafetyBench data found in {root}: expected parquet files of split '{split}' "
        "(a hub snapshot, e.g. data/train-00000-of-00001.parquet) or {Category}/{Relation}"
        "_final.json files written by the authors' extract_data.py."
    )
