"""One generation record: a backend's Result as the line a generation shard holds for it.

Fresh generations and answers imported from the authors' results (interop) are written by this
one builder, so both carry the same fields in the same order and the judges cannot tell them apart.
It sits with the Result it serialises, below both the generation stage and the importer.
"""

from mirsafety.core.thinking import split_thinking
from mirsafety.models.backend import Result


def make_record(instance: dict, result: Result, model_name: str, thinking_format: str,
                images_given: int | None, condition: str = "multi_image") -> dict:
    """The shard's line for one item: raw output kept beside the stripped answer and thinking."""
    answer = thinking = None
    if result.status == "ok":
        answer, thinking = split_thinking(result.raw_output, thinking_format)
    return {
        "uid": instance["uid"],
        "model": model_name,
        "condition": condition,
        "status": result.status,
        "error": result.error,
        "raw_output": result.raw_output,
        "token_ids": result.token_ids,  # what the entropy stage scores; None where unknown
        "answer": answer,
        "thinking": thinking,
        "images_given": images_given,
        "prompt_tokens": result.prompt_tokens,
        "image_tokens": result.image_tokens,
        "completion_tokens": result.completion_tokens,
        "finish_reason": result.finish_reason,
        "latency_s": result.latency_s,
        "entropy": result.entropy,
    }
