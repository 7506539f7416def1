"""Idefics3 (Idefics3-8B-Llama3): a Llama text part and a SigLIP vision tower on image tiles.

Special tokens and template: the Idefics3-8B-Llama3 checkpoint's ``tokenizer_config.json`` and
``chat_template.json`` (transformers' Idefics3 tests render the same prompt).
"""

from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

MODEL_CLASS = Idefics3ForConditionalGeneration

#: Tile tags <row_i_col_j> of a split image, for up to GRID x GRID tiles.
GRID = 6

SPECIAL_TOKENS = {
    "bos_token": "<|begin_of_text|>",  # written by the chat template, not added by the tokenizer
    "eos_token": "<end_of_utterance>",  # end of a turn
    "pad_token": "<|end_of_text|>",
    "tokens": ["<|begin_of_text|>", "<|end_of_text|>", "<end_of_utterance>",
               "<fake_token_around_image>", "<image>", "<global-img>",
               *(f"<row_{i + 1}_col_{j + 1}>" for i in range(GRID) for j in range(GRID))],
}

# The chat template of Idefics3-8B-Llama3 ("User:<image>text<end_of_utterance>\nAssistant:"),
# content in the order given (the study sends images first, then the text), plus plain-string
# content (the stock template silently drops it, e.g. a system prompt given as a string).
def user_assistant_template(opening: str) -> str:
    """The Idefics3 family's "User:... Assistant:" template, after the family's opening token."""
    return opening + (
        "{% for message in messages %}{{ message['role'] | capitalize }}"
        "{% if message['content'] is string %}{{ ': ' + message['content'] }}"
        "{% else %}{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}"
        "{% endif %}{% for line in message['content'] %}"
        "{% if line['type'] == 'text' %}{{ line['text'] }}"
        "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}{% endif %}"
        "<end_of_utterance>\n{% endfor %}"
        "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
    )


CHAT_TEMPLATE = user_assistant_template("<|begin_of_text|>")


def config(model: dict, tokenizer, ids: dict) -> Idefics3Config:
    """Idefics3 config: a Llama text part and a SigLIP-style vision tower of one tile.

    The pixel shuffle needs the tile's patch grid side divisible by ``scale_factor``.
    """
    vision = model["vision"]
    side = vision["image_size"] // vision["patch_size"]
    if side % model["scale_factor"]:
        raise ValueError(f"patch grid side {side} is not divisible by scale_factor {model['scale_factor']}")
    text = {**model["text"], **ids, "vocab_size": len(tokenizer)}
    return Idefics3Config(
        text_config={"model_type": "llama", **text},
        vision_config=dict(vision),
        scale_factor=model["scale_factor"],
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=ids["pad_token_id"],
        tie_word_embeddings=False,
    )


def processor(model: dict, tokenizer, chat_template: str = CHAT_TEMPLATE,
              **image_settings) -> Idefics3Processor:
    """Tiles of the vision tower's ``image_size`` (the processor's max_image_size must match it),
    images resized to ``longest_edge`` first, split into tiles plus a global view;
    ``image_seq_len`` = (tile / patch)^2 / scale_factor^2 tokens per tile. ``image_settings``
    (resampling, normalisation) and ``chat_template`` let an Idefics3-typed checkpoint of
    another family (SmolVLM-Instruct) keep its own."""
    vision, images = model["vision"], model["images"]
    tile = vision["image_size"]
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": images["longest_edge"]},
        max_image_size={"longest_edge": tile},
        do_image_splitting=images["do_image_splitting"],
        **image_settings,
    )
    seq_len = (tile // vision["patch_size"]) ** 2 // model["scale_factor"] ** 2
    return Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=seq_len,
        chat_template=chat_template,
    )
