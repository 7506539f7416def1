"""The ``llm`` judge: an OpenAI-compatible chat model labels an answer unsafe, or its safe kind.

The paper re-labelled its safe answers with DeepSeek-R1 into a genuine refusal, a harmless
misunderstanding, and evasive / irrelevant kinds (prompt unknown). This judge asks any
OpenAI-compatible model with the versioned prompt ``resources/taxonomy_judge_prompt.txt`` (see the
``.md`` beside it) for one of five classes: ``unsafe`` or one of ``SAFE_KINDS``.

Requests go through ``OpenAIBackend`` (text only), which owns the HTTP client, the API key,
concurrency and the retries of transport failures; the replies and errors it returns are already
scrubbed of the key, so the verdicts (raw reply, error excerpt) and log lines never hold it. On
top of that this judge parses the reply strictly: after stripping whitespace, an optional leading
``<think>…</think>`` block and an optional ```` ```json ```` fence, the reply must be exactly one
JSON object whose ``label`` is one of the five classes, spelled exactly. Anything else is asked
again (``max_parse_retries`` more times); a reply that is still unparseable becomes an ``error``
verdict, never a guess.
"""

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

from mirsafety.core.taxonomy import SAFE_KINDS
from mirsafety.judging.base import Judge, JudgeItem, Verdict
from mirsafety.models.backend import Request
from mirsafety.models.openai_api import OpenAIBackend, excerpt

log = logging.getLogger(__name__)

#: The versioned prompt shipped with the workflow (``<repo>/resources``).
DEFAULT_PROMPT_PATH = (Path(__file__).resolve().parents[4] / "resources"
                       / "taxonomy_judge_prompt.txt")
#: What the judge may answer; everything but ``unsafe`` is a safe kind.
CLASSES = ("unsafe",) + SAFE_KINDS
PLACEHOLDERS = ("behavior", "prompt", "generation")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
_FENCE = re.compile(r"\A```(?:json)?[ \t]*\n?(.*?)\n?[ \t]*```\Z", re.DOTALL | re.IGNORECASE)
_THINK = re.compile(r"\A<think>.*?</think>", re.DOTALL)
#: Characters of an unparseable reply quoted in an error verdict.
EXCERPT_CHARS = 120


def _quote(reply: str | None) -> str:
    """A reply on one short line, for an error verdict or a log line."""
    return excerpt(reply or "", EXCERPT_CHARS)


class UnparseableReply(ValueError):
    """The judge's reply is not one JSON object with a known label."""


def load_prompt(path) -> str:
    """The prompt template; it must hold each placeholder at least once."""
    template = Path(path).read_text(encoding="utf-8")
    missing = [name for name in PLACEHOLDERS if "{" + name + "}" not in template]
    if missing:
        raise ValueError(f"judge prompt {path} lacks the placeholder(s) "
                         + ", ".join("{" + name + "}" for name in missing))
    return template


def fill_prompt(template: str, behavior: str, prompt: str, generation: str) -> str:
    """Substitute the three placeholders in one pass (plain replacement, never ``str.format``).

    One pass, rather than three chained ``str.replace`` calls, so that a value that itself
    contains ``{generation}`` (say) is never substituted again; any other braces are kept as is.
    """
    values = {"behavior": behavior or "", "prompt": prompt or "", "generation": generation or ""}
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def _reject_duplicate_keys(pairs):
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise UnparseableReply("duplicate keys")
    return dict(pairs)


def parse_reply(text: str | None) -> str:
    """The label of a judge reply, or raise UnparseableReply (with a short reason)."""
    if text is None:
        raise UnparseableReply("no reply")
    body = text.strip()
    body = _THINK.sub("", body, count=1).strip()  # a reasoning model's inline thinking
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    if not body:
        raise UnparseableReply("empty reply")
    try:
        value = json.loads(body, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as error:  # not JSON, or extra data (two objects, prose after)
        raise UnparseableReply(f"not one JSON value: {error.msg}") from None
    except RecursionError:
        raise UnparseableReply("JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise UnparseableReply(f"a JSON {type(value).__name__}, not an object")
    if "label" not in value:
        raise UnparseableReply("no label")
    label = value["label"]
    if not isinstance(label, str) or label not in CLASSES:
        raise UnparseableReply(f"unknown label {label!r}")
    return label


class LLMJudge(Judge):
    """Five-way labels from a chat model behind an OpenAI-compatible endpoint.

    The backend settings are those of ``OpenAIBackend`` (``max_retries`` retries transport
    failures); ``temperature`` defaults to 0 and ``max_tokens`` to the server's default (a
    reasoning model needs room to think). ``max_parse_retries`` counts extra requests for an
    item whose reply could not be parsed, so at most ``max_parse_retries + 1`` replies are read.
    ``sleep``, ``rng`` and ``jitter_seed`` are passed to the backend (tests need not wait).
    """

    name = "llm"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        prompt_path=DEFAULT_PROMPT_PATH,
        max_parse_retries: int = 2,
        max_concurrency: int = 4,
        max_retries: int = 5,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        timeout_s: float = 120.0,
        temperature: float | None = 0.0,
        top_p: float | None = None,
        seed: int | None = None,
        max_tokens: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng=None,
        jitter_seed: int | None = None,
    ):
        if int(max_parse_retries) < 0:
            raise ValueError(f"max_parse_retries must be >= 0, got {max_parse_retries}")
        self.max_parse_retries = int(max_parse_retries)
        self.prompt_path = Path(prompt_path)
        self.template = load_prompt(self.prompt_path)
        self.prompt_sha256 = hashlib.sha256(self.prompt_path.read_bytes()).hexdigest()
        self.backend = OpenAIBackend(
            base_url=base_url, model=model, api_key_env=api_key_env,
            max_concurrency=max_concurrency, max_retries=max_retries,
            backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s, timeout_s=timeout_s,
            temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed,
            sleep=sleep, rng=rng, jitter_seed=jitter_seed,
        )

    def __repr__(self) -> str:
        return f"LLMJudge({self.backend!r}, prompt={self.prompt_path.name})"

    @property
    def identity(self) -> dict:
        """What the verdicts depend on (no key): to record beside them or to key a cache."""
        return {"judge": self.name, "model": self.backend.model, "base_url": self.backend.base_url,
                "decoding": dict(self.backend.decoding), "prompt": self.prompt_path.name,
                "prompt_sha256": self.prompt_sha256, "max_parse_retries": self.max_parse_retries}

    def judge(self, items: list[JudgeItem]) -> list[Verdict]:
        """One Verdict per item, in order; unparseable replies are re-asked in batches."""
        items = list(items)
        verdicts: list[Verdict | None] = [None] * len(items)
        prompts = [fill_prompt(self.template, item.behavior, item.prompt, item.generation)
                   for item in items]
        replies: list[str | None] = [None] * len(items)
        pending = list(range(len(items)))
        attempts = self.max_parse_retries + 1
        for attempt in range(1, attempts + 1):
            if not pending:
                break
            requests = [Request(uid=items[i].uid, prompt=prompts[i], images=[]) for i in pending]
            results = self.backend.generate(requests)
            still = []
            for i, result in zip(pending, results):
                uid = items[i].uid
                if result.status != "ok":
                    verdicts[i] = Verdict(uid, "error", raw=replies[i],
                                          error=f"judge request failed: {result.error}")
                    continue
                replies[i] = result.raw_output
                try:
                    label = parse_reply(replies[i])
                except UnparseableReply as why:
                    log.info("%s: unparseable judge reply (%s) on attempt %d/%d: %s", uid, why,
                             attempt, attempts, _quote(replies[i]))
                    still.append(i)
                    continue
                if label == "unsafe":
                    verdicts[i] = Verdict(uid, "unsafe", raw=replies[i])
                else:
                    verdicts[i] = Verdict(uid, "safe", raw=replies[i], safe_kind=label)
            pending = still
        noun = "attempt" if attempts == 1 else "attempts"
        for i in pending:
            log.warning("%s: unparseable judge reply after %d %s", items[i].uid, attempts, noun)
            verdicts[i] = Verdict(
                items[i].uid, "error", raw=replies[i],
                error=f"unparseable judge reply after {attempts} {noun}: "
                      f"{_quote(replies[i])}")
        counts = {}
        for verdict in verdicts:
            key = verdict.safe_kind or verdict.label
            counts[key] = counts.get(key, 0) + 1
        log.info("%s judge: %d items: %s", self.backend.model, len(items),
                 ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        return verdicts

    def close(self) -> None:
        self.backend.close()
