"""Capturing attention entropy while a model runs: the attention function and its captures.

A custom attention function, registered with transformers' ``AttentionInterface`` under
:data:`NAME` (plus the SDPA mask function under the same name in ``AttentionMaskInterface``, so
the model builds the masks it builds for SDPA), returns the ordinary SDPA output, so the forward
pass is not perturbed. Only while a capture is active (a context variable) and only for the rows
of interest, it hands those query rows to the kernel (:mod:`mirsafety.entropy.kernel`), which
reduces them to their entropies at once. Load a VLM with
``attn_implementation=attn_implementation_for(config)``, i.e.
``{"text_config": NAME, "vision_config": "sdpa"}``, or switch a loaded one with
:func:`enable_entropy_attention`. Only self-attention layers are measured: a language model with
cross-attention layers (Mllama's ``cross_attention_layers``, whose keys are image features, not
the sequence) runs them through the same function, and the captures leave them out
(:func:`self_attention_layers`; what that means for the image keys:
:mod:`mirsafety.entropy.kernel`).

Two captures. :func:`capture_rows` / :func:`entropy_forward`: one forward pass without a cache,
reducing the marked rows (the teacher-forced pass). :func:`capture_generation` /
:func:`generate_with_entropy`: in a generation each step only keeps its last query row; every
``block`` steps (and at the end) the kept rows are reduced together against that layer's cached
keys, which do not change for earlier positions: the same numbers as the teacher-forced pass, for
a few percent of the generation's time. The row kept for generated token ``k`` is the query that
produced it (prefill's last row, then one row per decode step).

:class:`EntropyHook` carries the generation capture into the transformers backend
(``TransformersBackend(..., capture=EntropyHook())``): the models package must not import this
one, so whoever builds the backend injects it.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from mirsafety.entropy.kernel import CHUNK_ELEMENTS, QUANTITIES, image_key_columns, reduce_rows
from mirsafety.entropy.selection import summarise

__all__ = [
    "NAME",
    "EntropyHook",
    "GenerationEntropy",
    "RowEntropies",
    "attn_implementation_for",
    "capture_generation",
    "capture_rows",
    "enable_entropy_attention",
    "entropy_attention_forward",
    "entropy_forward",
    "generate_with_entropy",
    "require_entropy_attention",
    "self_attention_layers",
]

NAME = "mirsafety_entropy"

_ACTIVE: contextvars.ContextVar[_Capture | None] = contextvars.ContextVar("entropy_capture",
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


def _rows_for_call(capture: _Capture, q_len: int) -> torch.Tensor:
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


def _defer(capture: _Capture, module, layer, query, key, attention_mask, scaling, is_causal,
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


def _hidden_by_window(capture: _Capture, window, positions, batch: int):
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
def _activate(capture: _Capture):
    token = _ACTIVE.set(capture)
    try:
        yield capture
    finally:
        _ACTIVE.reset(token)


def _image_keys(input_ids, image_token_id):
    return None if image_token_id is None else input_ids == image_token_id


def _key_mask(attention_mask):
    """The input's (B, T) attention mask as bool, or None."""
    return None if attention_mask is None else attention_mask.bool()


def _layers(layers):
    return None if layers is None else frozenset(int(x) for x in layers)


def self_attention_layers(config) -> list[int] | None:
    """The language model's self-attention layer indices when it also has cross-attention layers
    (Mllama's ``cross_attention_layers``: their queries are the text, their keys the vision
    tower's features); None when every layer attends over the sequence."""
    text = config.get_text_config()
    cross = set(getattr(text, "cross_attention_layers", None) or ())
    if not cross:
        return None
    return [layer for layer in range(text.num_hidden_layers) if layer not in cross]


def _capture_layers(model, layers):
    """The layers a capture of ``model`` reduces: ``layers``, or every self-attention layer by
    default; asking for a cross-attention layer is an error (its keys are not the sequence)."""
    own = self_attention_layers(model.config)
    if layers is None:
        return _layers(own)
    chosen = _layers(layers)
    if own is not None and not chosen <= set(own):
        raise ValueError(f"layers {sorted(chosen - set(own))} are cross-attention layers: their "
                         "keys are image features, not the sequence; the entropy is defined on "
                         f"the self-attention layers {own}")
    return chosen


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
                 keep_probs=False, key_mask=None):
    """Reduce the query rows ``rows`` ((B, T) bool) of the next forward pass (no cache).

    ``key_mask`` (B, T): the input's attention mask (None: no padding); it counts the keys a
    sliding window hides (:func:`_hidden_by_window`)."""
    capture = _Capture("rows", rows=rows, image_keys=image_keys, layers=_layers(layers),
                       chunk_elements=chunk_elements, keep_probs=keep_probs,
                       key_mask=_key_mask(key_mask))
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
    values = {name: torch.stack([capture.records[layer][0][1][name] for layer in layers], -1)
              for name in QUANTITIES}
    first = capture.records[layers[0]][0]
    probs = ({layer: capture.probs[layer][0] for layer in layers} if capture.keep_probs else None)
    return RowEntropies(layers, positions, capture.rows[:, positions], values, first[2],
                        first[3], probs)


def entropy_forward(model, inputs: dict, rows: torch.Tensor, image_token_id=None, *, layers=None,
                    chunk_elements=CHUNK_ELEMENTS, keep_probs=False, keep_logits=False):
    """One forward pass (no cache) reducing the rows ``rows`` ((B, T) bool) to entropies.

    Returns (RowEntropies, the model output). Only the last position's logits are computed
    unless ``keep_logits``.
    """
    require_entropy_attention(model)
    input_ids = inputs["input_ids"]
    kwargs = {"use_cache": False}
    if not keep_logits and "logits_to_keep" in inspect.signature(model.forward).parameters:
        kwargs["logits_to_keep"] = 1
    with torch.inference_mode(), capture_rows(rows.to(input_ids.device),
                                              _image_keys(input_ids, image_token_id),
                                              layers=_capture_layers(model, layers),
                                              chunk_elements=chunk_elements,
                                              keep_probs=keep_probs,
                                              key_mask=inputs.get("attention_mask")) as capture:
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
        steps listed in ``tokens``), in the form
        :meth:`~mirsafety.entropy.extractor.EntropyExtractor.extract` returns."""
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
        values = {name: torch.stack([torch.cat([r[1][name] for r in records[layer]], 1)
                                     for layer in layers], -1) for name in QUANTITIES}
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
    require_entropy_attention(model)
    if image_token_id is None:
        image_token_id = getattr(model.config, "image_token_id", None)
    input_ids = inputs["input_ids"]
    capture = _Capture("last", image_keys=_image_keys(input_ids, image_token_id),
                       layers=_capture_layers(model, layers), chunk_elements=chunk_elements,
                       block=block, key_mask=_key_mask(inputs.get("attention_mask")))
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


class EntropyHook:
    """The generation capture in the form ``TransformersBackend(..., capture=...)`` takes it."""

    def prepare(self, model) -> None:
        """Send the loaded model's language model through the entropy attention."""
        enable_entropy_attention(model)

    def generating(self, model, inputs: dict, image_token_id):
        """The context around one ``model.generate(**inputs, ...)``; see
        :func:`capture_generation`."""
        return capture_generation(model, inputs, image_token_id)
