"""Attention entropy of a model's response tokens, reduced on the spot (stage 5).

Definition (our choice; the paper does not say how it computed its entropies)
------------------------------------------------------------------------------
For every decoder layer of the language model (the attention modules that carry a ``layer_idx``;
the vision tower is left alone) and every head, take the attention distribution ``p`` of one
query row over its keys, after the causal and padding masks (a masked key has probability 0 and
does not count as a key):

* ``H = -sum_j p_j log p_j`` over all the row's keys (nats), and ``H_norm = H / log(n)`` with
  ``n`` the number of keys the row may attend to (0 when ``n == 1``), so ``H_norm`` is in [0, 1];
* ``H_img``: the same over the *image-token* keys only, with ``p`` renormalised to sum to one over
  them, and ``H_img_norm = H_img / log(n_img)`` (undefined when the row sees no image key, 0 when it
  sees one). Image-token keys are the positions holding the processor's image token
  (``<|image_pad|>`` for Qwen2-VL, ``<image>`` for Idefics3): the image embeddings themselves,
  not the tags around them.

Each quantity is averaged over the heads (per row and layer), then over the selected response
rows (per layer), and the per-layer values are averaged over the layers (``*_mean``).

Which rows. Response token ``k`` (0-based) sits at position ``P + k`` of the teacher-forced
sequence (``P`` prompt tokens). By default (``align="generating"``) the row used for token ``k``
is the query that *produced* it, at position ``P + k - 1``: the last prompt row for the first
token, then each response token's row for the next. This is exactly what a generation computes
(prefill's last row, then one row per decode step), so the in-generation capture
(:func:`generate_with_entropy`) and the teacher-forced pass (:class:`EntropyExtractor`) give the
same numbers. ``align="response"`` takes the response tokens' own rows (``P + k``) instead.
Selection (``selection``): ``all`` response tokens; ``answer``, only the tokens of the answer
after the thinking (located as the answer text's character span in the raw response, mapped to
tokens through the tokenizer's offsets; when it cannot be located, all tokens are used and
``answer_fallback`` is set); ``first_n``, the first N response tokens.

How. A custom attention function, registered with transformers' ``AttentionInterface`` under
:data:`NAME` (plus the SDPA mask function under the same name in ``AttentionMaskInterface``, so
the model builds the masks it builds for SDPA), returns the ordinary SDPA output, so the forward
pass is not perturbed. Only while a capture is active (a context variable) and only for the rows
of interest, it recomputes the attention of those query rows, in chunks, and reduces each row to
its entropies at once, in float32: with the module's scaling, the causal/padding mask (also when
SDPA received no mask object and relied on ``is_causal``: then SDPA's own upper-left causal rule)
and grouped-query attention (a key/value head's query heads are stacked, no key is repeated).
Two equivalent ways, tested against each other and against eager attention:

* explicit (any device, any mask): ``softmax(QK^T)`` of at most ``chunk_elements`` scores at a
  time, ``H = sum entr(p)``;
* fused (CPU, boolean or no mask): one flash-attention call with the keys as values gives each
  row's log-sum-exp and expected key, and ``H = logsumexp(s) - E_p[s]`` with
  ``E_p[s] = scale * q . E_p[k]`` -- no score matrix at all. Causal rows are split into the keys
  before the chunk (no mask) and the chunk's own triangle (``is_causal``), merged by
  log-sum-exp; ``H_img`` is the same over the image keys alone.

Nothing of size layers x heads x T x T is ever held. Load a VLM with
``attn_implementation=attn_implementation_for(config)``, i.e.
``{"text_config": NAME, "vision_config": "sdpa"}``.

In a generation (:func:`capture_generation`, :func:`generate_with_entropy`) each step only keeps
its last query row; every ``block`` steps (and at the end) the kept rows are reduced together
against that layer's cached keys, which do not change for earlier positions: the same numbers as
the teacher-forced pass, for a few percent of the generation's time.

The teacher-forced input is exactly the generation's input (same chat template with the system
prompt and ``add_generation_prompt=True``, same images, same processor call as
``backends/hf.py``) with the response's token ids appended: the raw response text tokenised
without special tokens (or the generated ids themselves, when given). Appending ids, rather than
re-tokenising prompt + response as one string, keeps the prompt's tokens identical to what the
model saw (a BPE may merge across the boundary, e.g. ``"\\n"`` + ``"\\n\\n"``). Per-token inputs are
extended for the appended tokens (``attention_mask`` with ones, ``mm_token_type_ids`` and
``token_type_ids`` with zeros); the model's own forward then builds the positions (Qwen2.5-VL's
3-D rope index included) as it does in a generation's prefill.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import logging
import math
from dataclasses import dataclass, field

import torch
import transformers
from transformers import AttentionInterface, AutoConfig
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from mirsafety.models.backend import Request
from mirsafety.models.hf import DTYPES, chat_messages
from mirsafety.models.processors import load_processor
from mirsafety.core.thinking import split_thinking

log = logging.getLogger(__name__)

__all__ = [
    "NAME",
    "QUANTITIES",
    "SELECTIONS",
    "EntropyExtractor",
    "GenerationEntropy",
    "RowEntropies",
    "attn_implementation_for",
    "capture_generation",
    "capture_rows",
    "enable_entropy_attention",
    "entropy_attention_forward",
    "entropy_forward",
    "generate_with_entropy",
    "select_tokens",
    "summarise",
    "token_offsets",
]

NAME = "mirsafety_entropy"
#: The four per-row quantities, in the order they are stored.
QUANTITIES = ("entropy_all", "entropy_img", "entropy_all_norm", "entropy_img_norm")
SELECTIONS = ("all", "answer", "first_n")
#: Scores per chunk (batch x heads x rows x keys): 2**20 float32 = 4 MiB, a few such buffers live.
CHUNK_ELEMENTS = 1 << 20
# Finite "minus infinity" for masked scores: softmax gives exactly 0 there, and a row with no
# allowed key (never a selected one) stays finite instead of turning into NaN.
_NEG = torch.finfo(torch.float32).min

_ACTIVE: contextvars.ContextVar[_Capture | None] = contextvars.ContextVar("entropy_capture",
                                                                          default=None)


# ----------------------------------------------------------------------------------------------
# The attention function
# ----------------------------------------------------------------------------------------------

@dataclass
class _Pending:
    """A layer's generation rows not reduced yet (see :func:`_defer`)."""

    queries: list = field(default_factory=list)  # (B, H, 1, D) each
    masks: list = field(default_factory=list)  # None or the row's mask (B|1, 1|H, 1, K_n)
    lengths: list = field(default_factory=list)  # keys visible to a row whose mask is None
    key: torch.Tensor | None = None  # the layer's keys at its latest call
    scaling: float | None = None
    every_step: bool = False


@dataclass
class _Capture:
    """What to reduce while active, and what was reduced.

    mode "rows": one forward pass without a cache; ``rows`` (B, T) bool marks the query rows,
    reduced during that pass. mode "last": every forward call (a generation's prefill and decode
    steps) contributes its last query row; rows are kept (one (B, H, D) query each) and reduced
    ``block`` at a time against the layer's keys of a later step (keys of earlier positions do not
    change in a cache), and the rest when the capture ends.
    """

    mode: str
    rows: torch.Tensor | None = None
    image_keys: torch.Tensor | None = None  # (B, P) bool: key positions holding image tokens
    layers: frozenset | None = None
    chunk_elements: int = CHUNK_ELEMENTS
    keep_probs: bool = False
    block: int = 256
    # layer -> list of (row positions (r,), {quantity: (B, r)}, n_keys (B, r), n_img (B, r))
    records: dict = field(default_factory=dict)
    probs: dict = field(default_factory=dict)  # layer -> list of (B, H, r, K), tests only
    pending: dict = field(default_factory=dict)  # layer -> _Pending (mode "last")
    _columns: tuple | None = None

    def image_columns(self):
        if self._columns is None:
            self._columns = (_image_columns(self.image_keys),)
        return self._columns[0]


def _rows_for_call(capture: _Capture, q_len: int) -> torch.Tensor:
    """Query positions this forward call must reduce (mode "rows")."""
    if capture.rows.shape[1] != q_len:
        raise RuntimeError(f"entropy capture expected one pass over {capture.rows.shape[1]} "
                           f"tokens, the attention saw {q_len} query rows (is a cache in use?)")
    return capture.rows.any(0).nonzero().flatten()


# A row chunk's masking, as the reductions see it:
#   ("causal", positions)      each row sees the keys up to its position (SDPA without a mask);
#   ("none", None)             every key (one query row, e.g. a decode step);
#   ("mask", allowed, additive) a bool mask (B|1, 1|H, c, K) and an additive float one or None.


def _row_specs(attention_mask, k_len, causal):
    """spec(start, stop, rows) for rows of one forward call (mode "rows")."""
    def spec(start, stop, rows):
        if attention_mask is None:
            return ("causal", rows) if causal else ("none", None)
        mask = attention_mask.index_select(-2, rows)[..., :k_len]
        if mask.dtype == torch.bool:
            return ("mask", mask, None)
        # An additive float mask (eager-style): masked keys hold the dtype's minimum.
        return ("mask", mask > torch.finfo(mask.dtype).min / 2, mask.float())

    spec.kind = "mask" if attention_mask is not None else ("causal" if causal else "none")
    return spec


def _image_columns(image_keys):
    """(columns (n,), which batch rows hold an image there (B, 1, 1, n) or None when all do) for
    the union of the batch's image-key positions; None without image keys."""
    if image_keys is None or not bool(image_keys.any()):
        return None
    columns = image_keys.any(0).nonzero().flatten()
    held = image_keys.index_select(1, columns)
    return columns, (None if bool(held.all()) else held[:, None, None, :])


def _allowed(spec, k_len, device):
    """(allowed bool (b, h, c, K) or None for every key, additive float or None) of a spec."""
    if spec[0] == "none":
        return None, None
    if spec[0] == "causal":
        keys = torch.arange(k_len, device=device)
        return (keys[None, :] <= spec[1][:, None])[None, None], None
    return spec[1], spec[2]


def _explicit_chunk(q, keys_t, spec, columns, held, group, position_bias, keep_probs):
    """Entropies of a chunk of rows from their materialised probabilities (any device, any mask).

    q (B, H, c, D) float, already scaled; keys_t (B, Hkv, D, K). Returns (H, n, H_img, n_img),
    each (B, H, c), and the probabilities (B, H, c, K) when ``keep_probs``.
    """
    batch, heads, c, dim = q.shape
    kv_heads, k_len = keys_t.shape[1], keys_t.shape[3]
    # Group the query heads over their key/value head (repeat_kv's order: h = kv * group + g).
    scores = torch.matmul(q.reshape(batch, kv_heads, group * c, dim), keys_t)
    scores = scores.view(batch, heads, c, k_len)
    allowed, additive = _allowed(spec, k_len, q.device)
    if additive is not None:
        scores += additive
    if position_bias is not None:
        scores += position_bias
    if allowed is not None:
        scores.masked_fill_(~allowed, _NEG)
        count = allowed.sum(-1).expand(batch, heads, c)  # counted before broadcasting
    else:
        count = torch.full((batch, heads, c), k_len, device=q.device)
    h_img = img_count = None
    if columns is not None:
        # Masked keys already hold _NEG; other batch rows' image columns are masked here.
        img_scores = scores.index_select(-1, columns)
        visible = None if allowed is None else allowed.index_select(-1, columns)
        if held is not None:
            visible = held if visible is None else (visible & held)
            img_scores.masked_fill_(~visible, _NEG)
        img_count = (torch.full((batch, heads, c), columns.numel(), device=q.device)
                     if visible is None else visible.sum(-1).expand(batch, heads, c))
        h_img = torch.special.entr(torch.softmax(img_scores, -1)).sum(-1)
        del img_scores
    probs = torch.softmax(scores, -1)  # exactly 0 at masked keys
    del scores
    h_all = torch.special.entr(probs).sum(-1)
    return h_all, count, h_img, img_count, (probs if keep_probs else None)


_FLASH_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
#: Use the fused CPU kernel where it applies (tests switch it off to check the other path).
USE_FUSED = _FLASH_CPU is not None


def _attend(q, key, group, scale, mask=None, causal=False):
    """(log-sum-exp (B, H, c), expected key (B, H, c, D)) of rows q (B, H, c, D) over ``key``
    (B, Hkv, K, D), from one fused flash-attention call with the keys as values.

    The rows of a key/value head's query heads are stacked so no key is copied; ``mask`` is a
    float (b, 1, c, K) mask or None; ``causal`` aligns the rows with the keys' start (then the
    keys are repeated per query head, as the causal pattern is per row)."""
    batch, heads, c, dim = q.shape
    kv_heads = key.shape[1]
    if causal:
        key = key.repeat_interleave(group, 1) if group > 1 else key
        out, lse = _FLASH_CPU(q, key, key, is_causal=True, scale=scale)
        return lse.reshape(batch, heads, c), out.reshape(batch, heads, c, dim)
    if mask is not None and group > 1:
        mask = mask.repeat(1, 1, group, 1)
    out, lse = _FLASH_CPU(q.reshape(batch, kv_heads, group * c, dim), key, key, attn_mask=mask,
                          scale=scale)
    return lse.reshape(batch, heads, c), out.reshape(batch, heads, c, dim)


def _merge(first, second):
    """Combine (lse, expected key) of two disjoint key sets into those of their union."""
    (lse1, out1), (lse2, out2) = first, second
    lse = torch.logaddexp(lse1, lse2)
    out = out1 * torch.exp(lse1 - lse)[..., None] + out2 * torch.exp(lse2 - lse)[..., None]
    return lse, out


def _entropy_from(q, scale, lse, out):
    """H = log Z - E_p[s], with E_p[s] = scale * q . E_p[k] (exact for a boolean mask)."""
    return (lse - scale * (q * out).sum(-1)).clamp_(min=0)


def _float_mask(allowed):
    return torch.zeros(allowed.shape, device=allowed.device).masked_fill_(~allowed, -math.inf)


def _fused_chunk(q, key, spec, columns, held, group, scale):
    """Entropies of a chunk of rows through the fused CPU kernel, without materialising a row.

    q (B, H, c, D) float (unscaled), key (B, Hkv, K, D) float; boolean or no masks only.
    Returns (H, n, H_img, n_img), each (B, H, c) (H_img/n_img None without image keys), or None
    where the chunk needs the explicit path.
    """
    batch, heads, c, _ = q.shape
    k_len = key.shape[2]
    kind = spec[0]
    full = (batch, heads, c)
    if kind == "causal":
        positions = spec[1]
        start = int(positions[0])
        if int(positions[-1]) - start != c - 1 or start + c > k_len:
            return None  # not one contiguous run of rows
        tail = _attend(q, key[:, :, start:start + c], group, scale, causal=True)
        found = tail if start == 0 else _merge(
            _attend(q, key[:, :, :start], group, scale), tail)
        count = (positions + 1).expand(full)
        allowed = None
    elif kind == "none":
        found, count, allowed = _attend(q, key, group, scale), torch.full(full, k_len), None
    else:
        allowed, additive = spec[1], spec[2]
        if additive is not None or allowed.shape[1] != 1:
            return None  # additive or per-head masks: explicit path
        found = _attend(q, key, group, scale, mask=_float_mask(allowed))
        count = allowed.sum(-1).expand(full)
    h_all = _entropy_from(q, scale, *found)
    if columns is None:
        return h_all, count, None, None
    image_key = key.index_select(2, columns)
    if kind == "causal":
        visible = None if int(columns[-1]) <= start else (
            columns[None, :] <= spec[1][:, None])[None, None]
    else:
        visible = None if allowed is None else allowed.index_select(-1, columns)
    if held is not None:
        visible = held if visible is None else (visible & held)
    if visible is None:
        img_count = torch.full(full, columns.numel())
        found = _attend(q, image_key, group, scale)
    else:
        img_count = visible.sum(-1).expand(full)
        found = _attend(q, image_key, group, scale, mask=_float_mask(visible))
    return h_all, count, _entropy_from(q, scale, *found), img_count


def _reduce_rows(query, key, rows, spec, *, scaling, image_columns,
                 chunk_elements=CHUNK_ELEMENTS, position_bias=None, keep_probs=False):
    """Entropies of the query rows ``rows`` (r,) of ``query``, chunk by chunk.

    query (B, H, Q, D), key (B, Hkv, K, D); ``spec(start, stop, chunk_rows)`` gives a chunk's
    masking (``spec.kind``: "causal", "none" or "mask" for every chunk); ``image_columns`` from
    :func:`_image_columns`. Returns ({quantity: (B, r)} head means, n_keys (B, r), n_img (B, r),
    probabilities (B, H, r, K) or None).

    On CPU the fused flash kernel gives each row's log-sum-exp and expected key at once
    (H = log Z - scale q . E_p[k]); elsewhere, or for additive masks and position biases, the
    probabilities of ``chunk_elements`` scores at a time are materialised and reduced.
    """
    batch, heads, _, dim = query.shape
    kv_heads, k_len = key.shape[1], key.shape[2]
    group = heads // kv_heads
    n_rows = rows.numel()
    key = key.float()
    scale = dim ** -0.5 if scaling is None else scaling
    columns = held = None
    if image_columns is not None:
        columns, held = image_columns
        if int(columns[-1]) >= k_len:  # only the keys seen so far
            keep = columns < k_len
            columns = columns[keep]
            held = None if held is None else held[..., keep]
        if not columns.numel():
            columns = held = None
    fused = (USE_FUSED and query.device.type == "cpu" and position_bias is None
             and not keep_probs)
    # Explicit: a chunk's scores (B, H, c, K) hold chunk_elements numbers. Fused: no score
    # matrix is held, only a mask of (B, group * c, K) where one is needed (else one chunk).
    per_row = batch * (group if fused else heads) * k_len
    step = max(1, chunk_elements // max(1, per_row))
    if fused and getattr(spec, "kind", "mask") != "mask":
        step = max(step, n_rows)
    outputs = {name: [] for name in QUANTITIES}
    n_keys, n_img, kept = [], [], []
    for start in range(0, n_rows, step):
        chunk_rows = rows[start:start + step]
        c = chunk_rows.numel()
        q = query.index_select(2, chunk_rows).float()
        chunk_spec = spec(start, start + c, chunk_rows)
        found = None
        if fused:
            try:
                found = _fused_chunk(q, key, chunk_spec, columns, held, group, scale)
            except RuntimeError as error:  # a kernel refusing its inputs: the explicit path
                log.warning("fused entropy kernel failed (%s); using the explicit path", error)
                fused = False
        if found is None:
            bias = (None if position_bias is None
                    else position_bias.index_select(-2, chunk_rows)[..., :k_len].float())
            *found, probs = _explicit_chunk(q * scale, key.transpose(-1, -2), chunk_spec,
                                            columns, held, group, bias, keep_probs)
            if keep_probs:
                kept.append(probs)
        h_all, count, h_img, img_count = found
        if h_img is None:
            img_count = torch.zeros_like(count)
            h_img = torch.full(count.shape, torch.nan, device=count.device)
        else:
            h_img = torch.where(img_count > 0, h_img, torch.nan)
        outputs["entropy_all"].append(h_all.mean(1))
        outputs["entropy_img"].append(h_img.mean(1))
        outputs["entropy_all_norm"].append(_normalise(h_all, count).mean(1))
        outputs["entropy_img_norm"].append(_normalise(h_img, img_count).mean(1))
        n_keys.append(count[:, 0])
        n_img.append(img_count[:, 0])
    result = {name: torch.cat(parts, 1) for name, parts in outputs.items()}
    return (result, torch.cat(n_keys, 1), torch.cat(n_img, 1),
            torch.cat(kept, 2) if keep_probs else None)


def _normalise(entropy, count):
    """entropy / log(count); 0 for a single key, NaN for none."""
    log_n = torch.log(count.clamp(min=1).float())
    normed = entropy / torch.where(count > 1, log_n, 1.0)
    return torch.where(count > 1, normed, torch.where(count == 1, 0.0, torch.nan))


def _causal(module, is_causal, q_len) -> bool:
    """SDPA's rule when it got no mask: causal (upper-left) for several query rows."""
    flag = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    return bool(flag) and q_len > 1


def _defer(capture: _Capture, module, layer, query, key, attention_mask, scaling, is_causal):
    """Keep this call's last query row (a generation step) for a later, batched reduction.

    Kept lean: it runs once per layer and decode step."""
    state = capture.pending.get(layer)
    if state is None:
        state = capture.pending[layer] = _Pending()
        # A sliding-window cache drops old keys: reduce at once, while the keys line up.
        state.every_step = bool(getattr(module, "sliding_window", None))
    q_len, k_len = query.shape[2], key.shape[2]
    if q_len == 1:  # a decode step: the query is the row, the mask (if any) its row
        state.queries.append(query)
        state.masks.append(attention_mask)
        state.lengths.append(k_len)
    else:  # the prefill: keep copies of its last row, not its whole query and mask
        state.queries.append(query[:, :, -1:].clone())
        if attention_mask is None:
            state.masks.append(None)
            state.lengths.append(q_len if _causal(module, is_causal, q_len) else k_len)
        else:
            state.masks.append(attention_mask[..., -1:, :].clone())
            state.lengths.append(k_len)
    state.key, state.scaling = key, scaling
    if len(state.queries) >= capture.block or state.every_step:
        _flush(capture, layer, state)


def _flush(capture: _Capture, layer: int, state: _Pending) -> None:
    """Reduce a layer's pending rows against its latest keys (earlier positions unchanged)."""
    if not state.queries:
        return
    key = state.key
    batch, k_len, device = key.shape[0], key.shape[2], key.device
    queries = torch.cat(state.queries, 2)  # (B, H, N, D)
    rows = torch.arange(queries.shape[2], device=device)
    if all(mask is None for mask in state.masks):
        # Row n sees the keys before lengths[n]: causal at position lengths[n] - 1.
        positions = torch.tensor(state.lengths, device=device) - 1

        def spec(start, stop, chunk_rows):
            return ("causal", positions[start:stop])

        spec.kind = "causal"
    else:
        allowed_rows, additive_rows = [], []
        for mask, length in zip(state.masks, state.lengths):
            row_allowed = torch.zeros((batch, 1, 1, k_len), dtype=torch.bool, device=device)
            row_additive = torch.zeros((batch, 1, 1, k_len), device=device)
            if mask is None:
                row_allowed[..., :length] = True
            elif mask.dtype == torch.bool:
                row_allowed[..., : mask.shape[-1]] = mask[:, :1]
            else:
                row_allowed[..., : mask.shape[-1]] = mask[:, :1] > torch.finfo(mask.dtype).min / 2
                row_additive[..., : mask.shape[-1]] = mask[:, :1].float()
            allowed_rows.append(row_allowed)
            additive_rows.append(row_additive)
        allowed = torch.cat(allowed_rows, 2)
        additive = torch.cat(additive_rows, 2) if any(
            m is not None and m.dtype != torch.bool for m in state.masks) else None

        def spec(start, stop, chunk_rows):
            return ("mask", allowed[:, :, start:stop],
                    None if additive is None else additive[:, :, start:stop])

        spec.kind = "mask"

    with torch.no_grad():
        values, n_keys, n_img, _ = _reduce_rows(queries, key, rows, spec, scaling=state.scaling,
                                                image_columns=capture.image_columns(),
                                                chunk_elements=capture.chunk_elements)
    capture.records.setdefault(layer, []).append((rows, values, n_keys, n_img))
    state.queries, state.masks, state.lengths = [], [], []


def _finish(capture: _Capture) -> None:
    """Reduce every pending row and let go of the keys."""
    for layer, state in capture.pending.items():
        _flush(capture, layer, state)
        state.key = None


def entropy_attention_forward(module, query, key, value, attention_mask, dropout=0.0,
                              scaling=None, is_causal=None, **kwargs):
    """SDPA's output, unchanged; while a capture is active, also the selected rows' entropies."""
    output = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                    scaling=scaling, is_causal=is_causal, **kwargs)
    capture = _ACTIVE.get()
    if capture is None:
        return output
    layer = getattr(module, "layer_idx", None)
    if layer is None or (capture.layers is not None and layer not in capture.layers):
        return output
    if capture.mode == "last":  # the hot path of a generation: keep the row, nothing more
        if kwargs.get("position_bias") is not None:
            raise NotImplementedError("position_bias in the generation capture")
        _defer(capture, module, layer, query, key, attention_mask, scaling, is_causal)
        return output
    with torch.no_grad():
        q_len, k_len = query.shape[2], key.shape[2]
        rows = _rows_for_call(capture, q_len)
        spec = _row_specs(attention_mask, k_len, _causal(module, is_causal, q_len))
        values, n_keys, n_img, probs = _reduce_rows(
            query, key, rows, spec, scaling=scaling, image_columns=capture.image_columns(),
            chunk_elements=capture.chunk_elements, position_bias=kwargs.get("position_bias"),
            keep_probs=capture.keep_probs)
    capture.records.setdefault(layer, []).append((rows, values, n_keys, n_img))
    if probs is not None:
        capture.probs.setdefault(layer, []).append(probs)
    return output


AttentionInterface.register(NAME, entropy_attention_forward)
AttentionMaskInterface.register(NAME, sdpa_mask)


def attn_implementation_for(config) -> str | dict:
    """The ``attn_implementation`` that sends only the language model to the entropy function:
    ``{"text_config": NAME, <every other sub-config>: "sdpa"}``, or NAME for a text-only model."""
    subs = list(getattr(config, "sub_configs", {}) or {})
    if not subs:
        return NAME
    if "text_config" not in subs:
        raise ValueError(f"{type(config).__name__} has no text_config among {subs}")
    return {key: (NAME if key == "text_config" else "sdpa") for key in subs}


def enable_entropy_attention(model) -> None:
    """Switch an already loaded model's language model to the entropy function (SDPA otherwise)."""
    implementation = attn_implementation_for(model.config)
    model.set_attn_implementation(implementation)
    _check_model(model)


def _check_model(model) -> None:
    text = model.config.get_text_config()
    if text._attn_implementation != NAME:
        raise RuntimeError(f"the language model uses attention '{text._attn_implementation}', not "
                           f"'{NAME}': load it with attn_implementation="
                           f"{attn_implementation_for(model.config)!r} or call "
                           "enable_entropy_attention(model)")


# ----------------------------------------------------------------------------------------------
# Captures
# ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _activate(capture: _Capture):
    token = _ACTIVE.set(capture)
    try:
        yield capture
    finally:
        _ACTIVE.reset(token)


def _image_keys(input_ids, image_token_id):
    return None if image_token_id is None else input_ids == image_token_id


def _layers(layers):
    return None if layers is None else frozenset(int(x) for x in layers)


@dataclass
class RowEntropies:
    """Per-row entropies of one teacher-forced pass.

    ``positions`` (r,) are the query positions reduced (the union over the batch); ``selected``
    (B, r) says which of them were asked for in each batch row. Every quantity is (B, r, L), with
    L = ``len(layers)``; ``n_keys``/``n_image_keys`` are (B, r) (counted in the first layer).
    """

    layers: list
    positions: torch.Tensor
    selected: torch.Tensor
    values: dict
    n_keys: torch.Tensor
    n_image_keys: torch.Tensor
    probs: dict | None = None  # layer -> (B, H, r, K), only with keep_probs (tests)


@contextlib.contextmanager
def capture_rows(rows, image_keys=None, *, layers=None, chunk_elements=CHUNK_ELEMENTS,
                 keep_probs=False):
    """Reduce the query rows ``rows`` ((B, T) bool) of the next forward pass (no cache)."""
    capture = _Capture("rows", rows=rows, image_keys=image_keys, layers=_layers(layers),
                       chunk_elements=chunk_elements, keep_probs=keep_probs)
    with _activate(capture):
        yield capture


def _collect_rows(capture: _Capture) -> RowEntropies:
    if not capture.records:
        raise RuntimeError("no attention layer reported: is the model loaded with "
                           f"attn_implementation {NAME!r} for its language model?")
    layers = sorted(capture.records)
    for layer in layers:
        if len(capture.records[layer]) != 1:
            raise RuntimeError(f"layer {layer} ran {len(capture.records[layer])} times in one pass")
    positions = capture.records[layers[0]][0][0]
    values = {name: torch.stack([capture.records[l][0][1][name] for l in layers], -1)
              for name in QUANTITIES}
    first = capture.records[layers[0]][0]
    probs = ({l: capture.probs[l][0] for l in layers} if capture.keep_probs else None)
    return RowEntropies(layers, positions, capture.rows[:, positions], values, first[2],
                        first[3], probs)


def entropy_forward(model, inputs: dict, rows: torch.Tensor, image_token_id=None, *, layers=None,
                    chunk_elements=CHUNK_ELEMENTS, keep_probs=False, keep_logits=False):
    """One forward pass (no cache) reducing the rows ``rows`` ((B, T) bool) to entropies.

    Returns (RowEntropies, the model output). Only the last position's logits are computed
    unless ``keep_logits``.
    """
    _check_model(model)
    input_ids = inputs["input_ids"]
    kwargs = {"use_cache": False}
    if not keep_logits and "logits_to_keep" in inspect.signature(model.forward).parameters:
        kwargs["logits_to_keep"] = 1
    with torch.inference_mode(), capture_rows(rows.to(input_ids.device),
                                              _image_keys(input_ids, image_token_id),
                                              layers=layers, chunk_elements=chunk_elements,
                                              keep_probs=keep_probs) as capture:
        output = model(**inputs, **kwargs)
    return _collect_rows(capture), output


@dataclass
class GenerationEntropy:
    """Entropies recorded during a generation: one row per step (step ``k`` is the row that
    produced generated token ``k``). Quantities are (B, steps, L); n_keys/n_image_keys (B, steps).
    """

    layers: list
    values: dict
    n_keys: torch.Tensor
    n_image_keys: torch.Tensor
    prompt_length: int

    def summary(self, index: int = 0, n_tokens: int | None = None, tokens=None) -> dict:
        """Per-layer means over the first ``n_tokens`` steps of batch row ``index`` (or over the
        steps listed in ``tokens``), in the form :meth:`EntropyExtractor.extract` returns."""
        steps = self.values["entropy_all"].shape[1]
        picked = list(range(steps if n_tokens is None else min(n_tokens, steps))) \
            if tokens is None else list(tokens)
        index_t = torch.tensor(picked, dtype=torch.long)
        per_row = {name: v[index].cpu()[index_t] for name, v in self.values.items()}
        return summarise(per_row, self.n_keys[index].cpu()[index_t],
                         self.n_image_keys[index].cpu()[index_t], self.layers)


class _GenerationCapture:
    def __init__(self, capture: _Capture, prompt_length: int):
        self._capture, self.prompt_length = capture, prompt_length

    def result(self) -> GenerationEntropy:
        _finish(self._capture)
        records = self._capture.records
        if not records:
            raise RuntimeError("no attention layer reported during generation")
        layers = sorted(records)
        values = {name: torch.stack([torch.cat([r[1][name] for r in records[l]], 1)
                                     for l in layers], -1) for name in QUANTITIES}
        first = records[layers[0]]
        return GenerationEntropy(layers, values, torch.cat([r[2] for r in first], 1),
                                 torch.cat([r[3] for r in first], 1), self.prompt_length)


@contextlib.contextmanager
def capture_generation(model, inputs: dict, image_token_id=None, *, layers=None,
                       chunk_elements=CHUNK_ELEMENTS, block: int = 256):
    """Within this block, every forward call of ``model`` contributes its last query row (a
    generation's prefill, then each decode step). ``.result()`` after the block gives the
    :class:`GenerationEntropy`. Wrap exactly one ``model.generate(**inputs, ...)`` call.

    A step only keeps its query row (B x heads x head_dim numbers per layer); every ``block``
    steps, the kept rows are reduced together against the layer's cached keys of that step
    (earlier positions' keys do not change), the remaining ones when the block ends. This is
    the same computation as one reduction per step, at a fraction of the per-step cost.
    """
    _check_model(model)
    if image_token_id is None:
        image_token_id = getattr(model.config, "image_token_id", None)
    input_ids = inputs["input_ids"]
    capture = _Capture("last", image_keys=_image_keys(input_ids, image_token_id),
                       layers=_layers(layers), chunk_elements=chunk_elements, block=block)
    handle = _GenerationCapture(capture, input_ids.shape[1])
    with _activate(capture):
        yield handle
    _finish(capture)  # on success only: a failed generation's rows are simply dropped


def generate_with_entropy(model, inputs: dict, *, image_token_id=None, layers=None,
                          block: int = 256, **generate_kwargs):
    """``model.generate(**inputs, **generate_kwargs)`` recording the entropies of the row that
    produced each generated token. Returns (output ids, GenerationEntropy)."""
    with capture_generation(model, inputs, image_token_id, layers=layers,
                            block=block) as handle:
        output = model.generate(**inputs, **generate_kwargs)
    return output, handle.result()


# ----------------------------------------------------------------------------------------------
# Summaries and token selection
# ----------------------------------------------------------------------------------------------

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

    The tokenizer's own offsets where it has them (fast tokenizers); else spans from decoding
    growing prefixes (a decoded prefix that is not a prefix of ``text`` keeps the last span)."""
    try:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = [tuple(span) for span in encoded["offset_mapping"]]
        if len(offsets) == len(ids):
            return offsets
    except (NotImplementedError, ValueError, TypeError, KeyError):
        pass
    spans, end = [], 0
    for k in range(len(ids)):
        prefix = tokenizer.decode(ids[: k + 1], skip_special_tokens=False)
        start, end = end, (len(prefix) if text.startswith(prefix) else end)
        spans.append((start, end))
    return spans


# ----------------------------------------------------------------------------------------------
# The teacher-forced extractor
# ----------------------------------------------------------------------------------------------

# Per-token inputs a processor returns beside input_ids, and the value for appended tokens.
_PER_TOKEN = {"attention_mask": 1, "mm_token_type_ids": 0, "token_type_ids": 0}


class EntropyExtractor:
    """A model loaded for the entropy pass, like ``backends/hf.py`` loads it for generation (same
    processor loader, model class, dtype), with :data:`NAME` for its language model's attention.
    """

    def __init__(self, location: str, model_entry: dict, *, revision: str | None = None,
                 layers=None, chunk_elements: int = CHUNK_ELEMENTS, device_map=None):
        options = {"revision": revision, "trust_remote_code": model_entry["trust_remote_code"]}
        self.processor = load_processor(location, **options)
        model_class = getattr(transformers, model_entry["model_class"])
        config = AutoConfig.from_pretrained(location, **options)
        if device_map is None and torch.cuda.is_available():
            device_map = "auto"
        self.model = model_class.from_pretrained(
            location, dtype=DTYPES[model_entry["dtype"]],
            attn_implementation=attn_implementation_for(config), device_map=device_map, **options,
        ).eval()
        _check_model(self.model)
        self.tokenizer = self.processor.tokenizer
        self.image_token = self.processor.image_token
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(self.image_token)
        self.thinking_format = model_entry.get("thinking", "auto")
        self.layers, self.chunk_elements = layers, chunk_elements

    @property
    def device(self):
        return self.model.device

    def prompt_inputs(self, images, prompt: str, system_prompt: str | None):
        """The generation's input for one request, exactly as ``TransformersBackend`` builds it."""
        request = Request("entropy", prompt, list(images), system_prompt)
        text = self.processor.apply_chat_template(chat_messages(request),
                                                  add_generation_prompt=True, tokenize=False)
        if text.count(self.image_token) != len(request.images):
            raise ValueError(f"the chat template placed {text.count(self.image_token)} image "
                             f"placeholder(s) for {len(request.images)} image(s)")
        images_arg = [request.images] if request.images else None
        return self.processor(text=[text], images=images_arg, return_tensors="pt")

    def teacher_forced_inputs(self, prompt_inputs, response_ids: list[int]) -> dict:
        """``prompt_inputs`` with ``response_ids`` appended (per-token inputs extended)."""
        length = prompt_inputs["input_ids"].shape[1]
        extra = torch.tensor([response_ids], dtype=prompt_inputs["input_ids"].dtype)
        inputs = {}
        for key, value in prompt_inputs.items():
            if key == "input_ids":
                value = torch.cat([value, extra], 1)
            elif key in _PER_TOKEN and torch.is_tensor(value) and value.shape[-1] == length:
                fill = torch.full((value.shape[0], len(response_ids)), _PER_TOKEN[key],
                                  dtype=value.dtype)
                value = torch.cat([value, fill], 1)
            inputs[key] = value
        return {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in inputs.items()}

    def extract(self, instance_images, prompt: str, system_prompt: str | None,
                response_text: str | None = None, selection: str = "all",
                first_n: int | None = None, *, response_ids: list[int] | None = None,
                answer: str | None = None, align: str = "generating",
                per_token: bool = False) -> dict:
        """Entropies of the response's rows in one teacher-forced pass (see the module doc).

        The response is ``response_text`` tokenised without special tokens, or ``response_ids``
        (e.g. the generated ids) when given. Returns per-layer lists ``entropy_all``,
        ``entropy_img`` (nats), ``entropy_all_norm``, ``entropy_img_norm`` and their ``*_mean``
        over layers, ``n_tokens`` (selected), ``n_response_tokens``, ``n_prompt_tokens``,
        ``n_image_tokens``, ``n_keys``/``n_image_keys`` (min/max/mean over the selected rows),
        ``selection`` (asked), ``selection_used``, ``answer_fallback``, ``align``, ``layers``;
        with ``per_token`` also ``per_token`` ({quantity: [[per layer] per selected token]}) and
        ``tokens`` (the selected token indices).
        """
        if align not in ("generating", "response"):
            raise ValueError("align must be 'generating' or 'response'")
        offsets = None
        if response_ids is None:
            if response_text is None:
                raise ValueError("give response_text or response_ids")
            response_ids = list(self.tokenizer(response_text,
                                               add_special_tokens=False)["input_ids"])
            if selection == "answer":
                offsets = token_offsets(self.tokenizer, response_text, response_ids)
        elif selection == "answer":
            raise ValueError("selection 'answer' needs response_text (to locate the answer)")
        tokens, fallback = select_tokens(len(response_ids), selection, first_n,
                                         response_text=response_text, offsets=offsets,
                                         answer=answer, thinking_format=self.thinking_format)
        prompt = self.prompt_inputs(instance_images, prompt, system_prompt)
        length = prompt["input_ids"].shape[1]
        inputs = self.teacher_forced_inputs(prompt, response_ids)
        total = inputs["input_ids"].shape[1]
        shift = length - 1 if align == "generating" else length
        rows = torch.zeros((1, total), dtype=torch.bool)
        rows[0, [shift + t for t in tokens]] = True
        base = {"selection": selection, "selection_used": "all" if fallback else selection,
                "answer_fallback": fallback, "align": align, "first_n": first_n,
                "n_response_tokens": len(response_ids), "n_prompt_tokens": length,
                "n_image_tokens": int((prompt["input_ids"] == self.image_token_id).sum())}
        if not tokens:
            empty = torch.zeros((0,))
            layers = self.layers if self.layers is not None else list(
                range(self.model.config.get_text_config().num_hidden_layers))
            result = summarise({n: torch.zeros((0, len(layers))) for n in QUANTITIES}, empty,
                               empty, layers)
            return {**base, **result}
        found, _ = entropy_forward(self.model, inputs, rows, self.image_token_id,
                                   layers=self.layers, chunk_elements=self.chunk_elements)
        per_row = {name: v[0].cpu() for name, v in found.values.items()}
        result = {**base, **summarise(per_row, found.n_keys[0].cpu(),
                                      found.n_image_keys[0].cpu(), found.layers)}
        if per_token:
            result["tokens"] = tokens
            result["per_token"] = {name: v.tolist() for name, v in per_row.items()}
        return result

    def extract_record(self, request: Request, record: dict, selection: str = "all",
                       first_n: int | None = None) -> dict:
        """One output line for a generation record (``results/generations``): its ``uid`` and
        the entropies of its ``raw_output``, or ``status: skipped`` for a failed generation."""
        if record.get("status") != "ok" or record.get("raw_output") is None:
            return {"uid": record["uid"], "status": "skipped",
                    "reason": f"generation status {record.get('status')!r}"}
        found = self.extract(request.images, request.prompt, request.system_prompt,
                             record["raw_output"], selection, first_n, answer=record.get("answer"))
        return {"uid": record["uid"], "status": "ok", **found}

    def close(self) -> None:
        del self.model
