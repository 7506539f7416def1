"""Gemma 3 (Gemma-3-12B/27B, google/gemma-3-{12b,27b}-it): a Gemma 3 text part with interleaved
sliding-window and global attention layers, and a SigLIP vision tower whose output is pooled to
``mm_tokens_per_image`` soft tokens per image.

Special tokens: the gemma-3-it checkpoints' ``tokenizer_config.json`` (``<bos>``, ``<eos>``,
``<pad>``, ``<start_of_turn>``/``<end_of_turn>``; the named multimodal tokens ``boi_token``
``<start_of_image>``, ``eoi_token`` ``<end_of_image>`` and ``image_token``
``<image_soft_token>``, which ``Gemma3Processor`` reads from the tokenizer). The chat template
writes one ``<start_of_image>`` per image; the processor expands each into
``"\\n\\n<start_of_image>" + mm_tokens_per_image x "<image_soft_token>" + "<end_of_image>\\n\\n"``;
the model scatters the image features into the ``<image_soft_token>`` positions
(``config.image_token_id``), which are therefore the image keys of the entropy pass. Note that
``processor.image_token`` (and, in transformers 5.24, ``processor.image_token_id``) is the
begin-of-image marker, one per image: see ``models.loading.image_token_id``.

Two properties of the architecture the entropy pass meets here and nowhere else so far:

* sliding-window layers (``layer_types``): a row of such a layer sees only the last
  ``sliding_window`` keys, so with several images it may see some of them or none (the twin's
  window is small enough for that to happen in a 3-image prompt);
* bidirectional image blocks: given ``token_type_ids`` (the processor returns them), the soft
  tokens of one image attend to each other in both directions, so an image-token query row also
  sees the later soft tokens of its own image (the mask says so; the entropy kernel follows it).
"""

from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

from mirsafety.models.twins.common import head_dim

MODEL_CLASS = Gemma3ForConditionalGeneration

#: Gemma 3's named multimodal tokens (tokenizer attributes ``boi_token`` etc.).
NAMED_TOKENS = {
    "boi_token": "<start_of_image>",
    "eoi_token": "<end_of_image>",
    "image_token": "<image_soft_token>",
}

SPECIAL_TOKENS = {
    "bos_token": "<bos>",  # written by the chat template
    "eos_token": "<end_of_turn>",  # end of a turn: generation stops here (generation_config)
    "pad_token": "<pad>",
    # in the real vocabulary's order: <pad> 0, <eos> 1, <bos> 2, ...
    "tokens": ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>",
               *NAMED_TOKENS.values()],
}

# The chat template of the gemma-3-it checkpoints (chat_template.json), written out here for the
# messages the study sends: "<bos>", then per turn "<start_of_turn>{user|model}\n" + content +
# "<end_of_turn>\n", assistant turns named "model"; a system message is not a turn of its own but
# its text + "\n\n" opens the first user turn; image items render as "<start_of_image>", text
# items (and string content) trimmed, in the order given; roles must alternate user/model.
# Checked against the rendering shown in transformers' own Gemma3ForConditionalGeneration.forward
# docstring (tests/test_twins_templates.py).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% if messages[0]['content'] is string %}"
    "{% set first_user_prefix = messages[0]['content'] + '\n\n' %}"
    "{% else %}{% set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' %}{% endif %}"
    "{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{% if message['content'] is string %}{{ message['content'] | trim }}"
    "{% elif message['content'] is iterable %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<start_of_image>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] | trim }}{% endif %}{% endfor %}"
    "{% else %}{{ raise_exception('Invalid content type') }}{% endif %}"
    "{{ '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def config(model: dict, tokenizer, ids: dict) -> Gemma3Config:
    """Gemma 3 config: ``layer_types`` interleaving sliding and global layers, SigLIP vision.

    The projector average-pools the tower's (image_size / patch_size)^2 patches to
    ``mm_tokens_per_image`` tokens: a square number whose side divides the patch grid's side.
    """
    text, vision = dict(model["text"]), dict(model["vision"])
    tokens = model["mm_tokens_per_image"]
    side, grid = round(tokens ** 0.5), vision["image_size"] // vision["patch_size"]
    if side * side != tokens or grid % side:
        raise ValueError(f"mm_tokens_per_image {tokens} must be a square whose side divides the "
                         f"patch grid side {grid}")
    dim = text.setdefault("head_dim", head_dim(text))
    text_config = {
        "model_type": "gemma3_text",
        "query_pre_attn_scalar": dim,  # as in the 12B/27B checkpoints: 1/sqrt(head_dim)
        **text,
        **ids,
        "vocab_size": len(tokenizer),
    }
    token_id = tokenizer.convert_tokens_to_ids
    return Gemma3Config(
        text_config=text_config,
        vision_config={"model_type": "siglip_vision_model", **vision},
        mm_tokens_per_image=tokens,
        boi_token_index=token_id(NAMED_TOKENS["boi_token"]),
        eoi_token_index=token_id(NAMED_TOKENS["eoi_token"]),
        image_token_index=token_id(NAMED_TOKENS["image_token"]),
        tie_word_embeddings=True,  # Gemma ties the output layer to the embeddings
    )


def processor(model: dict, tokenizer) -> Gemma3Processor:
    """Square images of the tower's size (bilinear, mean/std 0.5, no pan-and-scan: the
    checkpoints' preprocessor settings) and ``mm_tokens_per_image`` soft tokens per image."""
    # Gemma3Processor reads boi/eoi/image tokens as tokenizer attributes; they are saved in the
    # tokenizer config and come back on reload, as from the real checkpoint.
    tokenizer._set_model_specific_special_tokens(special_tokens=NAMED_TOKENS)
    side = model["vision"]["image_size"]
    image_processor = Gemma3ImageProcessorPil(
        size={"height": side, "width": side},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_pan_and_scan=False,
    )
    return Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        image_seq_length=model["mm_tokens_per_image"],
    )
