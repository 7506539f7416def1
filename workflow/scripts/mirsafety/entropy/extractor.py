"""The entropy stage's measurement: one teacher-forced pass over a prompt and its response.

The pass is the generation's input again, with the response appended, run once without a cache;
the attention entropies of the response's rows are captured on the way
(:func:`~mirsafety.entropy.capture.entropy_forward`; the quantities are defined in
:mod:`mirsafety.entropy.kernel`).

Which rows. Response token ``k`` (0-based) sits at position ``P + k`` of the teacher-forced
sequence (``P`` prompt tokens). By default (``align="generating"``) the row used for token ``k``
is the query that *produced* it, at position ``P + k - 1``: the last prompt row for the first
token, then each response token's row for the next. This is exactly what a generation computes
(prefill's last row, then one row per decode step), so the in-generation capture
(:func:`~mirsafety.entropy.capture.generate_with_entropy`) and the teacher-forced pass
(:class:`EntropyExtractor`) give the same numbers. ``align="response"`` takes the response
tokens' own rows (``P + k``) instead. Which response tokens: :mod:`mirsafety.entropy.selection`.

The teacher-forced input is exactly the generation's input (the model loaded and the request
rendered by ``models/loading.py``, as the generation backend does: same chat template with the
system prompt and ``add_generation_prompt=True``, same images, same processor call) with the
response's token ids appended: the ids the model generated, stored with its generation record
(``token_ids``), exactly; only where they are unknown (API answers, imports of the authors'
results) the raw response text tokenised without special tokens. Re-encoding decoded text need not
give the generated ids back: a byte-level BPE's partial UTF-8 character decodes to U+FFFD, which
encodes to other tokens (the record's ``tokens_from`` says which way it went). Appending ids,
rather than re-tokenising prompt + response as one string, keeps the prompt's tokens identical to
what the model saw (a BPE may merge across the boundary, e.g. ``"\\n"`` + ``"\\n\\n"``). Every
per-token input is extended for the appended tokens as a generation extends it (``attention_mask``
with ones, ``mm_token_type_ids`` and ``token_type_ids`` with zeros, Mllama's
``cross_attention_mask`` by repeating the last prompt position's row: a generated token sees the
images the prompt's last token saw); the model's own forward then builds the positions
(Qwen2.5-VL's 3-D rope index included) as it does in a generation's prefill.
"""

import torch

from mirsafety.entropy.attention import attn_implementation_for, require_entropy_attention
from mirsafety.entropy.capture import entropy_forward, self_attention_layers
from mirsafety.entropy.kernel import CHUNK_ELEMENTS, QUANTITIES
from mirsafety.entropy.selection import prefix_spans, select_tokens, summarise, token_offsets
from mirsafety.models.backend import Request
from mirsafety.models.loading import (
    decode_generated,
    encode,
    image_token_id,
    load_config,
    load_model,
)

__all__ = ["EntropyExtractor"]

# Per-token inputs a processor returns beside input_ids (token axis 1), and the value for
# appended tokens: a constant, or LAST (the last prompt position's entry, repeated).
LAST = "last"
_PER_TOKEN = {"attention_mask": 1, "mm_token_type_ids": 0, "token_type_ids": 0,
              "cross_attention_mask": LAST}


class EntropyExtractor:
    """A model loaded for the entropy pass as the generation backend loads it (``models/loading``:
    same processor loader, model class, dtype), with the entropy function for its language
    model's attention."""

    def __init__(self, location: str, model_entry: dict, *, revision: str | None = None,
                 layers=None, chunk_elements: int = CHUNK_ELEMENTS, device_map=None):
        config = load_config(location, model_entry, revision=revision)
        self.processor, self.model = load_model(
            location, model_entry, revision=revision,
            attn_implementation=attn_implementation_for(config), device_map=device_map)
        require_entropy_attention(self.model)
        self.tokenizer = self.processor.tokenizer
        # what TransformersBackend.decode drops from a generation's text
        self.image_token_id = image_token_id(self.processor, self.model.config)
        self.thinking_format = model_entry.get("thinking", "auto")
        self.layers, self.chunk_elements = layers, chunk_elements

    @property
    def device(self):
        return self.model.device

    def prompt_inputs(self, images, prompt: str, system_prompt: str | None):
        """The generation's input for one request, exactly as ``TransformersBackend`` builds it."""
        return encode(self.processor, [Request("entropy", prompt, list(images), system_prompt)])

    def decode(self, ids: list[int]) -> str:
        """Generated ids as the transformers backend decodes them into ``raw_output`` (special
        tokens dropped but the thinking tags), so the answer is found where the record has it."""
        return decode_generated(self.tokenizer, ids)

    def response(self, response_text: str | None, response_ids: list[int] | None,
                 selection: str) -> tuple[list[int], str | None, list | None]:
        """The response's ids and, for the ``answer`` selection, its text and each token's span.

        Given ids are kept as they are, the text and spans decoded from them; text alone is
        tokenised, the spans from the tokenizer (see the module doc)."""
        if response_ids is not None:
            if selection != "answer":
                return list(response_ids), None, None
            text = self.decode(response_ids)
            return list(response_ids), text, prefix_spans(self.decode, response_ids, text)
        if response_text is None:
            raise ValueError("give response_text or response_ids")
        ids = list(self.tokenizer(response_text, add_special_tokens=False)["input_ids"])
        if selection != "answer":
            return ids, None, None
        return ids, response_text, token_offsets(self.tokenizer, response_text, ids)

    def teacher_forced_inputs(self, prompt_inputs, response_ids: list[int]) -> dict:
        """``prompt_inputs`` with ``response_ids`` appended (per-token inputs extended)."""
        length = prompt_inputs["input_ids"].shape[1]
        extra = torch.tensor([response_ids], dtype=prompt_inputs["input_ids"].dtype)
        inputs = {}
        for key, value in prompt_inputs.items():
            if key == "input_ids":
                value = torch.cat([value, extra], 1)
            elif key in _PER_TOKEN and torch.is_tensor(value) and value.dim() >= 2:
                if value.shape[1] != length:
                    raise ValueError(f"{key} has {value.shape[1]} positions, input_ids {length}")
                if _PER_TOKEN[key] == LAST:
                    fill = value[:, -1:].expand(-1, len(response_ids), *value.shape[2:])
                else:
                    fill = torch.full((value.shape[0], len(response_ids), *value.shape[2:]),
                                      _PER_TOKEN[key], dtype=value.dtype)
                value = torch.cat([value, fill], 1)
            inputs[key] = value
        return {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in inputs.items()}

    def extract(self, instance_images, prompt: str, system_prompt: str | None,
                response_text: str | None = None, selection: str = "all",
                first_n: int | None = None, *, response_ids: list[int] | None = None,
                answer: str | None = None, align: str = "generating",
                per_token: bool = False) -> dict:
        """Entropies of the response's rows in one teacher-forced pass (see the module doc).

        The response is ``response_ids`` (the generated ids) when given, else ``response_text``
        tokenised without special tokens (:meth:`response`). Returns per-layer lists
        ``entropy_all``, ``entropy_img`` (nats), ``entropy_all_norm``, ``entropy_img_norm`` and
        their ``*_mean`` over layers, ``n_tokens`` (selected), ``n_response_tokens``,
        ``n_prompt_tokens``, ``n_image_tokens``, ``n_keys``/``n_image_keys`` (min/max/mean over the
        selected rows), ``selection`` (asked), ``selection_used``, ``answer_fallback``, ``align``,
        ``layers``; with ``per_token`` also ``per_token`` ({quantity: [[per layer] per selected
        token]}) and ``tokens`` (the selected token indices).
        """
        if align not in ("generating", "response"):
            raise ValueError("align must be 'generating' or 'response'")
        response_ids, response_text, offsets = self.response(response_text, response_ids,
                                                             selection)
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
            layers = self.layers if self.layers is not None else (
                self_attention_layers(self.model.config)
                or list(range(self.model.config.get_text_config().num_hidden_layers)))
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
        the entropies of its generated ``token_ids``, else (ids unknown) of its ``raw_output``
        re-tokenised, with ``tokens_from`` saying which; ``status: skipped`` for a failed
        generation."""
        if record.get("status") != "ok" or record.get("raw_output") is None:
            return {"uid": record["uid"], "status": "skipped",
                    "reason": f"generation status {record.get('status')!r}"}
        ids = record.get("token_ids")
        found = self.extract(request.images, request.prompt, request.system_prompt,
                             record["raw_output"] if ids is None else None, selection, first_n,
                             response_ids=ids, answer=record.get("answer"))
        return {"uid": record["uid"], "status": "ok",
                "tokens_from": "retokenised" if ids is None else "generation", **found}

    def close(self) -> None:
        del self.model
