"""A transformers model and its processor, loaded from a registry entry, and the inputs it gets.

Generation (``models/hf.py``) and the entropy pass (``entropy/extractor.py``) must load the same
model the same way and give it the same input for a request: the entropy pass re-reads, token for
token, what the generation saw. Both therefore go through this one module. It knows nothing of
entropy (the dependency points from entropy to models only): the entropy pass picks its own
``attn_implementation`` and passes it in.
"""

import torch
import transformers
from transformers import AutoConfig

from mirsafety.core.thinking import TAG_TEXTS
from mirsafety.models.backend import Request
from mirsafety.models.processors import load_processor

__all__ = ["DTYPES", "chat_messages", "decode_generated", "encode", "image_token_id", "load_config",
           "load_model", "thinking_tag_ids"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "auto": "auto"}


def _source(entry: dict, revision: str | None) -> dict:
    """The ``from_pretrained`` arguments that pick the files: the same for config, processor and
    weights, so all three come from one commit."""
    return {"revision": revision, "trust_remote_code": entry["trust_remote_code"]}


def load_config(location: str, entry: dict, *, revision: str | None):
    """The checkpoint's config (e.g. to choose an ``attn_implementation`` before loading)."""
    return AutoConfig.from_pretrained(location, **_source(entry, revision))


def load_model(location: str, entry: dict, *, revision: str | None, attn_implementation,
               device_map=None):
    """(processor, model in eval mode): the entry's model class and dtype, spread over the GPUs
    (``device_map="auto"``) when there are any and ``device_map`` does not say otherwise."""
    source = _source(entry, revision)
    processor = load_processor(location, **source)
    if device_map is None and torch.cuda.is_available():
        device_map = "auto"
    model_class = getattr(transformers, entry["model_class"])
    model = model_class.from_pretrained(
        location, dtype=DTYPES[entry["dtype"]], attn_implementation=attn_implementation,
        device_map=device_map, **source,
    ).eval()
    return processor, model


#: Config attributes naming the token whose positions receive the image features.
_IMAGE_TOKEN_KEYS = ("image_token_id", "image_token_index")


def image_token_id(processor, config=None) -> int:
    """The id of the token that stands for image embeddings in the model's input: the positions
    the model scatters the image features into (one per image embedding, the image's keys).

    The model's ``config`` says it (``image_token_id``, or ``image_token_index`` in older
    configs) and is used where given. ``processor.image_token`` is the *placeholder* the chat
    template writes, which is the same token for most families (Qwen2-VL's ``<|image_pad|>``,
    Idefics3's ``<image>``) but not for all: Gemma 3's is ``<start_of_image>``, one per image,
    which the processor expands into ``<start_of_image>``, N x ``<image_soft_token>`` and
    ``<end_of_image>`` (and its ``processor.image_token_id`` is the begin-of-image id too), so
    without a config this falls back to the placeholder only for families where they agree.
    """
    for key in _IMAGE_TOKEN_KEYS:
        value = getattr(config, key, None) if config is not None else None
        if isinstance(value, int):
            return value
    return processor.tokenizer.convert_tokens_to_ids(processor.image_token)


def chat_messages(request: Request) -> list[dict]:
    """Images first, then the text, in one user turn (the released MIR code's order)."""
    content = [{"type": "image"} for _ in request.images]
    content.append({"type": "text", "text": request.prompt})
    messages = [{"role": "user", "content": content}]
    if request.system_prompt:
        messages.insert(0, {"role": "system",
                            "content": [{"type": "text", "text": request.system_prompt}]})
    return messages


def encode(processor, requests: list[Request], **kwargs):
    """The processor's tensors for a batch of requests (``kwargs``, e.g. ``padding``, go to the
    processor call).

    The rendered chat template already holds every special token the model expects (Gemma-3's
    and Llama-3's write their own BOS), so the tokenizer adds none, as transformers'
    ``apply_chat_template(tokenize=True)`` does: a tokenizer that adds BOS would otherwise start
    every prompt with two."""
    texts = [_prompt(processor, request) for request in requests]
    images = [r.images for r in requests] if any(r.images for r in requests) else None
    return processor(text=texts, images=images, return_tensors="pt", add_special_tokens=False,
                     **kwargs)


def _prompt(processor, request: Request) -> str:
    """The rendered chat prompt; it must hold exactly one image placeholder per image, else the
    images would be silently dropped or misplaced."""
    text = processor.apply_chat_template(chat_messages(request), add_generation_prompt=True,
                                         tokenize=False)
    placed = text.count(processor.image_token)
    if placed != len(request.images):
        raise ValueError(f"the chat template placed {placed} image placeholder(s) for "
                         f"{len(request.images)} image(s)")
    return text


def thinking_tag_ids(tokenizer) -> set[int]:
    """Ids of the thinking tags that are single tokens of this tokenizer's vocabulary."""
    vocab = tokenizer.get_vocab()
    return {vocab[tag] for tag in TAG_TEXTS if tag in vocab}


def decode_generated(tokenizer, ids: list[int]) -> str:
    """The text of generated tokens, special tokens dropped except the thinking tags: a
    tokenizer that makes ``<think>`` or ``<answer>`` special tokens (GLM-4.1V) must not lose
    them, or the answer could not be told from the thinking. The backend's ``raw_output`` and
    the entropy pass's answer spans both come from this one decoding."""
    dropped = set(tokenizer.all_special_ids) - thinking_tag_ids(tokenizer)
    return tokenizer.decode([t for t in ids if t not in dropped], skip_special_tokens=False)
