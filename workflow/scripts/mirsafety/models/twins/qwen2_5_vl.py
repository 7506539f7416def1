"""Qwen2.5-VL (Qwen2.5-VL-3B/7B/72B-Instruct, and MiMo-VL-7B, which is this architecture).

Special tokens and template: the Qwen2.5-VL-7B-Instruct checkpoint's ``tokenizer_config.json``
and ``chat_template.json``; the template matches transformers' own Qwen2.5-VL tests.
"""

from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from mirsafety.models.processors import Qwen2_5_VLImageOnlyProcessor
from mirsafety.models.twins.common import head_dim

MODEL_CLASS = Qwen2_5_VLForConditionalGeneration

SPECIAL_TOKENS = {
    "eos_token": "<|im_end|>",  # end of an assistant turn (ChatML)
    "pad_token": "<|endoftext|>",
    "tokens": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
               "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"],
}

# The chat template of Qwen2-VL / Qwen2.5-VL Instruct (ChatML; a default system prompt is added
# when the conversation has none). Content renders in the order given.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

def config(model: dict, tokenizer, ids: dict) -> Qwen2_5_VLConfig:
    """Qwen2.5-VL config; ``mrope_section`` must sum to half the text head dim."""
    text, vision = dict(model["text"]), dict(model["vision"])
    mrope = text.pop("mrope_section")
    if sum(mrope) != head_dim(text) // 2:
        raise ValueError(f"mrope_section {mrope} must sum to head_dim/2 = {head_dim(text) // 2}")
    text_config = {
        **text,
        **ids,
        "vocab_size": len(tokenizer),
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope},
    }
    token_id = tokenizer.convert_tokens_to_ids
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config={**vision, "out_hidden_size": text["hidden_size"]},
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        vision_end_token_id=token_id("<|vision_end|>"),
        tie_word_embeddings=False,
    )


def processor(model: dict, tokenizer) -> Qwen2_5_VLImageOnlyProcessor:
    """Image processor with the vision tower's patch sizes, wrapped with the ChatML template."""
    vision, images = model["vision"], model["images"]
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=vision["patch_size"],
        temporal_patch_size=vision["temporal_patch_size"],
        merge_size=vision["spatial_merge_size"],
        min_pixels=images["min_pixels"],
        max_pixels=images["max_pixels"],
    )
    return Qwen2_5_VLImageOnlyProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    )
