"""Reading and writing the stages' files: jsonl records, atomic writes, hashes, provenance keys."""

import hashlib
import json
import os
import platform
from importlib.metadata import version as distribution_version
from pathlib import Path


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_atomic(path, text: str) -> None:
    """Write via a hidden partial file and a rename, so a reader never sees half a file."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def write_jsonl(path, records: list[dict]) -> None:
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n"
                               for r in records))


def write_json(path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def settings_key(settings: dict) -> str:
    """A stable hash of the settings an output depends on (its provenance key)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


#: What a module is recorded as, where its import name is not its distribution's.
_DISTRIBUTIONS = {"PIL": "pillow"}


def software_versions(*modules) -> dict:
    """Python's version and each given module's ``__version__``, for an output's provenance."""
    versions = {"python": platform.python_version()}
    for module in modules:
        versions[_DISTRIBUTIONS.get(module.__name__, module.__name__)] = module.__version__
    return versions


def model_stack_versions() -> dict:
    """The versions a model stage's output depends on, read from the installed distributions'
    metadata rather than by importing them: a judge job that runs no model (refusal matching)
    writes its shard without paying for a torch import."""
    return {"python": platform.python_version(),
            **{name: distribution_version(name) for name in ("torch", "transformers", "pillow")}}


def write_shard(out_path, meta_path, records: list[dict], settings: dict, count_field: str) -> dict:
    """A finished shard: its records, then its provenance (the settings, their key, the counts of
    ``count_field`` over the records, package versions). Returns the provenance."""
    counts = {}
    for record in records:
        counts[record[count_field]] = counts.get(record[count_field], 0) + 1
    meta = {**settings, "settings_key": settings_key(settings), "n_items": len(records),
            f"{count_field}_counts": dict(sorted(counts.items())), "software": model_stack_versions()}
    write_jsonl(out_path, records)
    write_json(meta_path, meta)
    return meta
