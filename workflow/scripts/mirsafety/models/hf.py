"""Local weights through transformers: the model's own chat template, batched, left-padded."""

import logging
import time

import torch
import transformers

from mirsafety.models.processors import load_processor
from mirsafety.models.backend import Backend, Request, Result

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "auto": "auto"}


def chat_messages(request: Request) -> list[dict]:
    """Images first, then the text, in one user turn (the released MIR code's order)."""
    content = [{"type": "image"} for _ in request.images]
    content.append({"type": "text", "text": request.prompt})
    messages = [{"role": "user", "content": content}]
    if request.system_prompt:
        messages.insert(0, {"role": "system",
                            "content": [{"type": "text", "text": request.system_prompt}]})
    return messages


class TransformersBackend(Backend):
    """One loaded model; ``generate`` runs a batch and isolates a failing item by retrying alone."""

    def __init__(self, location: str, *, revision: str | None, model: dict):
        self.decoding = model["decoding"]
        options = {"revision": revision, "trust_remote_code": model["trust_remote_code"]}
        self.processor = load_processor(location, **options)
        self.processor.tokenizer.padding_side = "left"
        model_class = getattr(transformers, model["model_class"])
        cuda = torch.cuda.is_available()
        self.model = model_class.from_pretrained(
            location, dtype=DTYPES[model["dtype"]], attn_implementation=model["attn_implementation"],
            device_map="auto" if cuda else None, **options,
        ).eval()
        self.commit = getattr(self.model.config, "_commit_hash", None)
        self.capture_entropy = model["entropy_capture"]
        if self.capture_entropy:  # text attention through the entropy function (same output)
            from mirsafety.entropy.attention import enable_entropy_attention

            enable_entropy_attention(self.model)
        token = self.processor.image_token
        self.image_token = token
        self.image_token_id = self.processor.tokenizer.convert_tokens_to_ids(token)
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])

    def _generation_kwargs(self) -> dict:
        d = self.decoding
        kwargs = {"max_new_tokens": d["max_new_tokens"], "do_sample": d["do_sample"]}
        if d["do_sample"]:
            kwargs.update({k: d[k] for k in ("temperature", "top_p") if d[k] is not None})
        else:
            kwargs.update({"temperature": None, "top_p": None, "top_k": None})
        if d["repetition_penalty"] is not None:
            kwargs["repetition_penalty"] = d["repetition_penalty"]
        return kwargs

    def _prompts(self, requests: list[Request]) -> list[str]:
        """Rendered chat prompts; each must hold exactly one image placeholder per image."""
        texts = [self.processor.apply_chat_template(chat_messages(r), add_generation_prompt=True,
                                                    tokenize=False) for r in requests]
        for request, text in zip(requests, texts):
            if text.count(self.image_token) != len(request.images):
                raise ValueError(f"the chat template placed {text.count(self.image_token)} image "
                                 f"placeholder(s) for {len(request.images)} image(s)")
        return texts

    def _run(self, requests: list[Request]) -> list[Result]:
        images = [r.images for r in requests] if any(r.images for r in requests) else None
        inputs = self.processor(text=self._prompts(requests), images=images, padding=True,
                                return_tensors="pt").to(self.model.device)
        torch.manual_seed(self.decoding["seed"])
        started = time.perf_counter()
        output, captured = self._generate(inputs)
        latency = (time.perf_counter() - started) / len(requests)
        new_tokens = output[:, inputs["input_ids"].shape[1]:].tolist()
        return [self._result(r, inputs, row, tokens, latency, captured)
                for row, (r, tokens) in enumerate(zip(requests, new_tokens))]

    @torch.inference_mode()
    def _generate(self, inputs):
        """``generate``, capturing each step's attention entropy when the entry asks for it."""
        if not self.capture_entropy:
            return self.model.generate(**inputs, **self._generation_kwargs()), None
        from mirsafety.entropy.attention import capture_generation

        with capture_generation(self.model, inputs, self.image_token_id) as handle:
            output = self.model.generate(**inputs, **self._generation_kwargs())
        return output, handle.result()

    def _result(self, request, inputs, row, tokens, latency, captured=None) -> Result:
        ends = [i for i, t in enumerate(tokens) if t in self.eos_ids]
        kept = tokens[: ends[0] + 1] if ends else tokens
        image_tokens = int((inputs["input_ids"][row] == self.image_token_id).sum())
        if request.images and image_tokens == 0:
            return Result(request.uid, "failed", error="no image tokens reached the model")
        return Result(
            request.uid, "ok",
            raw_output=self.processor.tokenizer.decode(kept, skip_special_tokens=True),
            prompt_tokens=int(inputs["attention_mask"][row].sum()),
            image_tokens=image_tokens,
            completion_tokens=len(kept),
            finish_reason="stop" if ends else "length",
            latency_s=round(latency, 4),
            # the rows that produced the kept tokens, EOS excluded (raw_output has none either)
            entropy=captured.summary(row, len(kept) - (1 if ends else 0)) if captured else None,
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
