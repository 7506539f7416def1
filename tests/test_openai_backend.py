"""The OpenAI-compatible backend against a real local HTTP server scripted per test."""

import base64
import io
import json
import logging
import socket
from dataclasses import astuple

import pytest
from PIL import Image

from mirsafety.generation.generate import run_shard
from mirsafety.models.backend import Request
from mirsafety.models.openai_api import MissingAPIKey, OpenAIBackend, parse_retry_after

from fake_openai import ChatServer, clients, reply, status

KEY = "sk-test-SECRET-0123456789abcdef"
KEY_ENV = "MIR_TEST_OPENAI_KEY"


SHORT_TIMEOUT = 0.2  # the client's timeout_s where a test makes the server stall
TIMEOUT = {"delay": 0.6}  # longer than SHORT_TIMEOUT
BEHAVIOURS = {
    "429": status(429),
    "429 Retry-After": status(429, **{"Retry-After": "0.05"}),
    "500": status(500),
    "503": status(503),
    "timeout": TIMEOUT,
    "empty": reply(""),
    "whitespace": reply(" \n\t "),
    "malformed JSON": {"raw": '{"choices": [ {"message": '},
    "missing choices": {"json": {"id": "c1", "object": "chat.completion"}},
    "null content": {"json": {"choices": [{"message": {"role": "assistant", "content": None}}]}},
}


@pytest.fixture
def server():
    with ChatServer.running() as fake:
        yield fake


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def make_backend(server, sleeps, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with clients(OpenAIBackend, base_url=server.url, model="test-model", api_key_env=KEY_ENV,
                 max_concurrency=1, max_retries=3, backoff_initial_s=0.01, backoff_max_s=0.1,
                 timeout_s=5.0, sleep=sleeps.append, jitter_seed=0) as make:
        yield make


def request(uid="r1", prompt="What links these pictures?", images=None, system=None):
    if images is None:
        images = [Image.new("RGB", (24, 16), "red"), Image.new("RGB", (8, 12), "blue")]
    return Request(uid=uid, prompt=prompt, images=images, system_prompt=system)


class UpperBound:
    """A 'random' source that always draws the top of the jitter range."""

    def uniform(self, low, high):
        return high


# -- the request that goes out ----------------------------------------------------------------


def test_request_body_images_first_then_text(server, make_backend):
    backend = make_backend(temperature=0.0, max_tokens=64, seed=1)
    [result] = backend.generate([request(system="Be safe.")])
    assert result.status == "ok"
    headers, body = server.seen[0]
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert body["model"] == "test-model"
    assert body["temperature"] == 0.0 and body["max_tokens"] == 64 and body["seed"] == 1
    assert "top_p" not in body  # None settings are not sent
    system, user = body["messages"]
    assert system == {"role": "system", "content": "Be safe."}
    assert user["role"] == "user"
    assert [part["type"] for part in user["content"]] == ["image_url", "image_url", "text"]
    assert user["content"][-1]["text"] == "What links these pictures?"
    for part, size in zip(user["content"][:2], [(24, 16), (8, 12)]):
        prefix, data = part["image_url"]["url"].split(",", 1)
        assert prefix == "data:image/png;base64"
        png = base64.b64decode(data)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        decoded = Image.open(io.BytesIO(png))
        assert decoded.format == "PNG" and decoded.size == size


def test_no_system_message_and_no_key(server, make_backend):
    backend = make_backend(api_key_env=None)
    [result] = backend.generate([request(images=[])])
    assert result.status == "ok"
    headers, body = server.seen[0]
    assert "Authorization" not in headers
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert body["messages"][0]["content"] == [{"type": "text", "text": "What links these pictures?"}]


def test_missing_key_variable_is_named(monkeypatch, server):
    monkeypatch.delenv("MIR_NO_SUCH_KEY", raising=False)
    with pytest.raises(MissingAPIKey, match="MIR_NO_SUCH_KEY"):
        OpenAIBackend(base_url=server.url, model="m", api_key_env="MIR_NO_SUCH_KEY")


def test_success_fields(server, make_backend):
    server.script.append(reply("the answer", finish="length"))
    [result] = make_backend().generate([request()])
    assert result.status == "ok" and result.error is None
    assert result.raw_output == "the answer"
    assert (result.prompt_tokens, result.completion_tokens, result.image_tokens) == (11, 3, None)
    assert result.finish_reason == "length"
    assert 0 < result.latency_s < 5


# -- retries --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BEHAVIOURS))
def test_transient_failure_then_success(name, server, make_backend, sleeps):
    server.script.extend([BEHAVIOURS[name], BEHAVIOURS[name], reply("finally")])
    backend = make_backend(timeout_s=SHORT_TIMEOUT if name == "timeout" else 5.0)
    [result] = backend.generate([request()])
    assert (result.status, result.raw_output, result.error) == ("ok", "finally", None)
    assert server.attempts == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize("name, reason", [
    ("503", "HTTP 503 after 4 attempts"),
    ("429", "HTTP 429 after 4 attempts"),
    ("timeout", "timeout after 4 attempts"),
    ("whitespace", "blank reply after 4 attempts"),
    ("malformed JSON", "malformed JSON after 4 attempts"),
    ("missing choices", "reply without choices[0].message.content after 4 attempts"),
])
def test_persistent_failure(name, reason, server, make_backend, sleeps):
    server.script.extend([BEHAVIOURS[name]] * 4)
    backend = make_backend(max_retries=3, timeout_s=SHORT_TIMEOUT if name == "timeout" else 5.0)
    [result] = backend.generate([request()])
    assert result.status == "failed" and result.raw_output is None
    assert result.error == reason
    assert server.attempts == 4 and len(sleeps) == 3


@pytest.mark.parametrize("code", [400, 401, 404, 422])
def test_client_errors_are_not_retried(code, server, make_backend, sleeps):
    server.script.append(status(code, '{"error": {"message": "bad\\nrequest"}}'))
    [result] = make_backend().generate([request()])
    assert result.status == "failed"
    assert result.error.startswith(f"HTTP {code}: ") and "bad\\nrequest" in result.error
    assert "\n" not in result.error and result.error.endswith("(not retried)")
    assert server.attempts == 1 and sleeps == []


def test_connection_refused_is_retried(make_backend, sleeps):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    [result] = make_backend(base_url=f"http://127.0.0.1:{port}/v1", max_retries=2).generate(
        [request()])
    assert result.status == "failed"
    assert result.error == "connection error (ConnectionError) after 3 attempts"
    assert len(sleeps) == 2


def test_key_never_leaks(server, make_backend, caplog):
    caplog.set_level(logging.DEBUG)
    echo = f'{{"error": "invalid key {KEY}"}}'
    server.script.extend([status(500, echo), status(401, echo + "x" * 500 + "tail")])
    backend = make_backend()
    [result] = backend.generate([request()])
    assert result.status == "failed" and "HTTP 401" in result.error and "***" in result.error
    assert "tail" not in result.error  # excerpt is short
    server.script.extend([BEHAVIOURS["timeout"]] * 2)
    stalls = make_backend(max_retries=1, timeout_s=SHORT_TIMEOUT)
    results = [result] + stalls.generate([request()])
    server.script.append(reply(KEY[:5]))
    results += backend.generate([request()])
    text = " ".join(str(field) for r in results for field in astuple(r))
    assert results[1].error == "timeout after 2 attempts"
    assert KEY not in text and KEY not in caplog.text and KEY not in repr(backend)


def test_a_key_echoed_in_a_200_reply_is_written_nowhere(server, make_backend, tmp_path):
    """The content (answer and thinking) and the finish reason are scrubbed before they are kept:
    neither the shard, its meta nor its resume ledger holds the key."""
    server.script.append({"json": {
        "choices": [{"index": 0, "finish_reason": f"stop:{KEY}",
                     "message": {"role": "assistant",
                                 "content": f"<think>it is {KEY}</think>your key is {KEY}"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1}}})
    model = {"batch_size": 1, "thinking": "auto", "single_image": False, "system_prompt": None,
             "image_pixels": {"min": None, "max": None}}
    run_shard([{"uid": "u1", "revised_prompt": "what is my key?", "images": []}], tmp_path,
              make_backend(), model_name="m", model=model, settings={"k": 1},
              out_path=tmp_path / "shard.jsonl", meta_path=tmp_path / "shard.meta.json")
    [row] = [json.loads(line) for line in (tmp_path / "shard.jsonl").read_text().splitlines()]
    assert (row["answer"], row["thinking"], row["finish_reason"]) == (
        "your key is ***", "it is ***", "stop:***")
    written = sorted(path for path in tmp_path.rglob("*") if path.is_file())
    assert any(path.name.endswith(".progress.jsonl") for path in written)
    for path in written:
        assert KEY not in path.read_text(), path


def test_a_finish_reason_that_is_not_text_is_not_kept(server, make_backend):
    server.script.append({"json": {"choices": [{"finish_reason": {"why": KEY},
                                                "message": {"content": "fine"}}]}})
    [result] = make_backend().generate([request()])
    assert (result.raw_output, result.finish_reason) == ("fine", None)


# -- concurrency and order ------------------------------------------------------------------------


def test_order_and_concurrency_bound(server, make_backend):
    server.default_delay = 0.05
    batch = [request(uid=f"u{i}", prompt=f"prompt {i}", images=[]) for i in range(12)]
    results = make_backend(max_concurrency=3).generate(batch)
    assert [r.uid for r in results] == [r.uid for r in batch]
    assert [r.raw_output for r in results] == [f"echo: prompt {i}" for i in range(12)]
    assert server.attempts == 12
    assert 2 <= server.max_in_flight <= 3


def test_retries_keep_order_with_concurrency(server, make_backend):
    server.script.extend([status(503), status(429), reply(" ")])
    batch = [request(uid=f"u{i}", prompt=f"p{i}", images=[]) for i in range(6)]
    results = make_backend(max_concurrency=4).generate(batch)
    assert [r.status for r in results] == ["ok"] * 6
    assert [r.raw_output for r in results] == [f"echo: p{i}" for i in range(6)]
    assert server.attempts == 9 and server.max_in_flight <= 4


# -- backoff --------------------------------------------------------------------------------------


def test_backoff_grows_exponentially_and_is_capped(server, make_backend, sleeps):
    server.script.extend([status(503)] * 6)
    backend = make_backend(max_retries=5, backoff_initial_s=0.1, backoff_max_s=0.5, rng=UpperBound())
    [result] = backend.generate([request()])
    assert result.error == "HTTP 503 after 6 attempts"
    assert sleeps == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def test_jitter_is_full_bounded_and_seedable(server, make_backend, sleeps):
    backend = make_backend(backoff_initial_s=1.0, backoff_max_s=8.0, jitter_seed=42)
    draws = [backend.backoff_delay(k) for k in range(8) for _ in range(50)]
    for k in range(8):
        chunk = draws[50 * k:50 * (k + 1)]
        assert all(0 <= d <= min(8.0, 2.0 ** k) for d in chunk)
        assert max(chunk) > 0.5 * min(8.0, 2.0 ** k)  # spread over the whole range
    again = make_backend(backoff_initial_s=1.0, backoff_max_s=8.0, jitter_seed=42)
    assert [again.backoff_delay(k) for k in range(8) for _ in range(50)] == draws


def test_retry_after_is_honoured_and_capped(server, make_backend, sleeps):
    server.script.extend([status(429, **{"Retry-After": "3"}), status(429, **{"Retry-After": "120"}),
                          status(429), reply("ok")])
    backend = make_backend(backoff_initial_s=0.01, backoff_max_s=10.0, rng=UpperBound())
    [result] = backend.generate([request()])
    assert result.raw_output == "ok"
    assert sleeps == pytest.approx([3.0, 10.0, 0.04])  # header, header capped, jitter (3rd retry)


def test_parse_retry_after():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
