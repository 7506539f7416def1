"""The generation loop: shards, records, the resume ledger, and failures that are kept, not lost."""

import json
from dataclasses import replace

import pytest
from PIL import Image

from mirsafety.core.ledger import ledger_path, read_ledger
from mirsafety.core.records import settings_key
from mirsafety.core.shards import parse_shard, shard_name, shard_slice
from mirsafety.generation.generate import run_shard
from mirsafety.models.backend import Backend, Result
from mirsafety.models.record import make_record

MODEL = {"batch_size": 2, "thinking": "auto", "single_image": False, "system_prompt": "sys",
         "image_pixels": {"min": None, "max": None}}


class ScriptedBackend(Backend):
    """Answers '<think>t</think>answer to UID', fails the uids it is told to; logs what it saw."""

    def __init__(self, fail=()):
        self.fail, self.seen, self.prompts = set(fail), [], []

    def generate(self, requests):
        self.seen += [r.uid for r in requests]
        self.prompts += [r.prompt for r in requests]
        return [Result(r.uid, "failed", error="scripted failure") if r.uid in self.fail else
                Result(r.uid, "ok", raw_output=f"<think>t</think>answer to {r.uid}",
                       image_tokens=4 * len(r.images)) for r in requests]


@pytest.fixture
def dataset(tmp_path):
    Image.new("RGB", (8, 8), "red").save(tmp_path / "a.png")
    instances = [{"uid": f"Violence/Analogy/{k}", "revised_prompt": f"p{k}",
                  "images": ["a.png", "a.png"]} for k in range(5)]
    return tmp_path, instances


def run(dataset, backend, settings=None, out="shard.jsonl", condition="multi_image"):
    root, instances = dataset
    return run_shard(instances, root, backend, model_name="m", model=MODEL,
                     settings=settings or {"k": 1}, out_path=root / out,
                     meta_path=root / "shard.meta.json", condition=condition)


def records(root, out="shard.jsonl"):
    return [json.loads(line) for line in (root / out).read_text().splitlines()]


def test_shard_names_and_contiguous_slices():
    assert shard_name(3, 12) == "003-of-012"
    assert parse_shard("003-of-012") == (3, 12)
    with pytest.raises(ValueError):
        parse_shard("012-of-012")
    items = list(range(10))
    chunks = [shard_slice(items, k, 3) for k in range(3)]
    assert sum(chunks, []) == items and [len(c) for c in chunks] == [3, 3, 4]


def test_every_item_recorded_in_order_with_answer_and_thinking(dataset):
    meta = run(dataset, ScriptedBackend())
    rows = records(dataset[0])
    assert [r["uid"] for r in rows] == [i["uid"] for i in dataset[1]]
    assert rows[0]["answer"] == "answer to Violence/Analogy/0"
    assert rows[0]["thinking"] == "t"
    assert rows[0]["raw_output"].startswith("<think>")
    assert rows[0]["images_given"] == 2 and rows[0]["image_tokens"] == 8
    assert meta["status_counts"] == {"ok": 5} and meta["n_items"] == 5
    assert "torch" in meta["software"]


def test_failed_items_are_kept_and_only_they_are_retried(dataset):
    root, instances = dataset
    failing = instances[1]["uid"]
    meta = run(dataset, ScriptedBackend(fail=[failing]))
    assert meta["status_counts"] == {"failed": 1, "ok": 4}
    row = records(root)[1]
    assert row["status"] == "failed" and row["error"] == "scripted failure"
    assert row["answer"] is None
    again = ScriptedBackend()
    meta = run(dataset, again)
    assert again.seen == [failing]
    assert meta["status_counts"] == {"ok": 5}


def test_the_generated_token_ids_are_kept_with_each_answer(dataset):
    """The entropy stage scores them: decoded text need not encode back to the same ids."""
    class WithIds(ScriptedBackend):
        def generate(self, requests):
            return [replace(r, token_ids=[7, len(r.uid)]) if r.status == "ok" else r
                    for r in super().generate(requests)]

    root, instances = dataset
    run(dataset, WithIds(fail=[instances[1]["uid"]]))
    rows = records(root)
    assert rows[0]["token_ids"] == [7, len(instances[0]["uid"])]
    assert rows[1]["status"] == "failed" and rows[1]["token_ids"] is None
    api = make_record(instances[0], Result(instances[0]["uid"], "ok", raw_output="x"), "m",
                      "auto", 2)
    assert api["token_ids"] is None  # a backend that cannot know them (API, imported answers)


def test_resume_asks_only_the_items_not_yet_done(dataset):
    root, instances = dataset
    run(dataset, ScriptedBackend())
    ledger = ledger_path(root / "shard.jsonl")
    lines = ledger.read_text().splitlines(keepends=True)
    ledger.write_text("".join(lines[:3]) + lines[3][:10])  # header, 2 items, a torn line
    (root / "shard.jsonl").unlink()
    backend = ScriptedBackend()
    run(dataset, backend)
    assert backend.seen == [i["uid"] for i in instances[2:]]
    assert [r["uid"] for r in records(root)] == [i["uid"] for i in instances]


def test_ledger_from_other_settings_is_discarded(dataset):
    root, instances = dataset
    run(dataset, ScriptedBackend(), settings={"k": 1})
    backend = ScriptedBackend()
    run(dataset, backend, settings={"k": 2})
    assert backend.seen == [i["uid"] for i in instances]
    assert len(read_ledger(ledger_path(root / "shard.jsonl"), settings_key({"k": 2}))) == 5


def test_unreadable_image_fails_that_item_alone(dataset):
    root, instances = dataset
    instances[2]["images"] = ["a.png", "missing.png"]
    backend = ScriptedBackend()
    meta = run(dataset, backend)
    assert meta["status_counts"] == {"failed": 1, "ok": 4}
    row = records(root)[2]
    assert "missing.png" in row["error"] and row["images_given"] == 0
    assert instances[2]["uid"] not in backend.seen


def test_backend_answering_for_the_wrong_item_stops_the_shard(dataset):
    class Confused(ScriptedBackend):
        def generate(self, requests):
            return list(reversed(super().generate(requests)))

    with pytest.raises(RuntimeError, match="backend answered"):
        run(dataset, Confused())
    assert not (dataset[0] / "shard.jsonl").exists()


def test_an_edited_prompt_is_asked_again_and_only_it(dataset):
    """The shard's settings (manifest hash, uids) cannot see an edit to instances.jsonl alone."""
    root, instances = dataset
    run(dataset, ScriptedBackend())
    instances[3]["revised_prompt"] = "an edited prompt"
    backend = ScriptedBackend()
    meta = run(dataset, backend)
    assert backend.seen == [instances[3]["uid"]] and backend.prompts == ["an edited prompt"]
    assert meta["status_counts"] == {"ok": 5}
    assert [r["uid"] for r in records(root)] == [i["uid"] for i in instances]
    again = ScriptedBackend()
    run(dataset, again)
    assert again.seen == []


def test_an_image_changed_in_place_is_asked_again_and_only_its_item(dataset):
    root, instances = dataset
    Image.new("RGB", (8, 8), "blue").save(root / "b.png")
    instances[1]["images"] = ["a.png", "b.png"]
    run(dataset, ScriptedBackend())
    Image.new("RGB", (8, 8), "green").save(root / "b.png")
    backend = ScriptedBackend()
    run(dataset, backend)
    assert backend.seen == [instances[1]["uid"]]


def test_the_key_follows_what_the_condition_asks(dataset):
    """text_only asks the seed question: editing it redoes the item, editing the images not."""
    root, instances = dataset
    for instance in instances:
        instance["original_question"] = f"q of {instance['uid']}"
    run(dataset, ScriptedBackend(), condition="text_only")
    instances[0]["original_question"] = "an edited question"
    instances[4]["images"] = ["a.png"]
    backend = ScriptedBackend()
    run(dataset, backend, condition="text_only")
    assert backend.seen == [instances[0]["uid"]] and backend.prompts == ["an edited question"]
