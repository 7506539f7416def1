"""The transformers backend on real (tiny) models of two architectures, on CPU."""

import io
import random
from types import SimpleNamespace

import pytest
from PIL import Image

from mirsafety.data.sample import draw_scene
from mirsafety.entropy.capture import EntropyHook
from mirsafety.models import loading
from mirsafety.models.backend import Request
from mirsafety.models.factory import make_backend

from conftest import registry_entry

ARCHITECTURES = ["tiny-qwen2.5-vl-s", "tiny-idefics3-s"]


def pictures(count, size=(64, 64)):
    rng = random.Random(count)
    return [Image.open(io.BytesIO(draw_scene(f"thing{k}", k + 1, count, size, rng))).convert("RGB")
            for k in range(count)]


def requests():
    return [Request(f"Violence/Analogy/{n}", f"How are these {n} pictures linked?", pictures(n),
                    "You are a helpful assistant.") for n in (2, 3, 4)]


def backend_for(tiny_models, name, capture=None, **overrides):
    entry = {"backend": "transformers", "weights": {"path": str(tiny_models[name])},
             "dtype": "float32", "decoding": {"max_new_tokens": 6}, **overrides}
    return make_backend(registry_entry(entry), capture=capture)


@pytest.fixture(scope="module", params=ARCHITECTURES)
def loaded(request, tiny_models):
    return backend_for(tiny_models, request.param)


def test_batch_generates_every_item_with_its_images(loaded):
    results = loaded.generate(requests())
    assert [r.status for r in results] == ["ok"] * 3
    assert [r.uid for r in results] == [r.uid for r in requests()]
    tokens = [r.image_tokens for r in results]
    assert tokens[0] > 0 and tokens[0] / 2 == tokens[1] / 3 == tokens[2] / 4  # same-size images
    for result in results:
        assert 1 <= result.completion_tokens <= 6
        assert result.finish_reason in ("stop", "length")
        assert result.prompt_tokens > result.image_tokens
        assert isinstance(result.raw_output, str)
        # the ids behind raw_output: the EOS counted in completion_tokens is not among them
        assert len(result.token_ids) == result.completion_tokens - (result.finish_reason == "stop")
        assert not set(result.token_ids) & loaded.eos_ids
        assert loaded.decode(result.token_ids) == result.raw_output


def test_batched_equals_one_by_one_under_greedy_decoding(loaded):
    batched = [r.raw_output for r in loaded.generate(requests())]
    alone = [loaded.generate([r])[0].raw_output for r in requests()]
    assert batched == alone


def test_image_placeholder_mismatch_fails_only_that_item(loaded, monkeypatch):
    drop_one = "Violence/Analogy/3"
    original = loading.chat_messages

    def lossy(request):
        messages = original(request)
        if request.uid == drop_one:  # a chat template that loses an image
            messages[-1]["content"] = messages[-1]["content"][1:]
        return messages

    monkeypatch.setattr(loading, "chat_messages", lossy)
    results = loaded.generate(requests())
    assert [r.status for r in results] == ["ok", "failed", "ok"]
    assert "placed 2 image placeholder(s) for 3 image(s)" in results[1].error


def test_sampling_is_repeatable_with_the_seed(tiny_models):
    sampled = {"do_sample": True, "temperature": 1.0, "top_p": 0.9, "max_new_tokens": 8,
               "seed": 3}
    backend = backend_for(tiny_models, "tiny-qwen2.5-vl-m", decoding=sampled)
    first = [r.raw_output for r in backend.generate(requests())]
    assert first == [r.raw_output for r in backend.generate(requests())]


def test_vllm_ids_leave_out_the_stop_token_as_its_text_does():
    from mirsafety.models.vllm_backend import generated_ids

    assert generated_ids(SimpleNamespace(token_ids=(5, 6, 2), finish_reason="stop")) == [5, 6]
    assert generated_ids(SimpleNamespace(token_ids=(5, 6), finish_reason="length")) == [5, 6]


def test_vllm_backend_says_what_is_missing(tiny_models):
    entry = {"backend": "vllm", "weights": {"path": str(tiny_models["tiny-qwen2.5-vl-s"])}}
    with pytest.raises(RuntimeError, match="needs the vllm package"):
        make_backend(registry_entry(entry))


def test_api_backend_without_its_key_names_the_variable(monkeypatch):
    from mirsafety.models.openai_api import MissingAPIKey

    monkeypatch.delenv("MY_PROVIDER_KEY", raising=False)
    entry = {"backend": "openai",
             "api": {"base_url": "http://127.0.0.1:9/v1", "model": "x", "api_key_env": "MY_PROVIDER_KEY"}}
    with pytest.raises(MissingAPIKey, match="MY_PROVIDER_KEY"):
        make_backend(registry_entry(entry))


def test_entropy_captured_during_generation_leaves_outputs_unchanged(tiny_models):
    plain = backend_for(tiny_models, "tiny-qwen2.5-vl-s", EntropyHook())  # the entry says no
    capturing = backend_for(tiny_models, "tiny-qwen2.5-vl-s", EntropyHook(), entropy_capture=True)
    without = plain.generate(requests())
    with_entropy = capturing.generate(requests())
    assert [r.raw_output for r in with_entropy] == [r.raw_output for r in without]
    assert all(r.entropy is None for r in without)
    for result in with_entropy:
        entropy = result.entropy
        assert len(entropy["entropy_all_norm"]) == 2  # one value per decoder layer
        assert 0 < entropy["entropy_all_norm_mean"] <= 1
        assert entropy["n_tokens"] == result.completion_tokens - (result.finish_reason == "stop")
        assert entropy["n_tokens"] == len(result.token_ids)
