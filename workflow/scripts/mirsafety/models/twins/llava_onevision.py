"""LLaVA-OneVision (LLaVA-OneVision-7B = ``llava-hf/llava-onevision-qwen2-7b-ov-hf``).

A Qwen2 text part, a SigLIP vision tower (no head) on 384-px tiles (here: tiny tiles), a 2-layer
projector and the "anyres" image processor: a single image is cut into the tiles of the best
grid pinpoint plus a base view, unpadded and pooled down to at most ``anyres_max_9`` tiles of
features; in a multi-image prompt each image gives only its base view (+1 newline feature).

Special tokens, template and processor settings: transformers' LLaVA-OneVision conversion script
(``src/transformers/models/llava_onevision/convert_llava_onevision_weights_to_hf.py``, which wrote
the ``llava-hf/llava-onevision-qwen2-*-ov-hf`` checkpoints; not shipped in the wheel): the
Qwen2-Instruct tokenizer plus ``<image>`` and ``<video>``, ``num_image_tokens`` = the tile's patch
grid (729 = 27 x 27 there), ``vision_feature_select_strategy`` "full", ``vision_aspect_ratio``
"anyres_max_9", grid pinpoints of 1..6 x 1..6 tiles, SigLIP's mean/std of 0.5.
"""

from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration
from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
    LlavaOnevisionImageProcessorPil,
)

from mirsafety.models.processors import LlavaOnevisionImageOnlyProcessor

MODEL_CLASS = LlavaOnevisionForConditionalGeneration

SPECIAL_TOKENS = {
    "eos_token": "<|im_end|>",  # end of an assistant turn (ChatML; Qwen2-Instruct's eos)
    "pad_token": "<|endoftext|>",
    "tokens": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"],
}

#: SigLIP's normalisation (the checkpoint's preprocessor_config.json).
SIGLIP_MEAN = [0.5, 0.5, 0.5]
SIGLIP_STD = [0.5, 0.5, 0.5]

# The chat template of the llava-onevision-qwen2-*-ov-hf checkpoints (``chat_template`` of the
# conversion script): ChatML without a default system prompt; in a message's content list all
# images come first ("<image>\n" each), then all videos ("<video>\n" each), then the texts, whatever
# the order given. Plain-string content renders as itself (the stock template drops it).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "<image>\n{% endfor %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "<video>\n{% endfor %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ item['text'] }}{% endgeneration %}"
    "{% else %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tile_features(model: dict) -> int:
    """Features of one tile: the SigLIP patch grid (no CLS token, strategy "full")."""
    vision = model["vision"]
    side = vision["image_size"] // vision["patch_size"]
    if side * vision["patch_size"] != vision["image_size"]:
        raise ValueError(f"tile {vision['image_size']} is not a multiple of patch {vision['patch_size']}")
    return side * side


def grid_pinpoints(model: dict) -> list[list[int]]:
    """Every (height, width) of 1..grid x 1..grid tiles, as the checkpoint's 384-px pinpoints."""
    tile, grid = model["vision"]["image_size"], model["images"]["grid"]
    return [[tile * rows, tile * cols] for rows in range(1, grid + 1) for cols in range(1, grid + 1)]


def config(model: dict, tokenizer, ids: dict) -> LlavaOnevisionConfig:
    """LLaVA-OneVision config: a Qwen2 text part, a head-less SigLIP tower of one tile."""
    tile_features(model)  # validates the tile / patch combination
    text = {"model_type": "qwen2", **model["text"], **ids, "vocab_size": len(tokenizer),
            "tie_word_embeddings": False,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6}}  # Qwen2-7B's
    token_id = tokenizer.convert_tokens_to_ids
    return LlavaOnevisionConfig(
        text_config=text,
        vision_config={"model_type": "siglip_vision_model", **model["vision"], "vision_use_head": False},
        image_token_index=token_id("<image>"),
        video_token_index=token_id("<video>"),
        vision_feature_select_strategy=model["vision_feature_select_strategy"],
        vision_feature_layer=-1,
        vision_aspect_ratio=model["vision_aspect_ratio"],
        image_grid_pinpoints=grid_pinpoints(model),
        tie_word_embeddings=False,
    )


def processor(model: dict, tokenizer) -> LlavaOnevisionImageOnlyProcessor:
    """The anyres image processor at the vision tower's tile size, with the same pinpoints."""
    tile = model["vision"]["image_size"]
    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": tile, "width": tile},
        image_grid_pinpoints=grid_pinpoints(model),
        image_mean=SIGLIP_MEAN,
        image_std=SIGLIP_STD,
        do_pad=True,
        do_convert_rgb=True,
    )
    return LlavaOnevisionImageOnlyProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        num_image_tokens=tile_features(model),
        vision_feature_select_strategy=model["vision_feature_select_strategy"],
        vision_aspect_ratio=model["vision_aspect_ratio"],
        chat_template=CHAT_TEMPLATE,
    )
