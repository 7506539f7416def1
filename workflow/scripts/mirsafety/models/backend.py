"""The contract between the generation loop and a backend.

A backend turns a batch of ``Request``s into one ``Result`` each, in the same order. It never
raises for a single bad item: the item's Result has ``status="failed"`` and the reason, so a shard
always accounts for every instance (a failed generation is later judged ``error``, never safe).
A transformers backend can also be handed a ``CaptureHook`` that records something (attention
entropy) while it generates.
"""

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from PIL import Image


@dataclass
class Request:
    """One prompt to one model: images first, then the text, as in the released MIR code."""

    uid: str
    prompt: str
    images: list[Image.Image]
    system_prompt: str | None = None


@dataclass
class Result:
    """What came back for one Request. Token counts are None where a backend cannot know them."""

    uid: str
    status: str  # "ok" | "failed"
    raw_output: str | None = None
    error: str | None = None
    prompt_tokens: int | None = None
    image_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    latency_s: float | None = None
    entropy: dict | None = None  # attention entropy captured during generation, when asked
    # The generated ids behind raw_output, EOS excluded (None where unknown: APIs, imports): the
    # entropy stage scores these, since re-encoding the decoded text need not give them back.
    token_ids: list[int] | None = None


class Backend:
    """Base class; subclasses implement ``generate`` and may hold a loaded model."""

    def generate(self, requests: list[Request]) -> list[Result]:
        raise NotImplementedError

    def generation_config(self) -> dict:
        """The decoding settings in force, exactly as sent to the model or API (for provenance:
        a shard's meta records them, defaults included)."""
        return {}

    def close(self) -> None:
        """Release the model or connection pool (default: nothing to release)."""


class CaptureHook(Protocol):
    """Something to record while a transformers backend generates (the entropy package's
    ``EntropyHook``). It is handed in, never imported here: models must not depend on it."""

    def prepare(self, model) -> None:
        """Make the freshly loaded model ready to be recorded."""

    def generating(self, model, inputs, image_token_id) -> AbstractContextManager:
        """The context around one ``model.generate(**inputs, ...)``; it yields a handle whose
        ``result()``, after the block, has ``summary(row, n_tokens)`` for a batch row."""
