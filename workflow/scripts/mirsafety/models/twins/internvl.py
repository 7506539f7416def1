"""InternVL3 (InternVL3-2B/8B/38B, the ``-hf`` checkpoints: transformers' native ``internvl``).

A Qwen2 text part, an InternViT vision tower on 448-px tiles (here: tiny tiles), a pixel-shuffle
projector (``downsample_ratio`` 0.5: 2 x 2 patches -> one token) and the GOT-OCR2 image processor
that cuts an image into up to ``max_patches`` tiles plus a thumbnail.

Special tokens, template and processor settings: transformers' InternVL conversion script
(``src/transformers/models/internvl/convert_internvl_weights_to_hf.py``, which wrote the
``OpenGVLab/InternVL3-*-hf`` checkpoints; not shipped in the wheel): the Qwen2.5 tokenizer with
the named tokens ``start_image_token`` ``<img>``, ``end_image_token`` ``</img>``,
``context_image_token`` ``<IMG_CONTEXT>`` and ``video_token`` ``<video>`` (InternVLProcessor reads
them off the tokenizer), end of turn ``<|im_end|>`` (the script forces eos 151645 for the Qwen2
InternVL3 models), and a ``GotOcr2ImageProcessor`` of 448 x 448 tiles with ImageNet mean/std.
"""

from transformers import InternVLConfig, InternVLForConditionalGeneration
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

from mirsafety.models.processors import InternVLImageOnlyProcessor

MODEL_CLASS = InternVLForConditionalGeneration

#: The tokenizer's named multimodal tokens, as the conversion script sets them
#: (``extra_special_tokens`` of the checkpoint's tokenizer_config.json).
NAMED_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}

SPECIAL_TOKENS = {
    "eos_token": "<|im_end|>",  # end of an assistant turn (ChatML)
    "pad_token": "<|endoftext|>",
    "tokens": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *NAMED_TOKENS.values()],
}

#: ImageNet normalisation, the InternVL image processor's (conversion script).
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# The chat template of the InternVL3-hf checkpoints (``chat_template`` of the conversion script):
# ChatML without a default system prompt; in a message's content list each image renders as
# "<IMG_CONTEXT>\n" (the processor expands it to <img> + image_seq_length x tiles context tokens
# + </img>), each video as "<video>\n", each text as itself, in the order given; plain-string
# content renders as itself.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% elif item['type'] == 'video' %}<video>\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def image_seq_length(model: dict) -> int:
    """Tokens per tile: the tile's patch grid, pixel-shuffled by ``downsample_ratio`` per side."""
    vision = model["vision"]
    side = vision["image_size"] // vision["patch_size"]
    shuffled = side * model["downsample_ratio"]
    if side * vision["patch_size"] != vision["image_size"] or shuffled != int(shuffled):
        raise ValueError(f"tile {vision['image_size']} / patch {vision['patch_size']} must give a "
                         f"patch grid divisible by 1 / downsample_ratio ({model['downsample_ratio']})")
    return int(shuffled) ** 2


def config(model: dict, tokenizer, ids: dict) -> InternVLConfig:
    """InternVL config: a Qwen2 text part, an InternViT vision tower of one tile."""
    text = {"model_type": "qwen2", **model["text"], **ids, "vocab_size": len(tokenizer),
            "tie_word_embeddings": False,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6}}  # Qwen2.5 (InternVL3-2B/8B/38B)'s
    return InternVLConfig(
        text_config=text,
        vision_config=dict(model["vision"]),
        image_token_id=tokenizer.convert_tokens_to_ids(NAMED_TOKENS["context_image_token"]),
        image_seq_length=image_seq_length(model),
        downsample_ratio=model["downsample_ratio"],
        tie_word_embeddings=False,
    )


def processor(model: dict, tokenizer) -> InternVLImageOnlyProcessor:
    """GOT-OCR2 tiling at the vision tower's tile size, the named image tokens on the tokenizer."""
    # InternVLProcessor reads <img>, </img>, <IMG_CONTEXT> and <video> off the tokenizer by these
    # names; they are saved in tokenizer_config.json and come back on reload, as in the checkpoint.
    tokenizer._set_model_specific_special_tokens(dict(NAMED_TOKENS))
    tile, images = model["vision"]["image_size"], model["images"]
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": tile, "width": tile},
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        do_convert_rgb=True,
        crop_to_patches=images["crop_to_patches"],
        min_patches=images["min_patches"],
        max_patches=images["max_patches"],
    )
    return InternVLImageOnlyProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_length=image_seq_length(model),
        chat_template=CHAT_TEMPLATE,
    )
