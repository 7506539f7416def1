"""The resume ledger: an append-only side file of finished items, safe against SIGKILL.

Snakemake deletes a job's declared outputs before re-running it, so progress lives in this
undeclared file beside the shard. Each item is one line, written and fsynced as soon as it is
done; a kill can only tear the line in flight, which the next run cuts off. The first line holds
a key of the settings the whole shard was made with: a ledger made with other settings is
discarded, never mixed in. Each item's line also holds a key of its own request (what the model
or judge was asked about that item): the settings cannot see an edit to one prompt, image or
answer, so a record made for another request than the item's current one is redone, never reused.

``run_resumable`` is the one loop the resumable stages (generation, judging, entropy) share.
"""

import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from tqdm import tqdm

from mirsafety.core.records import settings_key, write_shard

log = logging.getLogger(__name__)

#: The field of a ledger line that holds the key of the request its record answers (the shard's
#: records themselves do not carry it).
ITEM_KEY = "item_key"
#: Stale uids named in the warning, at most.
NAMED = 5


def ledger_path(shard_path) -> Path:
    shard_path = Path(shard_path)
    return shard_path.with_name(f".{shard_path.stem}.progress.jsonl")


def read_ledger(path: Path, key: str) -> dict[str, dict]:
    """Items finished by earlier runs with the same settings, the latest line per uid (a record
    with the ``ITEM_KEY`` it was made for; ``current_records`` keeps those still valid)."""
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


def current_records(stored: dict[str, dict], keys: dict[str, str], ledger: Path) -> dict[str, dict]:
    """The ledger records made for each item's current request (``keys``: uid to item key),
    without their key. The others were made for an edited prompt, image or answer, or before
    records carried a key; they are dropped, with a warning naming them, so their items are redone.
    """
    current, stale = {}, []
    for uid, line in stored.items():
        record = {field: value for field, value in line.items() if field != ITEM_KEY}
        if line.get(ITEM_KEY) == keys.get(uid):
            current[uid] = record
        elif uid in keys:
            stale.append(uid)
    if stale:
        log.warning("%s: %d item(s) were done for another request than their current one (the "
                    "prepared data, the answers or the workflow changed since); doing them "
                    "again: %s%s", ledger, len(stale), ", ".join(stale[:NAMED]),
                    ", ..." if len(stale) > NAMED else "")
    return current


def run_resumable(items: list[dict], process: Callable[[list[dict]], Iterable[dict]], *,
                  item_key: Callable[[dict], str], out_path, meta_path, settings: dict,
                  count_field: str, is_done: Callable[[dict], bool],
                  announce: Callable[[int, int], None],
                  batch_size: int, progress: str, unit: str = "item",
                  prefilled: dict[str, dict] | None = None) -> dict:
    """Finish every item of a shard that earlier runs under ``settings`` left undone; write the
    shard (one record per item, in order) and its meta; return the meta.

    ``item_key(item)`` is a key of what the item's record depends on beyond ``settings``: what
    the model or judge is asked about it. A ledger record stands only for the key it was made
    with. ``is_done`` says whether an item's latest ledger record (``{}`` when none) can stand.
    ``prefilled`` holds records that are final without processing (say, for items that cannot be
    processed): they win over the ledger and are not written to it. ``process`` gets the rest in
    batches of ``batch_size`` and yields one record per item, in order; each is made durable
    before the next, so a kill loses at most the batch in flight. ``announce(total, todo)`` logs
    the plan in the stage's own words; ``progress`` and ``unit`` label the progress bar.
    """
    ledger = ledger_path(out_path)
    key = settings_key(settings)
    keys = {item["uid"]: item_key(item) for item in items}
    prefilled = prefilled or {}
    done = {**current_records(read_ledger(ledger, key), keys, ledger), **prefilled}
    todo = [item for item in items
            if item["uid"] not in prefilled and not is_done(done.get(item["uid"], {}))]
    announce(len(items), len(todo))
    writer = LedgerWriter(ledger, key)
    try:
        with tqdm(total=len(todo), desc=progress, unit=unit) as bar:
            for start in range(0, len(todo), batch_size):
                batch = todo[start:start + batch_size]
                for item, record in zip(batch, process(batch), strict=True):
                    writer.write({**record, ITEM_KEY: keys[item["uid"]]})
                    done[item["uid"]] = record
                bar.update(len(batch))
    finally:
        writer.close()
    return write_shard(out_path, meta_path, [done[i["uid"]] for i in items], settings,
                       count_field)
