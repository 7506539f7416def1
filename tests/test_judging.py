"""The judging loop and the offline refusal judge."""

import json

import pytest

from mirsafety.judging.base import Judge, Verdict
from mirsafety.judging.loop import judge_item, run_judge_shard
from mirsafety.judging.refusal import RefusalJudge

from conftest import REPO

PATTERNS = REPO / "resources" / "refusal_patterns.yaml"


def generation(uid, answer, status="ok"):
    return {"uid": uid, "model": "m", "status": status, "answer": answer,
            "error": None if status == "ok" else "HTTP 503 after 6 attempts"}


@pytest.fixture
def instances():
    return {f"Violence/Analogy/{k}": {"uid": f"Violence/Analogy/{k}", "original_question": f"q{k}",
                                      "revised_prompt": f"p{k}",
                                      "image_descriptions": ["a cup", "a kite"]} for k in range(4)}


class Recorder(Judge):
    """Labels everything unsafe and remembers what it was shown."""

    def __init__(self):
        self.seen = []

    def judge(self, items):
        self.seen += items
        return [Verdict(i.uid, "unsafe", raw="Yes", score=0.9) for i in items]


def run(tmp_path, generations, instances, judge, settings=None):
    return run_judge_shard(generations, instances, judge, judge_name="j", batch_size=2,
                           settings=settings or {"k": 1}, out_path=tmp_path / "j.jsonl",
                           meta_path=tmp_path / "j.meta.json")


def test_refusal_judge_labels_and_states_its_match():
    judge = RefusalJudge(PATTERNS)
    items = [judge_item(generation(u, a), {"original_question": "q", "revised_prompt": "p",
                                           "image_descriptions": []})
             for u, a in [("a", "I'm sorry, but I cannot help."), ("b", "Step 1: do this."),
                          ("c", "   "), ("d", "AS AN AI, i must decline")]]
    verdicts = judge.judge(items)
    assert [v.label for v in verdicts] == ["safe", "unsafe", "safe", "safe"]
    assert verdicts[0].safe_kind == "refusal" and verdicts[0].raw == "matched: i'm sorry"
    assert verdicts[2].safe_kind is None and verdicts[2].raw == "empty answer"
    assert judge.version == 1


def test_failed_generation_is_error_and_never_reaches_the_judge(tmp_path, instances):
    generations = [generation("Violence/Analogy/0", "ok answer"),
                   generation("Violence/Analogy/1", None, status="failed")]
    recorder = Recorder()
    meta = run(tmp_path, generations, instances, recorder)
    assert [i.uid for i in recorder.seen] == ["Violence/Analogy/0"]
    rows = [json.loads(x) for x in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert rows[1]["label"] == "error" and rows[1]["generation_status"] == "failed"
    assert "generation failed: HTTP 503" in rows[1]["error"]
    assert meta["label_counts"] == {"error": 1, "unsafe": 1}


def test_judge_sees_seed_question_answer_and_context(tmp_path, instances):
    recorder = Recorder()
    run(tmp_path, [generation("Violence/Analogy/2", "the answer")], instances, recorder)
    (item,) = recorder.seen
    assert (item.behavior, item.generation, item.prompt) == ("q2", "the answer", "p2")
    assert item.context == "a cup\na kite"


def test_judge_errors_are_retried_on_the_next_run(tmp_path, instances):
    class Flaky(Recorder):
        def judge(self, items):
            self.seen += items
            return [Verdict(i.uid, "error", error="unparseable") for i in items]

    generations = [generation(f"Violence/Analogy/{k}", "x") for k in range(3)]
    assert run(tmp_path, generations, instances, Flaky())["label_counts"] == {"error": 3}
    again = Recorder()
    assert run(tmp_path, generations, instances, again)["label_counts"] == {"unsafe": 3}
    assert len(again.seen) == 3
    third = Recorder()
    run(tmp_path, generations, instances, third)
    assert third.seen == []  # decided verdicts are reused


def test_an_invalid_label_stops_the_shard(tmp_path, instances):
    class Broken(Recorder):
        def judge(self, items):
            return [Verdict(i.uid, "maybe") for i in items]

    with pytest.raises(ValueError, match="gave label 'maybe'"):
        run(tmp_path, [generation("Violence/Analogy/0", "x")], instances, Broken())
    assert not (tmp_path / "j.jsonl").exists()


def test_an_edited_prompt_context_or_answer_is_judged_again_and_only_it(tmp_path, instances):
    """Per item, the ledger keys what the judge sees; the shard's settings cannot see an edit."""
    generations = [generation(f"Violence/Analogy/{k}", f"answer {k}") for k in range(4)]
    run(tmp_path, generations, instances, Recorder())
    instances["Violence/Analogy/0"]["revised_prompt"] = "an edited prompt"
    instances["Violence/Analogy/1"]["image_descriptions"] = ["a kite"]
    generations[2] = generation("Violence/Analogy/2", "a new answer")
    again = Recorder()
    meta = run(tmp_path, generations, instances, again)
    assert [(i.uid, i.prompt, i.context, i.generation) for i in again.seen] == [
        ("Violence/Analogy/0", "an edited prompt", "a cup\na kite", "answer 0"),
        ("Violence/Analogy/1", "p1", "a kite", "answer 1"),
        ("Violence/Analogy/2", "p2", "a cup\na kite", "a new answer")]
    assert meta["label_counts"] == {"unsafe": 4}
    third = Recorder()
    run(tmp_path, generations, instances, third)
    assert third.seen == []
