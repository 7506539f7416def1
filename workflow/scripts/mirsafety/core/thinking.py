"""Separate a model's visible answer from its thinking, in the order the MIR code used.

The judge sees only the answer; the thinking is kept beside it (the released code threw it away).
Order ("auto"): text from the first ``<answer>`` to the last ``</answer>`` (to the end if
unclosed; the authors' code cuts at the last too); else after the last
``</think>``; else after the last ``◁/think▷`` (Kimi-VL); else the whole text.
"""

import re

ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
THINK_CLOSE = "</think>"
KIMI_CLOSE = "◁/think▷"
#: Every tag a thinking model writes (kept when decoding, even where they are special tokens).
TAG_TEXTS = ("<think>", THINK_CLOSE, "◁think▷", KIMI_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
TAGS = re.compile(r"</?think>|◁/?think▷|</?answer>")

#: Which rules each thinking format applies, in order.
FORMATS = {
    "auto": ("answer", "think", "kimi"),
    "answer": ("answer",),
    "think": ("think",),
    "kimi": ("kimi",),
    "none": (),
}


def _clean(text: str) -> str:
    return TAGS.sub("", text).strip()


def _split(text: str, rule: str):
    """(answer, thinking) by one rule, or None when the rule's tag is absent."""
    if rule == "answer" and ANSWER_OPEN in text:
        before, _, rest = text.partition(ANSWER_OPEN)
        answer, _, after = rest.rpartition(ANSWER_CLOSE) if ANSWER_CLOSE in rest else (rest, "", "")
        return answer, before + after
    close = {"think": THINK_CLOSE, "kimi": KIMI_CLOSE}.get(rule)
    if close and close in text:
        thinking, _, answer = text.rpartition(close)
        return answer, thinking
    return None


def split_thinking(text: str, fmt: str = "auto") -> tuple[str, str | None]:
    """Return ``(answer, thinking)``; thinking is None when the output had none."""
    for rule in FORMATS[fmt]:
        parts = _split(text, rule)
        if parts is not None:
            answer, thinking = parts
            return _clean(answer), (_clean(thinking) or None)
    return text.strip(), None
