"""The attention function that measures entropy on the spot, and the state it records into.

A custom attention function, registered with transformers' ``AttentionInterface`` under
:data:`NAME` (plus the SDPA mask function under the same name in ``AttentionMaskInterface``, so
the model builds the masks it builds for SDPA), returns the ordinary SDPA output, so the forward
pass is not perturbed. Only while a :class:`Capture` is active (a context variable) and only for
the rows of interest, it hands those query rows to the kernel (:mod:`mirsafety.entropy.kernel`),
which reduces them to their entropies at once. Load a VLM with
``attn_implementation=attn_implementation_for(config)``, i.e.
``{"text_config": NAME, "vision_config": "sdpa"}``, or switch a loaded one with
:func:`enable_entropy_attention`. The captures that activate it are in
:mod:`mirsafety.entropy.capture`.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from mirsafety.entropy.kernel import CHUNK_ELEMENTS, image_key_columns, reduce_rows

NAME = "mirsafety_entropy"

_ACTIVE: contextvars.ContextVar[Capture | None] = contextvars.ContextVar("entropy_capture",
                                                                          default=None)


@dataclass
class _Pending:
    """A layer's generation rows not reduced yet (see :func:`_defer`)."""

    queries: list = field(default_factory=list)  # (B, H, 1, D) each
    masks: list = field(default_factory=list)  # None or the row's mask (B|1, 1|H, 1, K_n)
    lengths: list = field(default_factory=list)  # keys visible to a row whose mask is None
    key: torch.Tensor | None = None  # the layer's keys at its latest call
    scaling: float | None = None
    every_step: bool = False
    window: int | None = None  # the layer's sliding window; None for a global layer
    position: int = -1  # absolute position of the latest row
    positions: list = field(default_factory=list)  # absolute position of each pending row


@dataclass
class Capture:
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
    key_mask: torch.Tensor | None = None  # (B, P) bool: the input's non-padding positions
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
            self._columns = (image_key_columns(self.image_keys),)
        return self._columns[0]


def _rows_for_call(capture: Capture, q_len: int) -> torch.Tensor:
    """Query positions this forward call must reduce (mode "rows")."""
    if capture.rows.shape[1] != q_len:
        raise RuntimeError(f"entropy capture expected one pass over {capture.rows.shape[1]} "
                           f"tokens, the attention saw {q_len} query rows (is a cache in use?)")
    return capture.rows.any(0).nonzero().flatten()


def _row_specs(attention_mask, k_len, causal):
    """spec(start, stop, rows) for rows of one forward call (mode "rows")."""
    def spec(start, stop, rows):
        if attention_mask is None:
            return ("causal", rows) if causal else ("none", None)
        mask = attention_mask.index_select(-2, rows.to(attention_mask.device))[..., :k_len]
        if mask.dtype == torch.bool:
            return ("mask", mask, None)
        # An additive float mask (eager-style): masked keys hold the dtype's minimum.
        return ("mask", mask > torch.finfo(mask.dtype).min / 2, mask.float())

    spec.kind = "mask" if attention_mask is not None else ("causal" if causal else "none")
    return spec


def _causal(module, is_causal, q_len) -> bool:
    """SDPA's rule when it got no mask: causal (upper-left) for several query rows."""
    flag = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    return bool(flag) and q_len > 1


def _defer(capture: Capture, module, layer, query, key, attention_mask, scaling, is_causal,
           window=None):
    """Keep this call's last query row (a generation step) for a later, batched reduction.

    Kept lean: it runs once per layer and decode step."""
    state = capture.pending.get(layer)
    if state is None:
        state = capture.pending[layer] = _Pending(window=window)
        # A sliding-window cache drops old keys: reduce at once, while the keys line up.
        state.every_step = bool(window or getattr(module, "sliding_window", None))
    q_len, k_len = query.shape[2], key.shape[2]
    # The row's absolute position: the prefill's last, then one more per decode step (a
    # sliding-window cache returns fewer keys than positions, so k_len does not tell it).
    state.position = k_len - 1 if state.position < 0 else state.position + q_len
    state.positions.append(state.position)
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


def _flush(capture: Capture, layer: int, state: _Pending) -> None:
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

    # Key j holds absolute position j + offset (offset > 0 once a sliding cache dropped keys;
    # a layer with a window flushes every step, so one offset serves its one row).
    offset = state.positions[-1] + 1 - k_len
    positions_abs = torch.tensor(state.positions, device=device)
    with torch.no_grad():
        values, n_keys, n_img, _ = reduce_rows(
            queries, key, rows, spec, scaling=state.scaling,
            image_columns=_shift_columns(capture.image_columns(), offset),
            chunk_elements=capture.chunk_elements,
            hidden=_hidden_by_window(capture, state.window, positions_abs, batch))
    capture.records.setdefault(layer, []).append((rows, values, n_keys, n_img))
    state.queries, state.masks, state.lengths, state.positions = [], [], [], []


def _shift_columns(image_columns, offset: int):
    """Image-key columns (absolute positions) as indices into keys that start at ``offset``."""
    if image_columns is None or offset <= 0:
        return image_columns
    columns, held = image_columns
    columns = columns - offset
    keep = columns >= 0
    if not bool(keep.any()):
        return None
    return columns[keep], (None if held is None else held[..., keep])


def _window(module, kwargs) -> int | None:
    """The layer's sliding window (a row sees its last ``window`` keys), None if global."""
    window = kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
    return int(window) if window else None


def _hidden_by_window(capture: Capture, window, positions, batch: int):
    """(keys (B, r), image keys (B, r)) that rows at absolute ``positions`` (r,) may attend to
    but a sliding window of ``window`` keys hides, or None when it hides none.

    The window keeps the keys after ``position - window`` (transformers' sliding overlay, on top
    of the causal or bidirectional-image mask); every key at or before it is an earlier one, so
    the hidden keys are the input's non-padding positions up to there (generated positions all
    count), and the hidden image keys the image positions among them."""
    if window is None:
        return None
    cut = (positions.long() - window + 1).clamp(min=0)  # positions [0, cut) are hidden
    if not bool((cut > 0).any()):
        return None

    def before_cut(flags):  # (B, P) bool -> how many are True before each cut, (B, r)
        length = flags.shape[1]
        running = torch.nn.functional.pad(flags.long().cumsum(1), (1, 0))
        return running[:, cut.clamp(max=length).to(flags.device)].to(positions.device)

    if capture.key_mask is None:
        keys = cut.expand(batch, -1)
    else:
        keys = before_cut(capture.key_mask) + (cut - capture.key_mask.shape[1]).clamp(min=0)
    image = (torch.zeros_like(keys) if capture.image_keys is None
             else before_cut(capture.image_keys))
    return keys, image


def finish(capture: Capture) -> None:
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
        _defer(capture, module, layer, query, key, attention_mask, scaling, is_causal,
               _window(module, kwargs))
        return output
    with torch.no_grad():
        q_len, k_len = query.shape[2], key.shape[2]
        rows = _rows_for_call(capture, q_len)
        spec = _row_specs(attention_mask, k_len, _causal(module, is_causal, q_len))
        values, n_keys, n_img, probs = reduce_rows(
            query, key, rows, spec, scaling=scaling, image_columns=capture.image_columns(),
            chunk_elements=capture.chunk_elements, position_bias=kwargs.get("position_bias"),
            keep_probs=capture.keep_probs,
            hidden=_hidden_by_window(capture, _window(module, kwargs), rows, query.shape[0]))
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
    require_entropy_attention(model)


def require_entropy_attention(model) -> None:
    """Refuse a model whose language model does not run the entropy function: a capture would
    silently record nothing."""
    text = model.config.get_text_config()
    if text._attn_implementation != NAME:
        raise RuntimeError(f"the language model uses attention '{text._attn_implementation}', not "
                           f"'{NAME}': load it with attn_implementation="
                           f"{attn_implementation_for(model.config)!r} or call "
                           "enable_entropy_attention(model)")


@contextlib.contextmanager
def activate(capture: Capture):
    token = _ACTIVE.set(capture)
    try:
        yield capture
    finally:
        _ACTIVE.reset(token)
