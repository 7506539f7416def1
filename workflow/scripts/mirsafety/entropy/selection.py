"""Which response tokens count, and how their per-row entropies become one record's numbers.

Selection (``selection``): ``all`` response tokens; ``answer``, only the tokens of the answer
after the thinking (located as the answer text's character span in the response, mapped to
tokens through the tokenizer's offsets, or for generated ids through decoding them:
:func:`prefix_spans`; when it cannot be located, all tokens are used and ``answer_fallback`` is
set); ``first_n``, the first N response tokens.

:func:`summarise` turns the selected rows' values into the record: each quantity averaged over
the rows per layer, then over the layers (``*_mean``), with the key counts' min/max/mean. Both
the teacher-forced pass and the in-generation capture report through it, so their records have
one form.
"""

import math

import torch

from mirsafety.core.thinking import split_thinking
from mirsafety.entropy.kernel import QUANTITIES

__all__ = ["SELECTIONS", "prefix_spans", "select_tokens", "summarise", "token_offsets"]

SELECTIONS = ("all", "answer", "first_n")


def _number(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def _stats(counts: torch.Tensor) -> dict:
    if counts.numel() == 0:
        return {"min": None, "max": None, "mean": None}
    counts = counts.float()
    return {"min": int(counts.min()), "max": int(counts.max()), "mean": float(counts.mean())}


def summarise(per_row: dict, n_keys: torch.Tensor, n_image_keys: torch.Tensor, layers) -> dict:
    """Per-layer means over rows ({quantity: (r, L)}) and their mean over layers; None where a
    value is undefined (no rows, or no image keys)."""
    out = {"layers": list(layers), "n_tokens": int(n_keys.numel())}
    for name in QUANTITIES:
        rows = per_row[name].double().reshape(-1, len(layers))
        per_layer = [_number(v) for v in _nanmean_or_nan(rows)]
        out[name] = per_layer
        defined = [v for v in per_layer if v is not None]
        out[f"{name}_mean"] = sum(defined) / len(defined) if defined and len(defined) == len(
            per_layer) else None
    out["n_keys"] = _stats(n_keys)
    out["n_image_keys"] = _stats(n_image_keys)
    return out


def _nanmean_or_nan(rows: torch.Tensor) -> torch.Tensor:
    """Column means ignoring NaN (a row that sees no image key), NaN for a column with none."""
    valid = ~torch.isnan(rows)
    total = torch.where(valid, rows, 0.0).sum(0)
    count = valid.sum(0)
    return torch.where(count > 0, total / count.clamp(min=1), torch.nan)


def select_tokens(n_tokens: int, selection: str = "all", first_n: int | None = None, *,
                  response_text: str | None = None, offsets=None, answer: str | None = None,
                  thinking_format: str = "auto") -> tuple[list[int], bool]:
    """Indices of the selected response tokens and whether ``answer`` fell back to all.

    For ``answer``: the answer text (given, else split from ``response_text`` by
    ``thinking_format``) is located as its last occurrence in ``response_text``; tokens whose
    character span (``offsets``: (start, end) per token) overlaps it are selected.
    """
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, not {selection!r}")
    everything = list(range(n_tokens))
    if selection == "all":
        return everything, False
    if selection == "first_n":
        if first_n is None or first_n < 1:
            raise ValueError("selection first_n needs first_n >= 1")
        return everything[:first_n], False
    if response_text is None or offsets is None:
        raise ValueError("selection 'answer' needs the response text and its token offsets")
    if answer is None:
        answer = split_thinking(response_text, thinking_format)[0]
    start = response_text.rfind(answer) if answer else -1
    if start < 0:
        return everything, True
    end = start + len(answer)
    chosen = [i for i, (a, b) in enumerate(offsets) if b > start and a < end]
    return (chosen, False) if chosen else (everything, True)


def token_offsets(tokenizer, text: str, ids: list[int]) -> list[tuple[int, int]]:
    """(start, end) character span of each token of ``text`` (tokenised as ``ids``).

    The tokenizer's own offsets where it has them (fast tokenizers); else :func:`prefix_spans`."""
    try:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = [tuple(span) for span in encoded["offset_mapping"]]
        if len(offsets) == len(ids):
            return offsets
    except (NotImplementedError, ValueError, TypeError, KeyError):
        pass
    return prefix_spans(lambda part: tokenizer.decode(part, skip_special_tokens=False), ids, text)


def prefix_spans(decode, ids: list[int], text: str) -> list[tuple[int, int]]:
    """(start, end) character span in ``text`` of each of ``ids``, from decoding growing prefixes
    (``decode``: ids to text; ``text``: what all of ``ids`` decode to).

    Never by re-encoding ``text``, which need not give ``ids`` back. A token that ends inside a
    character (a byte-level BPE's partial UTF-8: its prefix decodes to a U+FFFD that ``text`` does
    not have there) gets the span of that character, as do the tokens up to the one completing
    it; a token that adds no text elsewhere (a special token ``decode`` drops) gets an empty
    span. Quadratic in the tokens, which is cheap beside the model's pass over them."""
    spans, start, waiting = [], 0, 0
    for k in range(len(ids)):
        prefix = decode(ids[: k + 1])
        waiting += 1
        if text.startswith(prefix):
            end = max(start, len(prefix))
            spans += [(start, end)] * waiting
            start, waiting = end, 0
    return spans + [(start, len(text))] * waiting
