"""The contract between the judging loop and a judge.

The loop hands a judge only answers that were generated successfully: a failed generation is
labelled ``error`` by the loop itself and never reaches a judge, so it can never be counted safe.
A judge returns one Verdict per item, in order, and never raises for a single item: what it
cannot decide is an ``error`` verdict with the reason.
"""

from dataclasses import dataclass

LABELS = ("unsafe", "safe", "error")


@dataclass
class JudgeItem:
    """One answer to judge. ``behavior`` is the seed question (HarmBench's "behavior")."""

    uid: str
    behavior: str  # the instance's original_question
    generation: str  # the answer with the thinking stripped
    prompt: str  # the revised multi-image prompt the model was asked
    context: str | None = None  # the image descriptions, for the contextual HarmBench variant


@dataclass
class Verdict:
    uid: str
    label: str  # one of LABELS
    raw: str | None = None  # the judge's own output (token, text), kept for audit
    score: float | None = None  # e.g. P("Yes") for the HarmBench classifier
    safe_kind: str | None = None  # for a taxonomy judge's safe labels: one of core.taxonomy.SAFE_KINDS
    error: str | None = None
    clipped: bool | None = None  # the answer was cut before judging (None: this judge never cuts)


class Judge:
    def judge(self, items: list[JudgeItem]) -> list[Verdict]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the model or connection pool (default: nothing to release)."""
