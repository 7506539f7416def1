"""Tiny offline models: build from the spec, reload like hub checkpoints, generate with 3 images."""

import importlib.util
import io
import json
import random
import socket

import huggingface_hub.constants
import pytest
import torch
import yaml
from PIL import Image
from transformers import Idefics3Processor, Qwen2_5_VLProcessor

from mirsafety.data.sample import draw_scene
from mirsafety.models.processors import Qwen2_5_VLImageOnlyProcessor
from mirsafety.models.tiny import FAMILIES, build_tiny_model, load_model, load_processor

from conftest import REPO

SPEC = yaml.safe_load((REPO / "resources" / "tiny_models.yaml").read_text())
NAMES = sorted(SPEC["models"])
HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
HUB_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "processor_config.json",
    "chat_template.jinja",
    "tiny_spec.json",
}


@pytest.fixture
def offline(monkeypatch):
    """Hub offline mode on (the env var and the constant read at import), and any network
    connection an error: whatever loads must come from the built folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def images(count=3, size=(64, 64)):
    rng = random.Random(0)
    scenes = [draw_scene(f"object{k}", k + 1, count, size, rng) for k in range(count)]
    return [Image.open(io.BytesIO(png)).convert("RGB") for png in scenes]


def chats(pictures):
    """Two conversations of different lengths, images first, then the text (as in MIR)."""
    texts = ["What links these pictures?", "Describe the first picture in detail, step by step."]
    content = [{"type": "image", "image": picture} for picture in pictures]
    return [[{"role": "user", "content": content + [{"type": "text", "text": t}]}] for t in texts]


def encode(processor, conversations):
    return processor.apply_chat_template(
        conversations,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs={"padding": True},
    )


def expected_image_tokens(processor, inputs, pictures):
    """Image tokens per conversation, from what the image processor says it made."""
    n_images = len(pictures)
    if "image_grid_thw" in inputs:  # Qwen2-VL family: grid patches / merge_size**2 per image
        merge = processor.image_processor.merge_size
        per_image = (inputs["image_grid_thw"].prod(dim=-1) // merge**2).tolist()
        return [sum(per_image[i * n_images : (i + 1) * n_images]) for i in range(2)]
    if "cross_attention_mask" in inputs:  # Mllama: one <|image|> per image (the tiles are keys
        return [n_images] * 2  # of the cross-attention layers, not tokens of the sequence)
    if "token_type_ids" in inputs and hasattr(processor, "image_seq_length"):  # Gemma 3:
        return [n_images * processor.image_seq_length] * 2  # soft tokens per image, no crops
    if type(processor).__name__.startswith("InternVL"):  # image_seq_length per tile (+ thumbnail)
        tiles = processor.image_processor(pictures, crop_to_patches=True)["num_patches"]
        return [sum(tiles) * processor.image_seq_length] * 2
    if type(processor).__name__.startswith("LlavaOnevision"):  # several images: each one base
        return [n_images * (processor.num_image_tokens + 1)] * 2  # view and a newline token
    # Idefics3: image_seq_len per tile; tiles = real (unpadded) tiles of each conversation
    tiles = inputs["pixel_attention_mask"].flatten(2).any(-1).sum(-1)
    return (tiles * processor.image_seq_len).tolist()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.usefixtures("offline")
def test_builds_reloads_and_generates_offline(name, tmp_path):
    folder = build_tiny_model(name, SPEC, tmp_path / name)
    assert {p.name for p in folder.iterdir()} == HUB_FILES
    processor, model = load_processor(folder), load_model(folder)
    assert processor.tokenizer.padding_side == "left"
    assert len(processor.tokenizer) == model.config.get_text_config().vocab_size == 512

    pictures = images()
    inputs = encode(processor, chats(pictures))
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    assert (mask[:, 0] == 0).any() and (mask[:, -1] == 1).all(), "left padding"
    image_tokens = (ids == model.config.image_token_id).sum(dim=1)
    assert (image_tokens > 0).all()
    assert image_tokens.tolist() == expected_image_tokens(processor, inputs, pictures)
    if "image_grid_thw" in inputs:  # without it Qwen2.5-VL silently uses text-only positions
        assert inputs["mm_token_type_ids"].sum(dim=1).tolist() == image_tokens.tolist()

    with torch.no_grad():
        batch = model.generate(**inputs, max_new_tokens=8, do_sample=False)[:, ids.shape[1] :]
        for row, conversation in enumerate(chats(pictures)):
            alone = encode(processor, [conversation])
            single = model.generate(**alone, max_new_tokens=8, do_sample=False)
            assert single[0, alone["input_ids"].shape[1] :].tolist() == batch[row].tolist()
    assert batch.shape[0] == 2 and 1 <= batch.shape[1] <= 8
    assert all(isinstance(text, str) for text in processor.batch_decode(batch))


@pytest.mark.parametrize("name", NAMES)
def test_build_is_byte_identical(name, tmp_path):
    first = build_tiny_model(name, SPEC, tmp_path / "a")
    second = build_tiny_model(name, SPEC, tmp_path / "b")
    for path in sorted(first.iterdir()):
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name


def test_spec_defines_the_promised_models():
    models = SPEC["models"]
    assert {"tiny-qwen2.5-vl-s", "tiny-qwen2.5-vl-m", "tiny-idefics3-s"} <= set(models)
    assert any(m["text"]["num_key_value_heads"] < m["text"]["num_attention_heads"] for m in models.values())
    assert SPEC["tokenizer"]["vocab_size"] == 512


def test_special_tokens_are_single_tokens(tiny_models):
    """Every special token of each family encodes to exactly one id after reload."""
    for name in NAMES:
        tokenizer = load_processor(tiny_models[name]).tokenizer
        for token in FAMILIES[SPEC["models"][name]["architecture"]].SPECIAL_TOKENS["tokens"]:
            assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1, token


def test_unknown_model_name_is_a_clear_error(tmp_path):
    with pytest.raises(KeyError, match="tiny-nonexistent"):
        build_tiny_model("tiny-nonexistent", SPEC, tmp_path)


@pytest.mark.parametrize("with_video_config", [True, False])
def test_qwen_processor_is_stock_where_torchvision_is_else_image_only(tmp_path, with_video_config):
    """Fall back to the image-only processor only when the video processor cannot be made:
    no torchvision here, or (anywhere) a folder without the video processor's settings."""
    folder = build_tiny_model("tiny-qwen2.5-vl-s", SPEC, tmp_path / "qwen")
    config = json.loads((folder / "processor_config.json").read_text())
    assert config["processor_class"] == "Qwen2_5_VLProcessor"  # loads with AutoProcessor elsewhere
    if not with_video_config:
        del config["video_processor"]
        (folder / "processor_config.json").write_text(json.dumps(config))
    processor = load_processor(folder)
    assert isinstance(processor, Qwen2_5_VLProcessor)
    stock_possible = HAS_TORCHVISION and with_video_config
    assert isinstance(processor, Qwen2_5_VLImageOnlyProcessor) != stock_possible


def test_idefics3_processor_is_the_stock_one(tmp_path):
    folder = build_tiny_model("tiny-idefics3-s", SPEC, tmp_path / "idefics3")
    assert type(load_processor(folder)) is Idefics3Processor
