"""Local weights through transformers: the model's own chat template, batched, left-padded."""

import logging
import time

import torch

from mirsafety.models.backend import Backend, CaptureHook, Request, Result
from mirsafety.models.loading import decode_generated, encode, image_token_id, load_model

log = logging.getLogger(__name__)


class TransformersBackend(Backend):
    """One loaded model; ``generate`` runs a batch and isolates a failing item by retrying alone.

    ``capture`` records each generation (attention entropy) when the entry asks for it
    (``entropy_capture``); without a hook nothing is recorded.
    """

    def __init__(self, location: str, *, revision: str | None, model: dict,
                 capture: CaptureHook | None = None):
        self.decoding = model["decoding"]
        if self.decoding["max_new_tokens"] is None:
            raise ValueError(f"{location}: decoding.max_new_tokens is null; a local model needs "
                             "a limit (null is for API models, which then use the provider's)")
        self.processor, self.model = load_model(location, model, revision=revision,
                                                attn_implementation=model["attn_implementation"])
        self.processor.tokenizer.padding_side = "left"
        self.commit = getattr(self.model.config, "_commit_hash", None)
        self.capture = capture if model["entropy_capture"] else None
        if self.capture is not None:
            self.capture.prepare(self.model)
        self.image_token_id = image_token_id(self.processor, self.model.config)
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])

    def _generation_kwargs(self) -> dict:
        """The registry's decoding, every value explicit: what the entry leaves unset is off,
        not the checkpoint's ``generation_config.json`` default (Qwen's ships top_k = 1)."""
        d = self.decoding
        kwargs = {"max_new_tokens": d["max_new_tokens"], "do_sample": d["do_sample"]}
        if d["do_sample"]:
            kwargs.update({"temperature": 1.0 if d["temperature"] is None else d["temperature"],
                           "top_p": 1.0 if d["top_p"] is None else d["top_p"],
                           "top_k": 0 if d["top_k"] is None else d["top_k"]})  # 0: no filter
        else:
            kwargs.update({"temperature": None, "top_p": None, "top_k": None})
        kwargs["repetition_penalty"] = d["repetition_penalty"] or 1.0
        return kwargs

    def generation_config(self) -> dict:
        """The generation settings in force (checkpoint defaults overridden by the registry's),
        for the shard's provenance: what a reader needs to repeat the run exactly."""
        config = self.model.generation_config.to_diff_dict()
        config.update(self._generation_kwargs())
        return dict(sorted(config.items()))

    def decode(self, tokens: list[int]) -> str:
        """The text of generated tokens (``models.loading.decode_generated``)."""
        return decode_generated(self.processor.tokenizer, tokens)

    def _inputs(self, requests: list[Request]):
        """The batch as the model gets it: left-padded, on the model's device."""
        return encode(self.processor, requests, padding=True).to(self.model.device)

    def _run(self, requests: list[Request]) -> list[Result]:
        inputs = self._inputs(requests)
        torch.manual_seed(self.decoding["seed"] or 0)
        started = time.perf_counter()
        output, captured = self._generate(inputs)
        latency = (time.perf_counter() - started) / len(requests)
        new_tokens = output[:, inputs["input_ids"].shape[1]:].tolist()
        return [self._result(r, inputs, row, tokens, latency, captured)
                for row, (r, tokens) in enumerate(zip(requests, new_tokens))]

    @torch.inference_mode()
    def _generate(self, inputs):
        """``generate``, inside the capture hook's context when there is one."""
        if self.capture is None:
            return self.model.generate(**inputs, **self._generation_kwargs()), None
        with self.capture.generating(self.model, inputs, self.image_token_id) as handle:
            output = self.model.generate(**inputs, **self._generation_kwargs())
        return output, handle.result()

    def _result(self, request, inputs, row, tokens, latency, captured=None) -> Result:
        ends = [i for i, t in enumerate(tokens) if t in self.eos_ids]
        kept = tokens[: ends[0] + 1] if ends else tokens  # completion_tokens counts the EOS
        generated = kept[: ends[0]] if ends else kept  # raw_output's tokens: no EOS
        image_tokens = int((inputs["input_ids"][row] == self.image_token_id).sum())
        if request.images and image_tokens == 0:
            return Result(request.uid, "failed", error="no image tokens reached the model")
        return Result(
            request.uid, "ok",
            raw_output=self.decode(kept),
            prompt_tokens=int(inputs["attention_mask"][row].sum()),
            image_tokens=image_tokens,
            completion_tokens=len(kept),
            finish_reason="stop" if ends else "length",
            latency_s=round(latency, 4),
            # the rows that produced the generated tokens (raw_output has no EOS either)
            entropy=captured.summary(row, len(generated)) if captured else None,
            token_ids=generated,
        )

    def generate(self, requests: list[Request]) -> list[Result]:
        try:
            return self._run(requests)
        except Exception as error:  # noqa: BLE001 - isolate the item that broke the batch
            if len(requests) == 1:
                log.warning("%s failed: %s", requests[0].uid, error)
                return [Result(requests[0].uid, "failed", error=f"{type(error).__name__}: {error}")]
            log.warning("batch failed (%s); retrying its items one by one", error)
            return [self.generate([r])[0] for r in requests]

    def close(self) -> None:
        del self.model
