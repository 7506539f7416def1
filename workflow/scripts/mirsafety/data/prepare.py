"""Turn any dataset source into the one validated form every later stage reads.

Output folder: ``instances.jsonl`` (one record per instance, canonical order), ``images/``
(``{category}/{relation}/{id}_{k}.{ext}``, the source bytes unchanged) and ``manifest.json``
(counts, expected-vs-found, sha256 of every file and of every image's decoded pixels,
provenance). Everything is written to a staging folder first and moved into place only when the
whole dataset passed, so a failed run never leaves a declared output behind; the staging folder
is removed on any failure, and a run killed outright leaves it to be removed by the next run.
"""

import hashlib
import json
import logging
import shutil
from collections import Counter
from pathlib import Path

import PIL
import pyarrow
from tqdm import tqdm

from mirsafety.core.errors import DataError
from mirsafety.core.records import software_versions
from mirsafety.core.taxonomy import (
    CATEGORIES,
    PUBLISHED_RELATION_COUNTS,
    PUBLISHED_TOTAL,
    RELATION_GROUPS,
    RELATIONS,
    instance_uid,
    sort_key,
)
from mirsafety.data.sources import RawInstance, open_source
from mirsafety.data.validate import ImageDecoder, ImageProblem, check_fields, text_list

log = logging.getLogger(__name__)

OUTPUTS = ("instances.jsonl", "images", "manifest.json")


def expected_counts(dataset: str, spec: dict | None = None) -> dict:
    """What a complete dataset holds: the sample's spec, or the paper's published counts."""
    if dataset == "sample":
        per_cell = spec["instances_per_cell"]
        return {
            "basis": "sample spec (instances_per_cell)",
            "total": per_cell * len(CATEGORIES) * len(RELATIONS),
            "by_relation": {r: per_cell * len(CATEGORIES) for r in RELATIONS},
            "by_cell": {f"{c}/{r}": per_cell for c in CATEGORIES for r in RELATIONS},
        }
    return {
        "basis": "published (Chen et al. 2026, arXiv 2601.14127)",
        "total": PUBLISHED_TOTAL,
        "by_relation": dict(PUBLISHED_RELATION_COUNTS),
    }


def count_instances(records: list[dict]) -> dict:
    cells = Counter(f"{r['category']}/{r['relation']}" for r in records)
    return {
        "total": len(records),
        "by_relation": {r: sum(x["relation"] == r for x in records) for r in RELATIONS},
        "by_category": {c: sum(x["category"] == c for x in records) for c in CATEGORIES},
        "by_cell": {f"{c}/{r}": cells[f"{c}/{r}"] for c in CATEGORIES for r in RELATIONS},
    }


def compare_counts(found: dict, expected: dict) -> list[str]:
    """One line per count that differs from what was expected."""
    differences = []
    if found["total"] != expected["total"]:
        differences.append(f"total: expected {expected['total']}, found {found['total']}")
    for level in ("by_relation", "by_cell"):
        for key, want in (expected.get(level) or {}).items():
            if found[level].get(key, 0) != want:
                differences.append(f"{key}: expected {want}, found {found[level].get(key, 0)}")
    return differences


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _prepare_instance(raw: RawInstance, staging: Path, decoder: ImageDecoder):
    """Validate one instance and write its images; return (record, problems)."""
    fields = raw.fields
    problems = raw.problems + check_fields(fields)
    if problems:
        return None, problems
    uid = instance_uid(fields["category"], fields["relationship_type"], fields["id"])
    image_paths, image_hashes, pixel_hashes = [], [], []
    for k, ref in enumerate(raw.images, start=1):
        try:
            if ref.problem:
                raise ImageProblem(ref.problem)
            data = ref.read()
            checked = decoder.check(data)
        except (ImageProblem, FileNotFoundError) as error:
            problems.append(f"image {k} of {len(raw.images)} {error}")
            continue
        relative = Path(
            "images", fields["category"], fields["relationship_type"],
            f"{fields['id']}_{k}.{checked.extension}",
        )
        (staging / relative).parent.mkdir(parents=True, exist_ok=True)
        (staging / relative).write_bytes(data)
        image_paths.append(relative.as_posix())
        image_hashes.append(sha256(data))
        pixel_hashes.append(checked.pixel_sha256)
    record = {
        "uid": uid,
        "id": str(fields["id"]),
        "category": fields["category"],
        "relation": fields["relationship_type"],
        "relation_group": RELATION_GROUPS[fields["relationship_type"]],
        "original_question": fields["original_question"],
        "revised_prompt": fields["revised_prompt"],
        "image_descriptions": text_list(fields["image_descriptions"]),
        "image_keywords": text_list(fields["image_keywords"]),
        "num_images": len(image_paths),
        "images": image_paths,
        "image_sha256": image_hashes,
        "image_pixel_sha256": pixel_hashes,
        "iteration": fields["iteration"],
    }
    return record, problems


def _collect(source, staging: Path, max_pixels: int) -> list[dict]:
    """Validate every instance, writing images to ``staging``; raise listing every problem."""
    records, problems, first_seen = [], [], {}
    with ImageDecoder(max_pixels) as decoder:
        for raw in tqdm(source.records, total=source.count, desc="prepare", unit="instance",
                        mininterval=2.0):
            record, found = _prepare_instance(raw, staging, decoder)
            uid = record["uid"] if record else None
            label = f"{uid} ({raw.origin})" if uid else raw.origin
            problems += [f"{label}: {p}" for p in found]
            if uid in first_seen:
                problems.append(
                    f"{uid}: duplicate id (first at {first_seen[uid]}, again at {raw.origin}); "
                    "ids must be unique within a category x relation"
                )
            elif record:  # a duplicate is named even when its first copy has problems too
                first_seen[uid] = raw.origin
                if not found:
                    records.append(record)
    if problems:
        raise DataError(f"{len(problems)} problem(s) in {source.root}:", problems)
    return sorted(records, key=lambda r: sort_key(r["category"], r["relation"], r["id"]))


def source_provenance(source_dir, given: dict) -> dict:
    """Provenance from the config plus what the download recorded (the resolved commit)."""
    recorded = Path(source_dir, "source.json")
    extra = json.loads(recorded.read_text()) if recorded.is_file() else {}
    return {**given, **extra}


def _publish(staging: Path, out_dir: Path) -> None:
    """Move the finished files into place, the manifest last (it marks a complete dataset)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        target = out_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        (staging / name).replace(target)
    shutil.rmtree(staging)


def prepare(source_dir, out_dir, *, dataset: str, split: str, max_image_pixels: int,
            expected: dict, enforce_counts: bool, provenance: dict) -> dict:
    """Validate ``source_dir`` and write the prepared dataset to ``out_dir``; return the manifest.

    ``provenance`` (source kind, repository, revision, spec hash …) is copied into the manifest.
    Raises DataError, naming every bad instance, and then writes nothing.
    """
    out_dir = Path(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "images").mkdir(parents=True)
    try:
        source = open_source(source_dir, split)
        log.info("reading %d instance(s) from %s (%s layout)", source.count, source_dir,
                 source.kind)
        records = _collect(source, staging, max_image_pixels)
        found = count_instances(records)
        differences = compare_counts(found, expected)
        if differences and enforce_counts:
            raise DataError(
                f"{dataset}: instance counts differ from the expected ones ({expected['basis']}). "
                "Fix: use the complete dataset, or set dataset.check_published_counts: false to "
                "run on a subset on purpose:",
                differences,
            )
        for line in differences:
            log.warning("count differs from %s: %s", expected["basis"], line)
        lines = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
        (staging / "instances.jsonl").write_text(lines, encoding="utf-8")
        manifest = {
            "dataset": dataset,
            "source": {"kind": source.kind, "path": str(source_dir), "split": split,
                       **source_provenance(source_dir, provenance)},
            "software": software_versions(PIL, pyarrow),
            "counts": found,
            "expected": expected,
            "count_check": {
                "status": "mismatch" if differences else "ok",
                "enforced": enforce_counts,
                "differences": differences,
            },
            "n_images": sum(r["num_images"] for r in records),
            "files": {"instances.jsonl": sha256(lines.encode("utf-8"))},
            "images": {p: h for r in records for p, h in zip(r["images"], r["image_sha256"])},
            "image_pixel_sha256": {p: h for r in records
                                   for p, h in zip(r["images"], r["image_pixel_sha256"])},
        }
        (staging / "manifest.json").write_text(
            json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8"
        )
        _publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("prepared %d instance(s), %d image(s) in %s", found["total"], manifest["n_images"],
             out_dir)
    return manifest
