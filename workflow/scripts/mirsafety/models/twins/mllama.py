"""Mllama (Llama-3.2-11B/90B-Vision-Instruct): a Llama-3 text model whose ``cross_attention_layers``
attend to the vision tower's tile features; the prompt holds one ``<|image|>`` token per image.

Special tokens and template: the Llama-3.2-11B-Vision-Instruct checkpoint's
``tokenizer_config.json``, ``generation_config.json`` and ``chat_template.json`` (the Llama-3
header format), and its ``preprocessor_config.json`` for the image processor (560-px tiles, at most
4 per image, CLIP mean/std, bilinear): here the tile is tiny, everything else as there.
"""

from transformers import MllamaConfig, MllamaForConditionalGeneration, MllamaProcessor
from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil

MODEL_CLASS = MllamaForConditionalGeneration

#: The image normalisation of the checkpoint's preprocessor_config.json (OpenAI CLIP's).
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

#: The Instruct checkpoint's generation_config.json also stops on these.
STOP_TOKENS = ("<|end_of_text|>", "<|eom_id|>")

SPECIAL_TOKENS = {
    "bos_token": "<|begin_of_text|>",  # written by the chat template
    "eos_token": "<|eot_id|>",  # end of a turn (the Instruct checkpoint's eos_token)
    "pad_token": "<|finetune_right_pad_id|>",
    "tokens": ["<|begin_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>", "<|step_id|>",
               "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>",
               "<|python_tag|>", "<|image|>"],
}

# The chat template of Llama-3.2-11B-Vision-Instruct (chat_template.json), for the messages the
# study sends (no tools): the bos token; when no message holds an image, a system header with the
# knowledge cutoff, today's date (strftime_now, as the real template does; "26 Jul 2024" where
# that is undefined) and the trimmed system text; then each turn as
# "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>", an image item rendering as
# "<|image|>" and a text item as its text, untrimmed. Like the real template it refuses a system
# message beside images ("Prompting with images is incompatible with system messages.").
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if not date_string is defined %}{%- if strftime_now is defined %}"
    "{%- set date_string = strftime_now('%d %b %Y') %}"
    "{%- else %}{%- set date_string = '26 Jul 2024' %}{%- endif %}{%- endif %}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- if messages[0]['content'] is string %}"
    "{%- set system_message = messages[0]['content'] | trim %}"
    "{%- else %}{%- set system_message = messages[0]['content'][0]['text'] | trim %}{%- endif %}"
    "{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{%- set image_ns = namespace(has_images=false) %}"
    "{%- for message in messages %}{%- if message['content'] is not string %}"
    "{%- for content in message['content'] %}{%- if content['type'] == 'image' %}"
    "{%- set image_ns.has_images = true %}{%- endif %}{%- endfor %}{%- endif %}{%- endfor %}"
    "{%- if image_ns.has_images and not system_message == '' %}"
    "{{- raise_exception('Prompting with images is incompatible with system messages.') }}"
    "{%- endif %}"
    "{%- if not image_ns.has_images %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\n' }}"
    "{{- 'Today Date: ' + date_string + '\\n\\n' }}"
    "{{- system_message }}{{- '<|eot_id|>' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for content in message['content'] %}"
    "{%- if content['type'] == 'image' %}{{- '<|image|>' }}"
    "{%- elif content['type'] == 'text' %}{{- content['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}{{- '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}"
)


def config(model: dict, tokenizer, ids: dict) -> MllamaConfig:
    """Mllama config: self-attention layers plus the ``cross_attention_layers`` among them.

    The vision tower's output concatenates its last hidden state with the
    ``intermediate_layers_indices`` ones, so ``vision_output_dim`` follows from those. The text
    rope is Llama 3.1's ("llama3" scaling), as in the checkpoint.
    """
    text, vision = dict(model["text"]), dict(model["vision"])
    cross = text["cross_attention_layers"]
    if not cross or not all(0 <= layer < text["num_hidden_layers"] for layer in cross):
        raise ValueError(f"cross_attention_layers {cross} must name some of the "
                         f"{text['num_hidden_layers']} text layers")
    if len(cross) == text["num_hidden_layers"]:
        raise ValueError("a Mllama text model needs self-attention layers besides cross-attention")
    if max(vision["intermediate_layers_indices"]) >= vision["num_hidden_layers"]:
        raise ValueError("intermediate_layers_indices must index the vision tower's local layers")
    text_config = {
        **text,
        **ids,
        "vocab_size": len(tokenizer),
        "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": 8192},
        "tie_word_embeddings": False,
    }
    stacked = len(vision["intermediate_layers_indices"]) + 1
    vision_config = {**vision, "vision_output_dim": vision["hidden_size"] * stacked}
    return MllamaConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_index=tokenizer.convert_tokens_to_ids("<|image|>"),
    )


def processor(model: dict, tokenizer) -> MllamaProcessor:
    """Square tiles of the vision tower's ``image_size``, at most ``max_image_tiles`` per image."""
    vision, images = model["vision"], model["images"]
    if images["max_image_tiles"] != vision["max_num_tiles"]:
        raise ValueError("the processor's max_image_tiles must equal the vision max_num_tiles")
    tile = vision["image_size"]
    image_processor = MllamaImageProcessorPil(
        size={"height": tile, "width": tile},
        max_image_tiles=images["max_image_tiles"],
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    return MllamaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                           chat_template=CHAT_TEMPLATE)
