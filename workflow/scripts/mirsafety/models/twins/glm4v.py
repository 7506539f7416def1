"""GLM-4.1V-Thinking (GLM-4.1V-9B-Thinking): a GLM-4 text model with 3-D (mrope-style, partial)
rotary positions and a vision tower of merged 14-px patches, thinking in ``<think>`` and answering
in ``<answer>``.

Special tokens and template: the GLM-4.1V-9B-Thinking checkpoint's ``tokenizer_config.json``
(``<think>``, ``</think>``, ``<answer>``, ``</answer>`` are special tokens there too, which is why
the backend decodes keeping them) and ``chat_template.jinja``; its ``preprocessor_config.json``
(patch 14, temporal patch 2, merge 2, CLIP mean/std) with tiny pixel bounds here.
"""

from transformers import Glm4vConfig, Glm4vForConditionalGeneration
from transformers.models.glm4v.image_processing_pil_glm4v import Glm4vImageProcessorPil

from mirsafety.models.processors import Glm4vImageOnlyProcessor
from mirsafety.models.twins.common import head_dim

MODEL_CLASS = Glm4vForConditionalGeneration

#: The image normalisation of the checkpoint's preprocessor_config.json (OpenAI CLIP's).
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

#: The checkpoint's generation_config.json also stops on these (a new turn or a tool result).
STOP_TOKENS = ("<|user|>", "<|observation|>")

SPECIAL_TOKENS = {
    "eos_token": "<|endoftext|>",
    "pad_token": "<|endoftext|>",
    # The GLM-4 specials in the checkpoint's order, then the thinking tags (special there too).
    "tokens": ["<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>",
               "<|user|>", "<|assistant|>", "<|observation|>", "<|begin_of_image|>",
               "<|end_of_image|>", "<|begin_of_video|>", "<|end_of_video|>", "<|image|>",
               "<|video|>", "<think>", "</think>", "<answer>", "</answer>"],
}

# The chat template of GLM-4.1V-9B-Thinking (chat_template.jinja, rendered with transformers'
# trim_blocks/lstrip_blocks): "[gMASK]<sop>", then "<|system|>\n{text}" for a system message,
# "<|user|>\n" + the items in order (an image as "<|begin_of_image|><|image|><|end_of_image|>",
# a video as "<|begin_of_video|><|video|><|end_of_video|>", a text as its text, nothing between
# them) for a user turn, "<|assistant|>\n{content}" for an assistant turn, and "<|assistant|>\n"
# as the generation prompt. The real template prints a system message's content as given; a
# list of text items is rendered here as their text (the study's system messages are lists).
CHAT_TEMPLATE = (
    "[gMASK]<sop>"
    "{%- for msg in messages %}"
    "{%- if msg.role == 'system' %}{{- '<|system|>\\n' }}"
    "{%- if msg.content is string %}{{- msg.content }}"
    "{%- else %}{%- for item in msg.content %}{%- if item.type == 'text' %}{{- item.text }}"
    "{%- endif %}{%- endfor %}{%- endif %}"
    "{%- elif msg.role == 'user' %}{{- '<|user|>\\n' }}"
    "{%- if msg.content is string %}{{- msg.content }}"
    "{%- else %}{%- for item in msg.content %}"
    "{%- if item.type == 'video' or 'video' in item %}"
    "{{- '<|begin_of_video|><|video|><|end_of_video|>' }}"
    "{%- elif item.type == 'image' or 'image' in item %}"
    "{{- '<|begin_of_image|><|image|><|end_of_image|>' }}"
    "{%- elif item.type == 'text' %}{{- item.text }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{%- elif msg.role == 'assistant' %}"
    "{%- if msg.metadata %}{{- '<|assistant|>' + msg.metadata + '\\n' + msg.content }}"
    "{%- else %}{{- '<|assistant|>\\n' + msg.content }}{%- endif %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|assistant|>\\n' }}{%- endif %}"
)


def config(model: dict, tokenizer, ids: dict) -> Glm4vConfig:
    """GLM-4.1V config: ``mrope_section`` must sum to half the *rotated* part of the text head
    (``partial_rotary_factor`` of it, one half as in the checkpoint)."""
    text, vision = dict(model["text"]), dict(model["vision"])
    mrope = text.pop("mrope_section")
    partial = text.pop("partial_rotary_factor")
    rotated = int(head_dim(text) * partial)
    if sum(mrope) != rotated // 2:
        raise ValueError(f"mrope_section {mrope} must sum to head_dim * partial_rotary_factor / 2 "
                         f"= {rotated // 2}")
    text_config = {
        **text,
        "pad_token_id": ids["pad_token_id"],
        "vocab_size": len(tokenizer),
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                            "partial_rotary_factor": partial, "mrope_section": mrope},
    }
    token_id = tokenizer.convert_tokens_to_ids
    return Glm4vConfig(
        text_config=text_config,
        vision_config={**vision, "out_hidden_size": text["hidden_size"]},
        image_token_id=token_id("<|image|>"),
        video_token_id=token_id("<|video|>"),
        image_start_token_id=token_id("<|begin_of_image|>"),
        image_end_token_id=token_id("<|end_of_image|>"),
        video_start_token_id=token_id("<|begin_of_video|>"),
        video_end_token_id=token_id("<|end_of_video|>"),
        tie_word_embeddings=False,
    )


def processor(model: dict, tokenizer) -> Glm4vImageOnlyProcessor:
    """Image processor with the vision tower's patch sizes (pixel bounds as ``size``'s
    shortest_edge/longest_edge, the GLM-4.1V convention), wrapped with the GLM template."""
    vision, images = model["vision"], model["images"]
    image_processor = Glm4vImageProcessorPil(
        size={"shortest_edge": images["min_pixels"], "longest_edge": images["max_pixels"]},
        patch_size=vision["patch_size"],
        temporal_patch_size=vision["temporal_patch_size"],
        merge_size=vision["spatial_merge_size"],
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    return Glm4vImageOnlyProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    )
