"""The twins' chat templates render what the real checkpoints' templates render.

Each family module of ``workflow/scripts/mirsafety/models/twins`` writes its checkpoint's chat
template itself; these tests compare its rendering of the messages the study sends (one user turn
of N images then the text, optionally after a system message; plain-string content too) with the
source template's rendering or, where that template is not installed, with the prompt written out
from the source (each test says which).
"""

import ast
import re

from transformers.utils.chat_template_utils import render_jinja_template

from mirsafety.models.twins import internvl as _internvl
from mirsafety.models.twins import llava_onevision as _llava_onevision


def render(template: str, messages: list[dict], add_generation_prompt: bool = True) -> str:
    """``messages`` rendered by ``template`` as ``apply_chat_template`` renders them."""
    [text], _ = render_jinja_template(conversations=[messages], chat_template=template,
                                      add_generation_prompt=add_generation_prompt)
    return text


# --- InternVL3 and LLaVA-OneVision (twins/internvl.py, twins/llava_onevision.py) ---------------

_STUDY_TURN = [  # what models/loading.py sends: a system message, then images first, then the text
    {"role": "system", "content": [{"type": "text", "text": "You are a helpful assistant."}]},
    {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "image"},
                                 {"type": "text", "text": "How are these pictures linked?"}]},
]


def test_internvl3_template_renders_the_checkpoint_prompt():
    """Expected prompts written out from ``chat_template`` of transformers' InternVL conversion
    script (src/transformers/models/internvl/convert_internvl_weights_to_hf.py, not in the wheel;
    the template of the OpenGVLab/InternVL3-*-hf checkpoints): ChatML, no default system prompt,
    "<IMG_CONTEXT>\\n" per image in content order, "<|im_start|>assistant\\n" to generate."""
    assert render(_internvl.CHAT_TEMPLATE, _STUDY_TURN) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<IMG_CONTEXT>\n<IMG_CONTEXT>\n<IMG_CONTEXT>\n"
        "How are these pictures linked?<|im_end|>\n<|im_start|>assistant\n"
    )
    # content in the order given (the study always sends images first)
    mixed = [{"role": "user", "content": [{"type": "text", "text": "Compare "},
                                          {"type": "image"}, {"type": "text", "text": "and"}]}]
    assert render(_internvl.CHAT_TEMPLATE, mixed) == (
        "<|im_start|>user\nCompare <IMG_CONTEXT>\nand<|im_end|>\n<|im_start|>assistant\n")
    plain = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    assert render(_internvl.CHAT_TEMPLATE, plain) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\n")


def test_llava_onevision_template_renders_the_checkpoint_prompt():
    """Expected prompts written out from transformers' LLaVA-OneVision conversion script
    (src/transformers/models/llava_onevision/convert_llava_onevision_weights_to_hf.py, not in
    the wheel): its ``chat_template`` (the llava-onevision-qwen2-*-ov-hf checkpoints': ChatML, no
    default system prompt, every "<image>\\n" before the text) and the prompt it verifies the
    converted checkpoint with, "<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n
    <|im_start|>user\\n<image>\\nWhat is shown in this image?<|im_end|>\\n<|im_start|>assistant\\n"."""
    one = [_STUDY_TURN[0], {"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": "What is shown in this image?"}]}]
    assert render(_llava_onevision.CHAT_TEMPLATE, one) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<image>\nWhat is shown in this image?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert render(_llava_onevision.CHAT_TEMPLATE, _STUDY_TURN) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<image>\n<image>\n<image>\nHow are these pictures linked?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    plain = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    assert render(_llava_onevision.CHAT_TEMPLATE, plain) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\n")


def test_llava_onevision_template_matches_the_installed_docstring_example():
    """The installed ``LlavaOnevisionForConditionalGeneration.forward`` example sends the text
    *before* the image and decodes (special tokens skipped) "user\\n\\nWhat is shown in this
    image?\\nassistant\\ncat": the checkpoint's template puts the image first. Ours must too."""
    from transformers import LlavaOnevisionForConditionalGeneration

    doc = LlavaOnevisionForConditionalGeneration.forward.__doc__
    decoded = ast.literal_eval(re.search(r"batch_decode\(output.*\n\s*(\".*\")", doc).group(1))
    conversation = [{"role": "user", "content": [
        {"type": "text", "text": "What is shown in this image?"}, {"type": "image"}]}]
    prompt = render(_llava_onevision.CHAT_TEMPLATE, conversation)
    skipped = re.sub(r"<\|im_start\|>|<\|im_end\|>|<image>", "", prompt)
    assert decoded == skipped + "cat"


# --- Gemma 3 and SmolVLM (twins/gemma3.py, twins/smolvlm.py) -----------------------------------

def _gemma3_render(messages, add_generation_prompt=True):
    """The Gemma 3 twin's template as the processor renders it (the bos token passed in)."""
    from mirsafety.models.twins import gemma3

    [text], _ = render_jinja_template(conversations=[messages], chat_template=gemma3.CHAT_TEMPLATE,
                                      add_generation_prompt=add_generation_prompt,
                                      bos_token="<bos>")
    return text


def test_gemma3_template_renders_the_checkpoint_prompt():
    """Expected prompts written out from the gemma-3-it checkpoints' chat template (not in the
    wheel): "<bos>", turns "<start_of_turn>user\\n...<end_of_turn>\\n", the system text + "\\n\\n"
    opening the first user turn (Gemma has no system turn), "<start_of_image>" per image in
    content order, text trimmed, "<start_of_turn>model\\n" to generate."""
    assert _gemma3_render(_STUDY_TURN) == (
        "<bos><start_of_turn>user\nYou are a helpful assistant.\n\n"
        "<start_of_image><start_of_image><start_of_image>How are these pictures linked?"
        "<end_of_turn>\n<start_of_turn>model\n")
    assert _gemma3_render(_STUDY_TURN[1:]) == (
        "<bos><start_of_turn>user\n<start_of_image><start_of_image><start_of_image>"
        "How are these pictures linked?<end_of_turn>\n<start_of_turn>model\n")
    plain = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " Hello "},
             {"role": "assistant", "content": "Hi."}, {"role": "user", "content": "Bye"}]
    assert _gemma3_render(plain) == (
        "<bos><start_of_turn>user\nBe brief.\n\nHello<end_of_turn>\n"
        "<start_of_turn>model\nHi.<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n"
        "<start_of_turn>model\n")


def test_gemma3_prompt_matches_the_installed_docstring_example():
    """The installed ``Gemma3ForConditionalGeneration.forward`` example (google/gemma-3-4b-it, a
    system message then one image and a question) decodes, special tokens skipped, to
    "user\\nYou are a helpful assistant.\\n\\n\\n\\n\\n\\nWhere is the cat standing?\\nmodel\\n"
    before the answer: the template's "\\n\\n" after the system text, then the processor's
    "\\n\\n" around each image block. The twin's template and processor must give exactly that."""
    import yaml
    from PIL import Image
    from transformers import Gemma3ForConditionalGeneration

    from mirsafety.models.tiny import train_tokenizer
    from mirsafety.models.twins import gemma3

    from conftest import REPO

    doc = Gemma3ForConditionalGeneration.forward.__doc__
    decoded = ast.literal_eval(re.search(r"batch_decode\(generate_ids.*\n\s*(\".*\")", doc).group(1))
    spec = yaml.safe_load((REPO / "resources" / "tiny_models.yaml").read_text())
    processor = gemma3.processor(spec["models"]["tiny-gemma3"],
                                 train_tokenizer(spec["tokenizer"], gemma3))
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "You are a helpful assistant."}]},
        {"role": "user", "content": [{"type": "image"},
                                     {"type": "text", "text": "Where is the cat standing?"}]},
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = processor(text=[text], images=[[Image.new("RGB", (32, 32))]])["input_ids"][0]
    prompt = processor.tokenizer.decode(ids, skip_special_tokens=True)
    assert prompt.endswith("model\n") and decoded.startswith(prompt), (prompt, decoded)
    assert decoded[len(prompt):].startswith("Based on the image")


def test_smolvlm_template_renders_what_transformers_smolvlm_template_renders():
    """SmolVLM-Instruct's template against transformers' own SmolVLM template
    (``DEFAULT_CHAT_TEMPLATE`` of models/smolvlm/processing_smolvlm.py: the same template with a
    video branch added), on the study's turn, a plain-string conversation, a text-first turn."""
    from transformers.models.smolvlm.processing_smolvlm import DEFAULT_CHAT_TEMPLATE

    from mirsafety.models.twins import smolvlm

    plain = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    mixed = [{"role": "user", "content": [{"type": "text", "text": "Compare "},
                                          {"type": "image"}, {"type": "text", "text": " and"}]}]
    for messages in (_STUDY_TURN, _STUDY_TURN[1:], plain, mixed):
        for generate in (True, False):
            assert render(smolvlm.CHAT_TEMPLATE, messages, generate) == render(
                DEFAULT_CHAT_TEMPLATE, messages, generate)
    assert render(smolvlm.CHAT_TEMPLATE, _STUDY_TURN) == (
        "<|im_start|>System: You are a helpful assistant.<end_of_utterance>\n"
        "User:<image><image><image>How are these pictures linked?<end_of_utterance>\nAssistant:")


# --- Llama-3.2-Vision (Mllama) and GLM-4.1V-Thinking (twins/mllama.py, twins/glm4v.py) ---------

_IMAGES_THEN_TEXT = {"role": "user", "content": [
    {"type": "image"}, {"type": "image"}, {"type": "image"},
    {"type": "text", "text": "How are these pictures linked?"}]}


def test_mllama_template_renders_the_checkpoint_prompt():
    """Expected prompts written out from the chat template of meta-llama/Llama-3.2-11B-Vision-
    Instruct (its chat_template.json on the hub; no copy is installed here): the bos token, a
    system block with "Cutting Knowledge Date: December 2023" and "Today Date: {date_string}"
    only when no message holds an image, each turn as "<|start_header_id|>{role}<|end_header_id|>
    \\n\\n{content}<|eot_id|>" with "<|image|>" per image item, and an error for a system message
    beside images. The study sends Llama no system prompt."""
    import datetime

    import pytest
    from jinja2.exceptions import TemplateError

    from mirsafety.models.twins import mllama

    def render_llama(messages, **kwargs):
        [text], _ = render_jinja_template(conversations=[messages],
                                          chat_template=mllama.CHAT_TEMPLATE,
                                          add_generation_prompt=True,
                                          bos_token="<|begin_of_text|>", **kwargs)
        return text

    header = "<|start_header_id|>{}<|end_header_id|>\n\n".format
    assert render_llama([_IMAGES_THEN_TEXT]) == (
        "<|begin_of_text|>" + header("user") + "<|image|><|image|><|image|>"
        "How are these pictures linked?<|eot_id|>" + header("assistant"))
    text_only = [{"role": "user", "content": [{"type": "text", "text": "How do kites fly?"}]}]
    system = header("system") + "Cutting Knowledge Date: December 2023\nToday Date: {}\n\n"
    assert render_llama(text_only, date_string="26 Jul 2024") == (
        "<|begin_of_text|>" + system.format("26 Jul 2024") + "<|eot_id|>" + header("user")
        + "How do kites fly?<|eot_id|>" + header("assistant"))
    today = datetime.datetime.now().strftime("%d %b %Y")  # strftime_now, as the real template
    assert system.format(today) in render_llama(text_only)
    with_system = [{"role": "system", "content": [{"type": "text", "text": " Be brief. "}]},
                   {"role": "user", "content": "Hello"}]
    assert render_llama(with_system, date_string="26 Jul 2024") == (
        "<|begin_of_text|>" + system.format("26 Jul 2024") + "Be brief.<|eot_id|>"
        + header("user") + "Hello<|eot_id|>" + header("assistant"))
    with pytest.raises(TemplateError, match="incompatible with system messages"):
        render_llama([with_system[0], _IMAGES_THEN_TEXT])


def test_mllama_processor_keeps_the_templates_single_bos():
    """The template writes <|begin_of_text|>; MllamaProcessor adds one only where it is missing."""
    import yaml

    from mirsafety.models.tiny import train_tokenizer
    from mirsafety.models.twins import mllama

    from conftest import REPO
    from entropy_reference import pictures

    spec = yaml.safe_load((REPO / "resources" / "tiny_models.yaml").read_text())
    tokenizer = train_tokenizer(spec["tokenizer"], mllama)
    processor = mllama.processor(spec["models"]["tiny-mllama"], tokenizer)
    prompt = processor.apply_chat_template([_IMAGES_THEN_TEXT], add_generation_prompt=True,
                                           tokenize=False)
    inputs = processor(text=[prompt], images=[pictures(3)], return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    bos = tokenizer.convert_tokens_to_ids("<|begin_of_text|>")
    assert ids[0] == bos and ids.count(bos) == 1
    assert ids.count(tokenizer.convert_tokens_to_ids("<|image|>")) == 3


def test_glm4v_template_renders_the_checkpoint_prompt():
    """Expected prompts written out from the chat template of zai-org/GLM-4.1V-9B-Thinking (its
    chat_template.jinja on the hub; no copy is installed here), as transformers renders it
    (trim_blocks, lstrip_blocks): "[gMASK]<sop>", "<|system|>\\n{text}", "<|user|>\\n" then the
    items with nothing between them ("<|begin_of_image|><|image|><|end_of_image|>" per image),
    "<|assistant|>\\n{content}" for a past answer and "<|assistant|>\\n" to generate. The image
    wrapper is the one the installed Glm4vProcessor builds for video frames too
    (``replace_frame_token_id``)."""
    from transformers.models.glm4v.processing_glm4v import Glm4vProcessor

    from mirsafety.models.twins import glm4v

    image = "<|begin_of_image|><|image|><|end_of_image|>"
    assert render(glm4v.CHAT_TEMPLATE, [_IMAGES_THEN_TEXT]) == (
        "[gMASK]<sop><|user|>\n" + image * 3 + "How are these pictures linked?<|assistant|>\n")
    system = {"role": "system",
              "content": [{"type": "text", "text": "You are a helpful assistant."}]}
    assert render(glm4v.CHAT_TEMPLATE, [system, _IMAGES_THEN_TEXT]) == (
        "[gMASK]<sop><|system|>\nYou are a helpful assistant.<|user|>\n" + image * 3
        + "How are these pictures linked?<|assistant|>\n")
    plain = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"},
             {"role": "assistant", "content": "<answer>Hi.</answer>"},
             {"role": "user", "content": "Again"}]
    assert render(glm4v.CHAT_TEMPLATE, plain) == (
        "[gMASK]<sop><|system|>\nBe brief.<|user|>\nHello<|assistant|>\n<answer>Hi.</answer>"
        "<|user|>\nAgain<|assistant|>\n")
    frame = Glm4vProcessor.replace_frame_token_id(
        type("P", (), {"image_token": "<|image|>"})(), 0, num_image_tokens=1)
    assert frame.startswith(image)
