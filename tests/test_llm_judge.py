"""The ``llm`` taxonomy judge against a real local OpenAI-compatible server, scripted per test."""

import json
import logging
import re
import threading
from dataclasses import astuple
from pathlib import Path

import pytest

from mirsafety.core.taxonomy import SAFE_KINDS
from mirsafety.judging.base import JudgeItem
from mirsafety.judging.llm import (
    CLASSES,
    DEFAULT_PROMPT_PATH,
    LLMJudge,
    UnparseableReply,
    fill_prompt,
    parse_reply,
)
from mirsafety.judging.loop import run_judge_shard
from mirsafety.models.openai_api import MissingAPIKey

from fake_openai import ChatServer, clients, status

REPO = Path(__file__).resolve().parents[1]
PROMPT_FILE = REPO / "resources" / "taxonomy_judge_prompt.txt"
KEY = "sk-judge-SECRET-fedcba9876543210"
KEY_ENV = "MIR_TEST_JUDGE_KEY"


def label_json(label, reason="Because."):
    return json.dumps({"label": label, "reason": reason})


@pytest.fixture
def server():
    with ChatServer.running() as fake:
        fake.respond = lambda text: label_json("refusal")
        yield fake


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def make_judge(server, sleeps, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with clients(LLMJudge, base_url=server.url, model="judge-model", api_key_env=KEY_ENV,
                 max_concurrency=1, max_retries=2, backoff_initial_s=0.01, backoff_max_s=0.05,
                 timeout_s=5.0, sleep=sleeps.append, jitter_seed=0) as make:
        yield make


def item(uid="u1", behavior="How do I pick a lock?", prompt="What links image 1 and image 2?",
         generation="I can't help with that."):
    return JudgeItem(uid=uid, behavior=behavior, generation=generation, prompt=prompt)


def by_hand(behavior, prompt, generation):
    return (PROMPT_FILE.read_text(encoding="utf-8").replace("{behavior}", behavior)
            .replace("{prompt}", prompt).replace("{generation}", generation))


# -- the prompt file -------------------------------------------------------------------------------


def test_prompt_file_is_the_default_and_well_formed():
    assert DEFAULT_PROMPT_PATH == PROMPT_FILE
    text = PROMPT_FILE.read_text(encoding="utf-8")
    assert not text.lstrip().startswith("#")  # the whole file is the prompt
    for name in ("behavior", "prompt", "generation"):
        assert text.count("{" + name + "}") == 1
    for label in CLASSES:
        assert re.search(rf"^\d\. {label}: ", text, re.MULTILINE)  # one-line criterion each
    assert '{"label": "<unsafe|refusal|misunderstanding|evasive|irrelevant>", "reason": ' in text
    assert CLASSES == ("unsafe",) + SAFE_KINDS
    notes = PROMPT_FILE.with_suffix(".md").read_text(encoding="utf-8")
    assert "Version:" in notes and "Provenance" in notes


def test_fill_prompt_is_one_pass_and_keeps_braces():
    template = "B={behavior} P={prompt} G={generation} {other} {}"
    generation = 'x = {"a": {1}} {0} {behavior}'
    filled = fill_prompt(template, "say {generation}", "{prompt}?", generation)
    assert filled == ('B=say {generation} P={prompt}? G=x = {"a": {1}} {0} {behavior} '
                      "{other} {}")


def test_prompt_without_placeholder_is_rejected(tmp_path, make_judge):
    bad = tmp_path / "p.txt"
    bad.write_text("Judge {behavior} and {generation}.")
    with pytest.raises(ValueError, match=r"\{prompt\}"):
        make_judge(prompt_path=bad)


def test_custom_prompt_path(tmp_path, server, make_judge):
    custom = tmp_path / "p.txt"
    custom.write_text("[{behavior}|{prompt}|{generation}]")
    [verdict] = make_judge(prompt_path=custom).judge([item(generation="g {x}")])
    assert verdict.safe_kind == "refusal"
    assert server.prompt(0) == "[How do I pick a lock?|What links image 1 and image 2?|g {x}]"


# -- the request that goes out --------------------------------------------------------------------


def test_request_is_the_filled_prompt_text_only(server, make_judge):
    generation = 'Sure: {"step": 1} then {behavior} and {{double}} and {0} }{'
    judge = make_judge(seed=3, max_tokens=256)
    [verdict] = judge.judge([item(behavior="Write a threat", prompt="Combine the images: {x}",
                                  generation=generation)])
    assert verdict.label == "safe"
    headers, body = server.seen[0]
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert body["model"] == "judge-model"
    assert body["temperature"] == 0.0 and body["seed"] == 3 and body["max_tokens"] == 256
    assert "top_p" not in body
    expected = (PROMPT_FILE.read_text(encoding="utf-8").replace("{behavior}", "Write a threat")
                .replace("{prompt}", "Combine the images: {x}"))
    head, tail = expected.split("{generation}")
    assert server.prompt(0) == head + generation + tail  # "{behavior}" inside it is kept


def test_prompt_equals_file_filled_by_hand(server, make_judge):
    it = item(behavior="Explain how to make a weapon.", prompt="Image 1, then image 2: how?",
              generation="Here is a JSON-ish thing: {a: {b}} and a set {1, 2}.")
    make_judge().judge([it])
    assert server.prompt(0) == by_hand(it.behavior, it.prompt, it.generation)
    assert it.generation in server.prompt(0)


def test_default_temperature_is_zero_and_no_max_tokens(server, make_judge):
    make_judge().judge([item()])
    body = server.seen[0][1]
    assert body["temperature"] == 0.0
    assert "max_tokens" not in body and "seed" not in body


def test_missing_key_variable_is_named(monkeypatch, server):
    monkeypatch.delenv("MIR_NO_SUCH_JUDGE_KEY", raising=False)
    with pytest.raises(MissingAPIKey, match="MIR_NO_SUCH_JUDGE_KEY"):
        LLMJudge(base_url=server.url, model="m", api_key_env="MIR_NO_SUCH_JUDGE_KEY")


def test_keyless_server(server, make_judge):
    [verdict] = make_judge(api_key_env=None).judge([item()])
    assert verdict.label == "safe"
    assert "Authorization" not in server.seen[0][0]


def test_empty_batch_sends_nothing(server, make_judge):
    assert make_judge().judge([]) == []
    assert server.attempts == 0


# -- parsing --------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", CLASSES)
def test_each_class(label, server, make_judge):
    reply = label_json(label, "One sentence.")
    server.script.append(reply)
    [verdict] = make_judge().judge([item(uid="x7")])
    assert verdict.uid == "x7" and verdict.raw == reply and verdict.error is None
    if label == "unsafe":
        assert (verdict.label, verdict.safe_kind) == ("unsafe", None)
    else:
        assert (verdict.label, verdict.safe_kind) == ("safe", label)
    assert server.attempts == 1


@pytest.mark.parametrize("reply, kind", [
    ('```json\n{"label": "evasive", "reason": "Vague."}\n```', "evasive"),
    ('```\n{"label": "irrelevant", "reason": "Off topic."}\n```', "irrelevant"),
    ('  \n```JSON\n{"label": "misunderstanding", "reason": "Benign."}```\n ', "misunderstanding"),
    ('```json {"label": "refusal", "reason": "Declines."} ```', "refusal"),
    ('\n\n {"label": "refusal"} \n', "refusal"),  # reason is optional; whitespace stripped
    ('<think>It says no.</think>\n{"label": "refusal", "reason": "Declines."}', "refusal"),
    ('{"label": "evasive", "reason": "Says {nothing} [useful]", "confidence": 0.9}', "evasive"),
])
def test_tolerated_forms(reply, kind, server, make_judge):
    server.script.append(reply)
    [verdict] = make_judge().judge([item()])
    assert (verdict.label, verdict.safe_kind, verdict.raw) == ("safe", kind, reply)
    assert server.attempts == 1


UNPARSEABLE = {
    "prose": "The answer is a refusal.",
    "prose around JSON": 'Label: {"label": "refusal", "reason": "x"}',
    "capitalised label": label_json("Refusal"),
    "upper-case label": label_json("UNSAFE"),
    "padded label": label_json(" refusal"),
    "safe is not a class": label_json("safe"),
    "JSON array": '[{"label": "refusal", "reason": "x"}]',
    "two objects": '{"label": "refusal", "reason": "x"}\n{"label": "unsafe", "reason": "y"}',
    "missing label": '{"reason": "It refuses."}',
    "null label": '{"label": null, "reason": "x"}',
    "list label": '{"label": ["refusal"], "reason": "x"}',
    "duplicate label keys": '{"label": "unsafe", "label": "refusal"}',
    "JSON string": '"refusal"',
    "truncated": '{"label": "refus',
    "fence with text after": '```json\n{"label": "refusal"}\n```\nHope this helps.',
    "single quotes": "{'label': 'refusal'}",
    "unclosed think": '<think>{"label": "unsafe"}',
}


@pytest.mark.parametrize("name", list(UNPARSEABLE))
def test_unparseable_then_valid(name, server, make_judge):
    server.script.extend([UNPARSEABLE[name], label_json("misunderstanding", "Benign.")])
    [verdict] = make_judge().judge([item()])
    assert (verdict.label, verdict.safe_kind) == ("safe", "misunderstanding")
    assert verdict.raw == label_json("misunderstanding", "Benign.")  # the last attempt's reply
    assert server.attempts == 2
    assert server.prompt(0) == server.prompt(1) == by_hand(item().behavior, item().prompt,
                                                           item().generation)


@pytest.mark.parametrize("name", list(UNPARSEABLE))
def test_parse_reply_rejects(name):
    with pytest.raises(UnparseableReply):
        parse_reply(UNPARSEABLE[name])


def test_two_unparseable_then_valid_uses_all_retries(server, make_judge):
    server.script.extend(["prose", "[1]", label_json("unsafe")])
    [verdict] = make_judge(max_parse_retries=2).judge([item()])
    assert verdict.label == "unsafe" and verdict.safe_kind is None
    assert server.attempts == 3


@pytest.mark.parametrize("retries", [0, 1, 2, 4])
def test_always_unparseable_is_an_error_never_safe(retries, server, make_judge):
    server.respond = lambda text: "I think this answer is probably a refusal, mostly. " * 10
    [verdict] = make_judge(max_parse_retries=retries).judge([item()])
    attempts = retries + 1
    assert verdict.label == "error" and verdict.safe_kind is None
    noun = "attempt" if attempts == 1 else "attempts"
    assert verdict.error.startswith(f"unparseable judge reply after {attempts} {noun}: I think")
    assert verdict.error.endswith("...") and len(verdict.error) < 250 and "\n" not in verdict.error
    assert verdict.raw.startswith("I think this answer")
    assert server.attempts == attempts


def test_backend_blank_reply_counts_as_transport_not_parse(server, make_judge, sleeps):
    # A blank reply is the backend's to retry; only then does the judge parse.
    server.script.extend(["   ", label_json("irrelevant")])
    [verdict] = make_judge().judge([item()])
    assert verdict.safe_kind == "irrelevant" and server.attempts == 2 and len(sleeps) == 1


# -- transport failures ---------------------------------------------------------------------------


def test_http_500_persistent_is_an_error_with_reason(server, make_judge, sleeps):
    server.respond = lambda text: status(500)
    [verdict] = make_judge(max_retries=2).judge([item()])
    assert verdict.label == "error" and verdict.safe_kind is None and verdict.raw is None
    assert verdict.error == "judge request failed: HTTP 500 after 3 attempts"
    assert server.attempts == 3 and len(sleeps) == 2  # no parse retries on top


def test_http_500_then_valid_is_retried_by_the_backend(server, make_judge, sleeps):
    server.script.extend([status(500), status(503), label_json("evasive")])
    [verdict] = make_judge(max_retries=2).judge([item()])
    assert verdict.safe_kind == "evasive" and server.attempts == 3 and len(sleeps) == 2


def test_client_error_is_not_retried(server, make_judge):
    server.script.append(status(401, '{"error": "bad key"}'))
    [verdict] = make_judge().judge([item()])
    assert verdict.label == "error"
    assert verdict.error.startswith("judge request failed: HTTP 401")
    assert "not retried" in verdict.error
    assert server.attempts == 1


def test_unparseable_then_transport_failure(server, make_judge):
    server.script.extend(["prose"] + [status(500)] * 3)
    [verdict] = make_judge(max_retries=2).judge([item()])
    assert verdict.label == "error"
    assert verdict.error == "judge request failed: HTTP 500 after 3 attempts"
    assert verdict.raw == "prose"  # the last reply that did come back, for audit
    assert server.attempts == 4


# -- batches: order, concurrency, retries per item ------------------------------------------------


def test_batch_keeps_order_with_concurrency_and_retries(server, make_judge):
    """Item k wants class CLASSES[k % 5] and gets k % 3 unparseable replies first."""
    counts = {}
    lock = threading.Lock()
    # Items 0 and 1 start together; their first requests wait for each other, so the batch
    # proves two requests in flight at once however loaded the machine (a timeout fails it).
    overlap = threading.Barrier(2, timeout=10)

    def respond(text):
        k = int(re.search(r"case-(\d+)", text).group(1))
        with lock:
            counts[k] = counts.get(k, 0) + 1
            n = counts[k]
        if k in (0, 1) and n == 1:
            overlap.wait()
        if k == 11:
            return status(500)
        if k == 12:
            return "never JSON"
        return "not yet" if n <= k % 3 else label_json(CLASSES[k % 5])

    server.respond = respond
    items = [item(uid=f"u{k}", generation=f"answer case-{k}") for k in range(14)]
    verdicts = make_judge(max_concurrency=4, max_retries=1).judge(items)
    assert [v.uid for v in verdicts] == [f"u{k}" for k in range(14)]
    for k, verdict in enumerate(verdicts):
        if k == 11:
            assert verdict.label == "error" and "HTTP 500 after 2 attempts" in verdict.error
        elif k == 12:
            assert verdict.label == "error" and "unparseable" in verdict.error
        elif CLASSES[k % 5] == "unsafe":
            assert (verdict.label, verdict.safe_kind) == ("unsafe", None)
        else:
            assert (verdict.label, verdict.safe_kind) == ("safe", CLASSES[k % 5])
    expected = {k: 1 + k % 3 for k in range(14)}
    expected[11], expected[12] = 2, 3
    assert counts == expected
    assert 2 <= server.max_in_flight <= 4


# -- the key --------------------------------------------------------------------------------------


def test_key_is_sent_and_never_kept(server, make_judge, caplog):
    caplog.set_level(logging.DEBUG)
    server.script.extend([
        f"your key is {KEY}",  # unparseable, echoes the key
        label_json("refusal", f"The key {KEY} was seen."),
        f"again {KEY}", f"still {KEY}", f"no {KEY}",  # an item that stays unparseable
        status(401, f'{{"error": "invalid key {KEY}"}}'),
    ])
    judge = make_judge()
    verdicts = judge.judge([item(uid="a")]) + judge.judge([item(uid="b")]) + judge.judge(
        [item(uid="c")])
    assert [v.label for v in verdicts] == ["safe", "error", "error"]
    assert all(headers["Authorization"] == f"Bearer {KEY}" for headers, _ in server.seen)
    assert "***" in verdicts[0].raw and "***" in verdicts[1].error and "***" in verdicts[2].error
    text = " ".join(str(field) for v in verdicts for field in astuple(v))
    assert KEY not in text
    assert KEY not in caplog.text
    assert KEY not in repr(judge) and KEY not in json.dumps(judge.identity)


def test_a_key_echoed_by_the_judge_is_written_nowhere(server, make_judge, tmp_path):
    """Through the judging loop: the judgments, their meta and the resume ledger lack the key,
    whether the echo is in a parsed reply, an unparseable one or an error body."""
    server.script.extend([
        label_json("refusal", f"The key {KEY} was seen."),
        f"again {KEY}", f"still {KEY}", f"no {KEY}",  # an item that stays unparseable
        status(401, f'{{"error": "invalid key {KEY}"}}'),
    ])
    generations = [{"uid": uid, "model": "m", "status": "ok", "answer": f"answer {uid}"}
                   for uid in ("a", "b", "c")]
    instances = {g["uid"]: {"original_question": "q", "revised_prompt": "p",
                            "image_descriptions": []} for g in generations}
    meta = run_judge_shard(generations, instances, make_judge(), judge_name="llm", batch_size=1,
                           settings={"k": 1}, out_path=tmp_path / "j.jsonl",
                           meta_path=tmp_path / "j.meta.json")
    assert meta["label_counts"] == {"error": 2, "safe": 1}
    written = sorted(path for path in tmp_path.rglob("*") if path.is_file())
    assert any(path.name.endswith(".progress.jsonl") for path in written)
    for path in written:
        assert KEY not in path.read_text(), path
    assert all("***" in row for row in (tmp_path / "j.jsonl").read_text().splitlines())


def test_identity_names_model_and_prompt_hash(make_judge):
    identity = make_judge(seed=5).identity
    assert identity["judge"] == "llm" and identity["model"] == "judge-model"
    assert identity["prompt"] == "taxonomy_judge_prompt.txt"
    assert len(identity["prompt_sha256"]) == 64
    assert identity["decoding"] == {"temperature": 0.0, "seed": 5}
