"""Capturing attention entropy while a model runs: the teacher-forced pass and generation.

Two captures, both driving the attention function of :mod:`mirsafety.entropy.attention`.
:func:`capture_rows` / :func:`entropy_forward`: one forward pass without a cache, reducing the
marked rows (the teacher-forced pass). :func:`capture_generation` / :func:`generate_with_entropy`:
in a generation each step only keeps its last query row; every ``block`` steps (and at the end)
the kept rows are reduced together against that layer's cached keys, which do not change for
earlier positions: the same numbers as the teacher-forced pass, for a few percent of the
generation's time. The row kept for generated token ``k`` is the query that produced it
(prefill's last row, then one row per decode step).

Only self-attention layers are measured: a language model with cross-attention layers
(Mllama's ``cross_attention_layers``, whose keys are image features, not the sequence) runs them
through the same function, and the captures leave them out (:func:`self_attention_layers`; what
that means for the image keys: :mod:`mirsafety.entropy.kernel`).

:class:`EntropyHook` carries the generation capture into the transformers backend
(``TransformersBackend(..., capture=EntropyHook())``): the models package must not import this
one, so whoever builds the backend injects it.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass

import torch

from mirsafety.entropy.attention import (
    NAME,
    Capture,
    activate,
    enable_entropy_attention,
    finish,
    require_entropy_attention,
)
from mirsafety.entropy.kernel import CHUNK_ELEMENTS, QUANTITIES
from mirsafety.entropy.selection import summarise


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
    capture = Capture("rows", rows=rows, image_keys=image_keys, layers=_layers(layers),
                       chunk_elements=chunk_elements, keep_probs=keep_probs,
                       key_mask=_key_mask(key_mask))
    with activate(capture):
        yield capture


def _collect_rows(capture: Capture) -> RowEntropies:
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
    def __init__(self, capture: Capture, prompt_length: int):
        self._capture, self.prompt_length = capture, prompt_length

    def result(self) -> GenerationEntropy:
        finish(self._capture)
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
    capture = Capture("last", image_keys=_image_keys(input_ids, image_token_id),
                       layers=_capture_layers(model, layers), chunk_elements=chunk_elements,
                       block=block, key_mask=_key_mask(inputs.get("attention_mask")))
    handle = _GenerationCapture(capture, input_ids.shape[1])
    with activate(capture):
        yield handle
    finish(capture)  # on success only: a failed generation's rows are simply dropped


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
