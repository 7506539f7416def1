"""Family-specific checks of the twins, beyond what tests/test_twins.py runs for every twin.

* GLM-4.1V-Thinking: ``<think>``, ``</think>``, ``<answer>``, ``</answer>`` are special tokens of
  its tokenizer; the backend's decode keeps them, so the answer is still cut out of the thinking.
* Mllama (Llama-3.2-Vision): the entropy is taken on the self-attention layers only (the
  cross-attention layers' keys are image features), and the teacher-forced pass extends
  ``cross_attention_mask`` as a generation does. A freshly initialised Mllama has its
  cross-attention gates at zero (the images cannot reach the text), so these checks open the
  gates: then a wrong ``cross_attention_mask`` for the response would change the later layers.
"""

import pytest
import torch
import yaml
from transformers import AutoModelForImageTextToText

from mirsafety.core.config import validate_config
from mirsafety.core.thinking import split_thinking
from mirsafety.entropy.capture import entropy_forward, generate_with_entropy, self_attention_layers
from mirsafety.entropy.extractor import EntropyExtractor
from mirsafety.entropy.kernel import QUANTITIES
from mirsafety.models.factory import make_backend
from mirsafety.models.tiny import build_tiny_model

from conftest import REPO
from entropy_reference import TOL, assert_rows_match, pictures, sharpen

SPEC = yaml.safe_load((REPO / "resources" / "tiny_models.yaml").read_text())
STUDY = validate_config(yaml.safe_load((REPO / "config" / "study.yaml").read_text()),
                        REPO / "workflow" / "schemas" / "config.schema.yaml")
PROMPT = "How are these pictures linked?"
GREEDY = {"do_sample": False, "max_new_tokens": 6, "temperature": None, "top_p": None,
          "top_k": None}


def study_entry(study_name: str, path) -> dict:
    """The study model's registry entry with the twin's weights, on CPU in float32."""
    entry = dict(STUDY["models"][study_name])
    # The twin runs through transformers whatever the study's engine: the path of the entropy
    # pass (and of generation for a transformers model); what vLLM does with the same messages
    # is checked against the real package by `make vllm-contract`.
    return {**entry, "backend": "transformers", "weights": {"path": str(path)},
            "dtype": "float32", "batch_size": 1,
            "decoding": {**entry["decoding"], "do_sample": False, "max_new_tokens": 6}}


# --- GLM-4.1V-Thinking -------------------------------------------------------------------------

def test_glm4v_thinking_tags_are_special_tokens_and_the_answer_is_still_cut_out(tmp_path):
    folder = build_tiny_model("tiny-glm4v", SPEC, tmp_path / "glm4v")
    entry = study_entry("GLM-4.1V-9B-Thinking", folder)
    assert entry["thinking"] == "auto"
    backend = make_backend(entry)
    try:
        tokenizer = backend.processor.tokenizer
        tags = ["<think>", "</think>", "<answer>", "</answer>"]
        tag_ids = tokenizer.convert_tokens_to_ids(tags)
        assert set(tag_ids) <= set(tokenizer.all_special_ids)  # special, as in the checkpoint
        # GLM-4.1V-Thinking's output: the thinking, then the answer in <answer> tags, then eos
        text = "<think>The first shows a kite.</think><answer>They are linked by the wind.</answer>"
        ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        assert [i for i in ids if i in tag_ids] == tag_ids  # each tag is one token
        # skipping special tokens would lose the tags, and with them the split
        assert "<answer>" not in tokenizer.decode(ids, skip_special_tokens=True)
        decoded = backend.decode(ids)
    finally:
        backend.close()
    assert decoded == text  # tags kept, eos dropped
    answer, thinking = split_thinking(decoded, entry["thinking"])
    assert answer == "They are linked by the wind." and thinking == "The first shows a kite."


# --- Mllama ------------------------------------------------------------------------------------

def open_gates(model, value=1.0):
    """Let the cross-attention layers reach the text (their tanh gates start at zero)."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("cross_attn_attn_gate", "cross_attn_mlp_gate")):
                parameter.fill_(value)
    return model


@pytest.fixture(scope="module")
def mllama(tmp_path_factory):
    """(study entry, extractor with open gates and sharpened attention, eager copy)."""
    folder = build_tiny_model("tiny-mllama", SPEC, tmp_path_factory.mktemp("mllama") / "m")
    entry = study_entry("Llama-3.2-11B-Vision", folder)
    extractor = EntropyExtractor(str(folder), entry)
    open_gates(sharpen(extractor.model))
    eager = open_gates(sharpen(AutoModelForImageTextToText.from_pretrained(
        folder, dtype=torch.float32,
        attn_implementation={"text_config": "eager", "vision_config": "sdpa"}).eval()))
    return entry, extractor, eager


def test_mllama_layers_are_the_self_attention_layers(mllama):
    _, extractor, _ = mllama
    config = extractor.model.config
    cross = config.text_config.cross_attention_layers
    own = self_attention_layers(config)
    assert cross and own and not set(cross) & set(own)
    assert sorted(set(cross) | set(own)) == list(range(config.text_config.num_hidden_layers))
    found = extractor.extract(pictures(2), PROMPT, None, "They are linked.")
    assert found["layers"] == own and found["n_image_keys"]["max"] == 2  # the <|image|> tokens
    with pytest.raises(ValueError, match="cross-attention"):
        inputs = extractor.prompt_inputs(pictures(1), PROMPT, None)
        rows = torch.ones_like(inputs["input_ids"], dtype=torch.bool)
        entropy_forward(extractor.model, inputs, rows, extractor.image_token_id, layers=cross)


def test_mllama_response_sees_the_images_like_the_prompts_last_token(mllama):
    """The cross-attention mask of the response repeats the prompt's last row, as generate does:
    with the gates open, the images change the response rows' attention in the later layers."""
    _, extractor, _ = mllama
    inputs = extractor.prompt_inputs(pictures(3), PROMPT, None)
    response = extractor.tokenizer("They are linked.", add_special_tokens=False)["input_ids"]
    forced = extractor.teacher_forced_inputs(inputs, response)
    mask, length = forced["cross_attention_mask"], inputs["input_ids"].shape[1]
    assert mask.shape[1] == forced["input_ids"].shape[1]
    assert torch.equal(mask[:, length:], mask[:, length - 1:length].expand_as(mask[:, length:]))
    rows = forced["attention_mask"].bool()
    found, _ = entropy_forward(extractor.model, forced, rows, extractor.image_token_id)
    blind = {**forced, "cross_attention_mask": torch.zeros_like(mask)}
    without, _ = entropy_forward(extractor.model, blind, rows, extractor.image_token_id)
    later = found.layers.index(max(found.layers))  # a layer after the cross-attention one
    assert not torch.allclose(found.values["entropy_all"][..., later],
                              without.values["entropy_all"][..., later])


def test_mllama_with_open_gates_equals_eager_on_the_self_attention_layers(mllama):
    _, extractor, eager = mllama
    inputs = extractor.prompt_inputs(pictures(3), PROMPT, None)
    response = extractor.tokenizer("They are linked by the wind.",
                                   add_special_tokens=False)["input_ids"]
    forced = extractor.teacher_forced_inputs(inputs, response)
    found, _ = entropy_forward(extractor.model, forced, forced["attention_mask"].bool(),
                               extractor.image_token_id)
    with torch.inference_mode():
        reference = eager(**forced, output_attentions=True)
    image = forced["input_ids"] == extractor.model.config.image_token_id
    attentions = {layer: reference.attentions[layer] for layer in found.layers}
    checked = assert_rows_match(found, attentions, forced["attention_mask"], image, found.layers)
    assert checked == int(forced["attention_mask"].sum())


def test_mllama_with_open_gates_generation_capture_equals_the_teacher_forced_pass(mllama):
    _, extractor, _ = mllama
    images = pictures(3)
    inputs = extractor.prompt_inputs(images, PROMPT, None)
    with torch.inference_mode():
        output, captured = generate_with_entropy(extractor.model, inputs, block=3, **GREEDY)
    new = output[0, inputs["input_ids"].shape[1]:].tolist()
    forced = extractor.extract(images, PROMPT, None, response_ids=new, per_token=True)
    assert captured.layers == forced["layers"] == self_attention_layers(extractor.model.config)
    for quantity in QUANTITIES:
        got, want = captured.values[quantity][0], torch.tensor(forced["per_token"][quantity])
        assert torch.allclose(got, want, atol=TOL, equal_nan=True), quantity
