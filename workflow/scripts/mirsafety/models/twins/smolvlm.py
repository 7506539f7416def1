"""SmolVLM (SmolVLM-2B = HuggingFaceTB/SmolVLM-Instruct): an Idefics3 model with a SmolLM2 (Llama)
text part and a SigLIP vision tower on image tiles.

Which transformers classes. SmolVLM-Instruct (the first SmolVLM, November 2024) predates
transformers' ``smolvlm`` model type, which was added for SmolVLM2 (its docs name
HuggingFaceTB/SmolVLM2-2.2B-Instruct, and its processor adds video, a video processor and
``num2words``). The SmolVLM-Instruct checkpoint's ``config.json`` says ``"model_type":
"idefics3"`` and ``Idefics3ForConditionalGeneration``, its ``processor_config.json``
``Idefics3Processor`` with ``image_seq_len`` 81, and its preprocessor ``Idefics3ImageProcessor``.
``AutoModelForImageTextToText``/``AutoProcessor`` therefore load it as Idefics3, and so is this
twin (config ``model_type`` ``idefics3``): no video processor, no ``num2words``.

What makes it SmolVLM rather than Idefics3-8B: the SmolLM2 tokenizer's tokens (``<|im_start|>``
as BOS, written by the chat template; ``<end_of_utterance>`` ending a turn; ``<|im_end|>`` as
padding; the image tokens ``<fake_token_around_image>``, ``<image>``, ``<global-img>``,
``<row_i_col_j>``), its chat template (Idefics3's "User:<image>...<end_of_utterance>\\nAssistant:"
form, opened by ``<|im_start|>``), and its vision settings: 384-px tiles of 14-px patches,
pixel shuffle ``scale_factor`` 3 (27 x 27 patches -> 81 tokens per tile), images resized to a
longest edge of 4 tiles (1536 px), LANCZOS, mean/std 0.5. The twin keeps the scale factor (3)
and the tile arithmetic, at tiny sizes (see resources/tiny_models.yaml).
"""

from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
from transformers.image_utils import PILImageResampling

from mirsafety.models.twins import idefics3

MODEL_CLASS = Idefics3ForConditionalGeneration

#: Tile tags <row_i_col_j> of a split image, for up to GRID x GRID tiles (Idefics3Processor's).
GRID = idefics3.GRID

SPECIAL_TOKENS = {
    "bos_token": "<|im_start|>",  # written by the chat template, not added by the tokenizer
    "eos_token": "<end_of_utterance>",  # end of a turn
    "pad_token": "<|im_end|>",
    # SmolLM2's first ids (<|endoftext|> 0, <|im_start|> 1, <|im_end|> 2), then SmolVLM's own
    "tokens": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<end_of_utterance>",
               "<fake_token_around_image>", "<image>", "<global-img>",
               *(f"<row_{i + 1}_col_{j + 1}>" for i in range(GRID) for j in range(GRID))],
}

# The chat template of SmolVLM-Instruct (chat_template.json): "<|im_start|>" then, per message,
# "Role:" (capitalised; ": " when the content does not start with an image) + the content in the
# order given (image -> "<image>", text -> its text) + "<end_of_utterance>\n"; the generation
# prompt is "Assistant:". transformers' SmolVLM processor ships the same template, extended to
# videos and plain-string content, as DEFAULT_CHAT_TEMPLATE (models/smolvlm/processing_smolvlm.py):
# tests/test_twins_templates.py checks the two render the same prompts. Plain-string content
# (e.g. a system prompt given as a string) renders as in that template.
CHAT_TEMPLATE = idefics3.user_assistant_template("<|im_start|>")


def config(model: dict, tokenizer, ids: dict) -> Idefics3Config:
    """The Idefics3 config (Llama text part, SigLIP-style tower of one tile, pixel shuffle)."""
    return idefics3.config(model, tokenizer, ids)


def processor(model: dict, tokenizer) -> Idefics3Processor:
    """SmolVLM-Instruct's preprocessing at tiny sizes: the Idefics3 processor with its own
    resampling (LANCZOS), normalisation (mean and std 0.5) and chat template."""
    return idefics3.processor(model, tokenizer, CHAT_TEMPLATE,
                              resample=PILImageResampling.LANCZOS,
                              image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
