"""Gemma 3's twin (tiny-gemma3): its image keys, its sliding-window layers, its image blocks.

* Image keys. Gemma 3's ``processor.image_token`` (and, in transformers 5.24,
  ``processor.image_token_id``) is ``<start_of_image>``, one per image; the model scatters the
  image features into the ``<image_soft_token>`` positions (``config.image_token_id``), and those
  are the image keys of the entropy pass and the image tokens the backend counts.
* The model's mask is not the causal one that tests/test_twins.py's reference assumes
  (entropy_reference.assert_rows_match: a row's keys are the positions up to it). Given
  ``token_type_ids`` (the processor returns them), each image's soft tokens attend to one another
  both ways, so an image row also has keys after it; and the local layers see only the last
  ``sliding_window`` keys. The twin's window (12) is shorter than one image block, so in a
  3-image prompt the local layer cannot see some images' keys from some rows, and sees none at
  all from the rows after the last image. Here the teacher-forced pass is held to eager attention
  with the model's own mask, written out: causal or same-image, non-padding, and within the
  window for a local layer; and the generation capture, whose local layers run on a sliding cache
  that drops old keys, to the teacher-forced pass.
"""

import json
import math
import shutil

import pytest
import torch
import yaml
from transformers import AutoModelForImageTextToText

from mirsafety.core.config import validate_config
from mirsafety.entropy.capture import entropy_forward, generate_with_entropy
from mirsafety.entropy.extractor import EntropyExtractor
from mirsafety.entropy.kernel import QUANTITIES
from mirsafety.models.backend import Request
from mirsafety.models.factory import make_backend
from mirsafety.models.loading import image_token_id
from mirsafety.models.processors import load_processor
from mirsafety.models.tiny import build_tiny_model

from conftest import REPO
from entropy_reference import TOL, pictures, sharpen

SPEC = yaml.safe_load((REPO / "resources" / "tiny_models.yaml").read_text())
STUDY = validate_config(yaml.safe_load((REPO / "config" / "study.yaml").read_text()),
                        REPO / "workflow" / "schemas" / "config.schema.yaml")
TWIN = "tiny-gemma3"
PROMPT = "How are these pictures linked?"
RESPONSE = "They are linked by the wind."
GREEDY = {"do_sample": False, "max_new_tokens": 6, "temperature": None, "top_p": None,
          "top_k": None}


def study_entry(path) -> dict:
    """Gemma-3-12B's registry entry with the twin's weights, on CPU in float32."""
    entry = dict(STUDY["models"]["Gemma-3-12B"])
    # The twin runs through transformers whatever the study's engine: the path of the entropy
    # pass (and of generation for a transformers model); what vLLM does with the same messages
    # is checked against the real package by `make vllm-contract`.
    return {**entry, "backend": "transformers", "weights": {"path": str(path)},
            "dtype": "float32", "batch_size": 1,
            "entropy_capture": True,
            "decoding": {**entry["decoding"], "do_sample": False, "max_new_tokens": 6}}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_tiny_model(TWIN, SPEC, tmp_path_factory.mktemp("gemma3") / TWIN)


def with_window(folder, window: int, dest):
    """A copy of the twin whose local layers have a window of ``window`` keys."""
    shutil.copytree(folder, dest)
    config = json.loads((dest / "config.json").read_text())
    config["text_config"]["sliding_window"] = window
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    return dest


def loaded(path):
    """(extractor, eager copy), both with sharpened attention (as tests/test_twins.py)."""
    extractor = EntropyExtractor(str(path), study_entry(path))
    sharpen(extractor.model)
    eager = sharpen(AutoModelForImageTextToText.from_pretrained(
        path, dtype=torch.float32,
        attn_implementation={"text_config": "eager", "vision_config": "sdpa"}).eval())
    return extractor, eager


def model_mask(forced, config, layer) -> torch.Tensor:
    """(T, T) bool: the keys (columns) each row (query) of batch row 0 may attend to in
    ``layer``, by Gemma 3's rule: causal, or within the row's own image block (both ways),
    non-padding keys only, and for a local layer, keys after ``position - sliding_window``."""
    valid = forced["attention_mask"][0].bool()
    length = valid.numel()
    positions = torch.arange(length)
    allowed = positions[None, :] <= positions[:, None]
    image = forced["token_type_ids"][0] == 1
    starts = image & ~torch.nn.functional.pad(image, (1, 0))[:-1]
    block = torch.where(image, torch.cumsum(starts.long(), 0), -1)
    allowed |= (block[:, None] == block[None, :]) & image[:, None]
    allowed &= valid[None, :]
    if config.layer_types[layer] == "sliding_attention":
        allowed &= positions[None, :] > positions[:, None] - config.sliding_window
    return allowed


def reference(p, allowed, context, image):
    """Head-mean quantities of rows p (H, K): entropies over ``allowed`` keys, normalised by the
    row's ``context`` keys (what it may attend to without a window), as the kernel defines them."""
    p = p.double()
    h = -torch.special.xlogy(p, p).sum(-1)
    seen, n, n_img = allowed & image, int(context.sum()), int((context & image).sum())
    q = p * seen
    q = q / q.sum(-1, keepdim=True)
    h_img = -torch.special.xlogy(q, q).sum(-1) if seen.any() else torch.full_like(h, math.nan)
    return {"entropy_all": h.mean(),
            "entropy_img": h_img.mean(),
            "entropy_all_norm": (h / math.log(n)).mean() if n > 1 else torch.tensor(0.0),
            "entropy_img_norm": ((h_img / math.log(n_img)).mean() if n_img > 1
                                 else h_img.mean() * 0.0)}, n, n_img


def test_image_keys_are_the_soft_tokens_not_the_begin_of_image_marker(folder, tmp_path):
    processor = load_processor(folder)
    config = AutoModelForImageTextToText.from_pretrained(folder).config
    soft = processor.tokenizer.convert_tokens_to_ids("<image_soft_token>")
    boi = processor.tokenizer.convert_tokens_to_ids("<start_of_image>")
    assert processor.image_token == "<start_of_image>" and config.image_token_id == soft != boi
    assert image_token_id(processor, config) == soft
    backend = make_backend(study_entry(folder))
    try:
        [result] = backend.generate([Request("u", PROMPT, pictures(3))])
    finally:
        backend.close()
    assert result.status == "ok", result.error
    assert result.image_tokens == 3 * config.mm_tokens_per_image  # not 3 (one marker per image)


@pytest.mark.parametrize("twin", ["tiny-qwen2.5-vl-s", "tiny-idefics3-s", "tiny-smolvlm"])
def test_image_keys_are_unchanged_where_placeholder_and_image_token_agree(twin, tmp_path):
    path = build_tiny_model(twin, SPEC, tmp_path / twin)
    processor = load_processor(path)
    config = AutoModelForImageTextToText.from_pretrained(path).config
    placeholder = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    assert image_token_id(processor, config) == image_token_id(processor) == placeholder
    assert placeholder == config.image_token_id


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "explicit"])
def test_teacher_forced_pass_equals_eager_under_the_models_own_mask(folder, fused, monkeypatch):
    monkeypatch.setattr("mirsafety.entropy.kernel.USE_FUSED", fused)
    extractor, eager = loaded(folder)
    text = extractor.model.config.get_text_config()
    assert text.layer_types == ["sliding_attention", "full_attention"]
    inputs = extractor.prompt_inputs(pictures(3), PROMPT, None)
    forced = extractor.teacher_forced_inputs(
        inputs, extractor.tokenizer(RESPONSE, add_special_tokens=False)["input_ids"])
    rows = forced["attention_mask"].bool()
    found, _ = entropy_forward(extractor.model, forced, rows, extractor.image_token_id)
    with torch.inference_mode():
        attentions = eager(**forced, output_attentions=True).attentions
    image = forced["input_ids"][0] == text_image_id(extractor)
    assert int(image.sum()) == 3 * extractor.model.config.mm_tokens_per_image
    context = model_mask(forced, text, 1)  # the global layer: no window
    sees = {}  # layer -> per row: how many image keys it sees
    bidirectional = False
    for li, layer in enumerate(found.layers):
        allowed = model_mask(forced, text, layer)
        sees[layer] = (allowed & image).sum(-1)
        for r, pos in enumerate(found.positions.tolist()):
            p = attentions[layer][0, :, pos, :]
            assert float(p[:, ~allowed[pos]].abs().sum()) < 1e-6, (layer, pos)  # mask agrees
            bidirectional |= bool(p[:, pos + 1:].sum() > 1e-3)
            want, n, n_img = reference(p, allowed[pos], context[pos], image)
            assert (int(found.n_keys[0, r]), int(found.n_image_keys[0, r])) == (n, n_img)
            for name, value in want.items():
                got = float(found.values[name][0, r, li])
                if math.isnan(float(value)):
                    assert math.isnan(got), (name, pos, layer)
                else:
                    assert abs(got - float(value)) < TOL, (name, pos, layer, got, float(value))
    assert bidirectional, "no image row attended to a later key of its image"
    # The window matters: after the first image, the local layer's rows see fewer image keys
    # than the global layer's, some of them none (NaN there, a number in the global layer).
    after = context.any(0) & (torch.arange(image.numel()) > int(image.nonzero()[-1]))
    assert bool((sees[0] < sees[1]).any())
    blind = (sees[0] == 0) & (sees[1] > 0)
    assert bool((blind & after).any())
    values = found.values["entropy_img"][0]
    assert torch.isnan(values[blind, 0]).all() and not torch.isnan(values[blind, 1]).any()


def text_image_id(extractor) -> int:
    return extractor.model.config.image_token_id


@pytest.mark.parametrize("window", [None, 40], ids=["twin-window", "window-40"])
def test_generation_capture_equals_the_teacher_forced_pass_on_a_sliding_cache(folder, window,
                                                                               tmp_path):
    """The local layers generate on a sliding cache that keeps only the last window keys; with
    a window of 40 the decode steps still see the last image's keys through it, at shifted
    indices, so the capture must map the cache's keys back to their positions."""
    path = folder if window is None else with_window(folder, window, tmp_path / "window")
    extractor, _ = loaded(path)
    images = pictures(3)
    inputs = extractor.prompt_inputs(images, PROMPT, None)
    prompt_length = inputs["input_ids"].shape[1]
    assert prompt_length > extractor.model.config.get_text_config().sliding_window
    with torch.inference_mode():
        output, captured = generate_with_entropy(extractor.model, inputs, block=3, **GREEDY)
    new = output[0, prompt_length:].tolist()
    forced = extractor.extract(images, PROMPT, None, response_ids=new, per_token=True)
    for quantity in QUANTITIES:
        got, want = captured.values[quantity][0], torch.tensor(forced["per_token"][quantity])
        assert torch.allclose(got, want, atol=TOL, equal_nan=True), quantity
    local = captured.values["entropy_img"][0, 1:, 0]  # decode steps, local layer
    if window is None:
        assert torch.isnan(local).all()  # the window has left the images behind
    else:
        assert not torch.isnan(local).any()  # it still holds image keys, at shifted indices
