"""vLLM for fast GPU generation, behind the same interface (its own env: envs/vllm.yaml).

Requests are sent through ``LLM.chat`` in the OpenAI message format (images first, as PNG data
URLs), so the model's own chat template applies exactly as with the API backend.
"""

from mirsafety.models.backend import Backend, Request, Result
from mirsafety.models.openai_api import build_messages


def sampling_params(decoding: dict) -> dict:
    """The registry's decoding as vLLM's ``SamplingParams`` keywords, every value explicit.

    Greedy is temperature 0; an unset top_p / top_k / repetition penalty is "off" (1.0, 0,
    1.0: vLLM's own "off" values, which it also sets for greedy), never a checkpoint default.
    ``make vllm-contract`` checks that vLLM keeps every value as given.
    """
    sample = decoding["do_sample"]
    return {
        "temperature": (1.0 if decoding["temperature"] is None else decoding["temperature"])
        if sample else 0.0,
        "top_p": (decoding["top_p"] or 1.0) if sample else 1.0,
        "top_k": (decoding["top_k"] or 0) if sample else 0,
        "repetition_penalty": decoding["repetition_penalty"] or 1.0,
        "max_tokens": decoding["max_new_tokens"],
        "seed": decoding["seed"],
    }


def generated_ids(output) -> list[int]:
    """A completion's ids as its ``text`` has them: vLLM's ``token_ids`` end with the EOS (or
    another stop token) that the text leaves out; it is dropped, as the transformers backend drops
    it (no stop strings are set, so ``finish_reason == "stop"`` always means a stop token)."""
    ids = list(output.token_ids)
    return ids[:-1] if output.finish_reason == "stop" and ids else ids


class VLLMBackend(Backend):
    def __init__(self, location: str, *, revision: str | None, model: dict):
        try:
            from vllm import LLM, SamplingParams
        except ImportError as error:
            raise RuntimeError(
                "backend 'vllm' needs the vllm package, which only envs/vllm.yaml carries (the "
                "generate rules pick it for vllm models with --use-conda; on the pip path install "
                "its pip entries into a venv of their own, as `make vllm-contract` does); use "
                "backend: transformers elsewhere"
            ) from error
        decoding = model["decoding"]
        self.llm = LLM(model=location, revision=revision, dtype=model["dtype"],
                       trust_remote_code=model["trust_remote_code"], seed=decoding["seed"] or 0,
                       tensor_parallel_size=max(1, model["resources"]["gpus"]),
                       limit_mm_per_prompt={"image": 8})
        self.sampling = sampling_params(decoding)
        self.params = SamplingParams(**self.sampling)

    def generation_config(self) -> dict:
        return dict(sorted(self.sampling.items()))

    def generate(self, requests: list[Request]) -> list[Result]:
        outputs = self.llm.chat([build_messages(r) for r in requests], self.params)
        return [
            Result(r.uid, "ok", raw_output=o.outputs[0].text,
                   prompt_tokens=len(o.prompt_token_ids),
                   completion_tokens=len(o.outputs[0].token_ids),
                   finish_reason=o.outputs[0].finish_reason,
                   token_ids=generated_ids(o.outputs[0]))
            for r, o in zip(requests, outputs, strict=True)
        ]
