"""The resumable-shard loop every stage shares: what is done stays done, even across a kill."""

import json

import pytest

from mirsafety.core.ledger import ITEM_KEY, ledger_path, read_ledger, run_resumable
from mirsafety.core.records import settings_key

SETTINGS = {"k": 1}
ITEMS = [{"uid": f"u{k}", "prompt": f"p{k}"} for k in range(5)]


class Killed(Exception):
    """Stands in for the job dying mid-shard."""


class Worker:
    """Marks each item ``ok`` (or what ``status`` says), records the batches it was given, and
    dies after ``die_after`` records when told to."""

    def __init__(self, status=None, die_after=None):
        self.status, self.die_after = status or {}, die_after
        self.batches, self.made = [], 0

    def __call__(self, batch):
        self.batches.append([item["uid"] for item in batch])
        for item in batch:
            if self.made == self.die_after:
                raise Killed
            self.made += 1
            yield {"uid": item["uid"], "status": self.status.get(item["uid"], "ok")}


def run(tmp_path, worker, *, items=ITEMS, settings=SETTINGS, prefilled=None, seen=None):
    """The shard of ``items`` in batches of two, keyed by their prompt, an ``ok`` record
    standing; ``seen`` collects what was announced as (total, to do)."""
    seen = [] if seen is None else seen
    return run_resumable(
        items, worker, item_key=lambda item: item["prompt"], out_path=tmp_path / "shard.jsonl",
        meta_path=tmp_path / "shard.meta.json", settings=settings, count_field="status",
        is_done=lambda record: record.get("status") == "ok",
        announce=lambda total, todo: seen.append((total, todo)),
        batch_size=2, progress="test", prefilled=prefilled)


def shard(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "shard.jsonl").read_text().splitlines()]


def ledger_uids(tmp_path) -> list[str]:
    lines = ledger_path(tmp_path / "shard.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"ledger_key": settings_key(SETTINGS)}
    return [json.loads(line)["uid"] for line in lines[1:]]


def test_every_item_processed_in_batches_and_written_in_order(tmp_path):
    worker, seen = Worker(), []
    meta = run(tmp_path, worker, seen=seen)
    assert worker.batches == [["u0", "u1"], ["u2", "u3"], ["u4"]]
    assert seen == [(5, 5)]
    assert [r["uid"] for r in shard(tmp_path)] == [i["uid"] for i in ITEMS]
    assert meta["status_counts"] == {"ok": 5} and meta["n_items"] == 5
    assert meta["settings_key"] == settings_key(SETTINGS)
    assert ledger_uids(tmp_path) == [i["uid"] for i in ITEMS]


def test_killed_midway_keeps_what_was_finished_and_does_not_redo_it(tmp_path):
    with pytest.raises(Killed):
        run(tmp_path, Worker(die_after=3))
    assert not (tmp_path / "shard.jsonl").exists()
    assert ledger_uids(tmp_path) == ["u0", "u1", "u2"]
    worker, seen = Worker(), []
    run(tmp_path, worker, seen=seen)
    assert seen == [(5, 2)]
    assert worker.batches == [["u3", "u4"]]
    assert [r["uid"] for r in shard(tmp_path)] == [i["uid"] for i in ITEMS]
    assert ledger_uids(tmp_path) == [i["uid"] for i in ITEMS]


def test_items_not_done_by_the_predicate_are_redone_and_the_latest_record_wins(tmp_path):
    run(tmp_path, Worker(status={"u1": "failed"}))
    worker = Worker()
    meta = run(tmp_path, worker)
    assert worker.batches == [["u1"]]
    assert meta["status_counts"] == {"ok": 5}
    assert shard(tmp_path)[1]["status"] == "ok"


def test_prefilled_records_are_final_and_stay_out_of_the_ledger(tmp_path):
    prefilled = {"u2": {"uid": "u2", "status": "skipped"}}
    worker = Worker()
    meta = run(tmp_path, worker, prefilled=prefilled)
    assert worker.batches == [["u0", "u1"], ["u3", "u4"]]
    assert shard(tmp_path)[2] == prefilled["u2"]
    assert meta["status_counts"] == {"ok": 4, "skipped": 1}
    assert "u2" not in ledger_uids(tmp_path)


def test_a_ledger_made_with_other_settings_is_not_used(tmp_path):
    run(tmp_path, Worker())
    worker = Worker()
    run(tmp_path, worker, settings={"k": 2})
    assert sum(worker.batches, []) == [i["uid"] for i in ITEMS]
    assert len(read_ledger(ledger_path(tmp_path / "shard.jsonl"), settings_key({"k": 2}))) == 5


def test_a_finished_shard_asks_for_nothing(tmp_path):
    run(tmp_path, Worker())
    worker, seen = Worker(), []
    run(tmp_path, worker, seen=seen)
    assert worker.batches == [] and seen == [(5, 0)]


def edited(uid: str) -> list[dict]:
    """ITEMS with the prompt of ``uid`` changed."""
    return [{**item, "prompt": "edited"} if item["uid"] == uid else item for item in ITEMS]


def test_an_item_whose_request_changed_is_redone_and_only_it(tmp_path):
    run(tmp_path, Worker())
    worker, seen = Worker(), []
    run(tmp_path, worker, items=edited("u3"), seen=seen)
    assert worker.batches == [["u3"]] and seen == [(5, 1)]
    again = Worker()
    run(tmp_path, again, items=edited("u3"))
    assert again.batches == []  # the redone record now stands for the edited request
    worker = Worker()
    run(tmp_path, worker)  # back to the original prompt: redone again, never the stale answer
    assert worker.batches == [["u3"]]


def test_each_ledger_line_carries_its_item_key_and_the_shard_does_not(tmp_path):
    run(tmp_path, Worker())
    records = read_ledger(ledger_path(tmp_path / "shard.jsonl"), settings_key(SETTINGS))
    assert {uid: r[ITEM_KEY] for uid, r in records.items()} == {i["uid"]: i["prompt"]
                                                                for i in ITEMS}
    assert all(ITEM_KEY not in record for record in shard(tmp_path))


def test_a_record_without_an_item_key_is_redone(tmp_path):
    """A ledger written before records carried their request's key cannot vouch for them."""
    ledger = ledger_path(tmp_path / "shard.jsonl")
    ledger.write_text(json.dumps({"ledger_key": settings_key(SETTINGS)}) + "\n"
                      + json.dumps({"uid": "u1", "status": "ok"}) + "\n")
    worker = Worker()
    run(tmp_path, worker)
    assert sum(worker.batches, []) == [i["uid"] for i in ITEMS]
