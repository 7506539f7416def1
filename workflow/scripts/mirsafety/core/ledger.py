"""The resume ledger: an append-only side file of finished items, safe against SIGKILL.

Snakemake deletes a job's declared outputs before re-running it, so progress lives in this
undeclared file beside the shard. Each item is one line, written and fsynced as soon as it is
done; a kill can only tear the line in flight, which the next run cuts off. The first line holds
a key of the settings the items were made with: a ledger made with other settings is discarded,
never mixed in.
"""

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def ledger_path(shard_path) -> Path:
    shard_path = Path(shard_path)
    return shard_path.with_name(f".{shard_path.stem}.progress.jsonl")


def read_ledger(path: Path, key: str) -> dict[str, dict]:
    """Items finished by earlier runs with the same settings, the latest record per uid."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        log.warning("%s: cutting off a torn last line (a run was killed mid-write)", path)
        with open(path, "r+b") as handle:
            handle.truncate(len(complete))
    lines = complete.decode("utf-8").splitlines()
    if not lines or json.loads(lines[0]).get("ledger_key") != key:
        log.warning("%s was made with other settings; starting this shard afresh", path)
        path.unlink()
        return {}
    records = {}
    for line in lines[1:]:
        record = json.loads(line)
        records[record["uid"]] = record
    return records


class LedgerWriter:
    """Appends records, one durable line each."""

    def __init__(self, path: Path, key: str):
        new = not path.exists()
        self.handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if new:
            self.write({"ledger_key": key})

    def write(self, record: dict) -> None:
        self.handle.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()
