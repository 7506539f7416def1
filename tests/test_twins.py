"""Every model of the study, exercised offline through its tiny twin.

A twin (resources/tiny_models.yaml, ``study_twins``) is a tiny random-weight model of the study
model's family, built here with that family's real special tokens, chat template and processor
settings. Each twin runs with its study model's registry entry (system prompt, thinking format,
image pixels, single-image mode), its weights swapped for the twin's, through the code a real run
takes: generation under every image condition, the thinking split on decoded tokens, the
teacher-forced entropy pass and the in-generation capture (both held to eager attention), and
the reasoning stage. A study model with neither a twin nor a written reason fails here.
"""

import pytest
import torch
import yaml
from transformers import AutoModelForImageTextToText

from mirsafety.core.config import validate_config
from mirsafety.core.thinking import split_thinking
from mirsafety.entropy.capture import EntropyHook, entropy_forward, generate_with_entropy
from mirsafety.entropy.extractor import EntropyExtractor
from mirsafety.entropy.kernel import QUANTITIES
from mirsafety.models.factory import make_backend
from mirsafety.models.requests import make_request
from mirsafety.reasoning.item_set import TASKS, read_items, write_reasoning_set
from mirsafety.reasoning.scores import run_reasoning

from conftest import REPO
from entropy_reference import TOL, assert_rows_match, image_blocks, pictures, sharpen

SPEC = yaml.safe_load((REPO / "resources" / "tiny_models.yaml").read_text())
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
STUDY = validate_config(yaml.safe_load((REPO / "config" / "study.yaml").read_text()), SCHEMA)
#: twin -> the first study model it stands in for (whose registry entry it runs with)
TWINS = {}
for _study_name, _twin in SPEC["study_twins"].items():
    if isinstance(_twin, str):
        TWINS.setdefault(_twin, _study_name)
PROMPT = "How are these pictures linked?"
RESPONSE = "<think>The first shows a kite.</think>They are linked by the wind."
GREEDY = {"do_sample": False, "max_new_tokens": 6, "temperature": None, "top_p": None,
          "top_k": None}


def test_every_study_model_has_a_twin_or_says_why():
    assert set(SPEC["study_twins"]) == set(STUDY["models"]), "study_twins and study.yaml differ"
    for name, twin in SPEC["study_twins"].items():
        if isinstance(twin, str):
            assert twin in SPEC["models"], f"{name}: twin {twin} is not in tiny_models.yaml"
        else:
            assert set(twin) == {"no_twin"} and len(twin["no_twin"]) > 40, name


def twin_entry(study_name: str, path) -> dict:
    """The study model's registry entry with the twin's weights, on CPU in float32."""
    entry = dict(STUDY["models"][study_name])
    decoding = {**entry["decoding"], "do_sample": False, "max_new_tokens": 6}
    # The twin runs through transformers whatever the study's engine: the path of the entropy
    # pass (and of generation for a transformers model); what vLLM does with the same messages
    # is checked against the real package by `make vllm-contract`.
    return {**entry, "backend": "transformers", "weights": {"path": str(path)},
            "dtype": "float32", "decoding": decoding,
            "entropy_capture": True, "batch_size": 1}


@pytest.fixture(scope="module", params=sorted(TWINS))
def twin(request, tiny_models):
    """(twin name, study entry on the twin, extractor with sharpened attention, eager copy)."""
    path = tiny_models[request.param]
    entry = twin_entry(TWINS[request.param], path)
    extractor = EntropyExtractor(str(path), entry)
    sharpen(extractor.model)
    eager = sharpen(AutoModelForImageTextToText.from_pretrained(
        path, dtype=torch.float32,
        attn_implementation={"text_config": "eager", "vision_config": "sdpa"}).eval())
    return request.param, entry, extractor, eager


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """One prepared-dataset instance with three images, as the generate stage reads it."""
    root = tmp_path_factory.mktemp("twin-data")
    names = []
    for k, image in enumerate(pictures(3)):
        names.append(f"Violence/Analogy/1_{k}.png")
        (root / names[-1]).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / names[-1])
    instance = {"uid": "Violence/Analogy/1", "revised_prompt": PROMPT,
                "original_question": "How do kites fly?", "images": names}
    return root, instance


def config_image_token_id(config) -> int:
    """The id the model scatters image features into, as its own config says."""
    for key in ("image_token_id", "image_token_index"):
        if getattr(config, key, None) is not None:
            return getattr(config, key)
    raise AssertionError(f"{type(config).__name__} names no image token")


@pytest.mark.parametrize("condition", ["multi_image", "single_image", "text_only"])
def test_generation_under_every_condition(twin, dataset, condition):
    name, entry, extractor, _ = twin
    root, instance = dataset
    backend = make_backend(entry, capture=EntropyHook())
    try:
        request = make_request(instance, root, entry, condition)
        [result] = backend.generate([request])
    finally:
        backend.close()
    assert result.status == "ok", (name, result.error)
    sent = {"multi_image": 1 if entry["single_image"] else 3, "single_image": 1, "text_only": 0}
    assert len(request.images) == sent[condition]  # single_image models get one canvas always
    assert (result.image_tokens > 0) == bool(request.images)
    assert result.entropy is not None and result.completion_tokens > 0


def test_thinking_split_on_decoded_tokens(twin):
    """The tags survive decoding (special tokens or not) and the answer is cut out of them."""
    name, entry, extractor, _ = twin
    tokenizer = extractor.tokenizer
    ids = tokenizer(RESPONSE, add_special_tokens=False)["input_ids"]
    backend = make_backend(entry)
    try:
        decoded = backend.decode(ids)
    finally:
        backend.close()
    answer, thinking = split_thinking(decoded, entry["thinking"])
    if entry["thinking"] in ("think", "auto"):
        assert answer == "They are linked by the wind." and thinking == "The first shows a kite."


def test_teacher_forced_entropy_equals_eager_and_counts_image_keys(twin):
    name, entry, extractor, eager = twin
    inputs = extractor.prompt_inputs(pictures(3), PROMPT, entry["system_prompt"])
    response = extractor.tokenizer("They are linked by the wind.",
                                   add_special_tokens=False)["input_ids"]
    forced = extractor.teacher_forced_inputs(inputs, response)
    rows = forced["attention_mask"].bool()
    found, _ = entropy_forward(extractor.model, forced, rows, extractor.image_token_id)
    with torch.inference_mode():
        reference = eager(**forced, output_attentions=True)
    image = forced["input_ids"] == config_image_token_id(extractor.model.config)
    assert image.sum() > 0, f"{name}: no image features in the prompt"
    attentions = [reference.attentions[layer] for layer in found.layers]
    # Gemma-3 marks image tokens in token_type_ids: they see their whole image both ways
    blocks = image_blocks(forced["token_type_ids"]) if "token_type_ids" in forced and \
        extractor.model.config.model_type == "gemma3" else None
    checked = assert_rows_match(found, dict(zip(found.layers, attentions)),
                                forced["attention_mask"], image, found.layers, blocks)
    assert checked == int(forced["attention_mask"].sum())


def test_generation_capture_equals_the_teacher_forced_pass(twin):
    name, entry, extractor, _ = twin
    images = pictures(3)
    inputs = extractor.prompt_inputs(images, PROMPT, entry["system_prompt"])
    with torch.inference_mode():
        output, captured = generate_with_entropy(extractor.model, inputs, block=3, **GREEDY)
    new = output[0, inputs["input_ids"].shape[1]:].tolist()
    forced = extractor.extract(images, PROMPT, entry["system_prompt"], response_ids=new,
                               per_token=True)
    for quantity in QUANTITIES:
        got, want = captured.values[quantity][0], torch.tensor(forced["per_token"][quantity])
        assert torch.allclose(got, want, atol=TOL, equal_nan=True), (name, quantity)


def test_reasoning_stage(twin, tmp_path):
    name, entry, _, _ = twin
    spec = {"name": "twin-check", "seed": 1, "image_size": [56, 56], "items_per_task": 1,
            "tasks": list(TASKS)[:2]}
    write_reasoning_set(spec, tmp_path / "set")
    summary = run_reasoning(name, entry, tmp_path / "set", tmp_path / "out")
    assert summary["n"] == len(read_items(tmp_path / "set")) and summary["n_failed"] == 0

