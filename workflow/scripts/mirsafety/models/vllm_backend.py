"""vLLM for fast GPU generation, behind the same interface (installed only on GPU machines).

Requests are sent through ``LLM.chat`` in the OpenAI message format (images first, as PNG data
URLs), so the model's own chat template applies exactly as with the API backend.
"""

from mirsafety.models.backend import Backend, Request, Result
from mirsafety.models.openai_api import build_messages


class VLLMBackend(Backend):
    def __init__(self, location: str, *, revision: str | None, model: dict):
        try:
            from vllm import LLM, SamplingParams
        except ImportError as error:
            raise RuntimeError(
                "backend 'vllm' needs the vllm package, which is installed only on GPU machines "
                "(pip install vllm); use backend: transformers elsewhere"
            ) from error
        decoding = model["decoding"]
        self.llm = LLM(model=location, revision=revision, dtype=model["dtype"],
                       trust_remote_code=model["trust_remote_code"], seed=decoding["seed"],
                       limit_mm_per_prompt={"image": 8})
        self.params = SamplingParams(
            temperature=(decoding["temperature"] or 1.0) if decoding["do_sample"] else 0.0,
            top_p=decoding["top_p"] or 1.0,
            repetition_penalty=decoding["repetition_penalty"] or 1.0,
            max_tokens=decoding["max_new_tokens"],
            seed=decoding["seed"],
        )

    def generate(self, requests: list[Request]) -> list[Result]:
        outputs = self.llm.chat([build_messages(r) for r in requests], self.params)
        return [
            Result(r.uid, "ok", raw_output=o.outputs[0].text,
                   prompt_tokens=len(o.prompt_token_ids),
                   completion_tokens=len(o.outputs[0].token_ids),
                   finish_reason=o.outputs[0].finish_reason)
            for r, o in zip(requests, outputs, strict=True)
        ]
