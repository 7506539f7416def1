"""Attention entropy (stage 5): the on-the-spot reduction against eager attention, on both tiny
architectures, plus the attention kernel alone (GQA, every mask form) and the generation capture.

The tiny models have random weights and so attend almost uniformly, which would hide a wrong mask
or head grouping; the comparisons therefore sharpen the language model's attention (q and k
projections scaled up), the same way in every copy of a model.
"""

import math
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForImageTextToText
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

from mirsafety.entropy import kernel
from mirsafety.entropy.attention import NAME, enable_entropy_attention, entropy_attention_forward
from mirsafety.entropy.capture import (
    EntropyHook,
    _collect_rows,
    capture_rows,
    entropy_forward,
    generate_with_entropy,
)
from mirsafety.entropy.extractor import EntropyExtractor
from mirsafety.entropy.kernel import QUANTITIES
from mirsafety.entropy.selection import prefix_spans, select_tokens, token_offsets
from mirsafety.models.backend import Request, Result
from mirsafety.models.hf import TransformersBackend
from mirsafety.models.loading import chat_messages
from mirsafety.models.record import make_record

from conftest import registry_entry
from entropy_reference import (
    TOL,
    assert_rows_match,
    pictures,
    reference_row,
    sharpen,
)

ARCHITECTURES = ["tiny-qwen2.5-vl-s", "tiny-idefics3-s"]
SYSTEM = "You are a helpful assistant."


def entry_for(path, **overrides):
    return registry_entry({"backend": "transformers", "weights": {"path": str(path)},
                           "dtype": "float32", **overrides})


# ----------------------------------------------------------------------------------------------
# Reference: the same quantities from full probability rows
# ----------------------------------------------------------------------------------------------

# ----------------------------------------------------------------------------------------------
# The attention function alone
# ----------------------------------------------------------------------------------------------

def kernel_case(seed=0, batch=2, heads=4, kv_heads=2, q_len=9, dim=8):
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, heads, q_len, dim, generator=g) * 3
    key = torch.randn(batch, kv_heads, q_len, dim, generator=g) * 3
    value = torch.randn(batch, kv_heads, q_len, dim, generator=g)
    module = SimpleNamespace(layer_idx=0, num_key_value_groups=heads // kv_heads, is_causal=True)
    image = torch.zeros(batch, q_len, dtype=torch.bool)
    image[:, 2:5] = True
    return module, query, key, value, image


def reference_kernel(query, key, allowed, image, rows, group):
    """Full probabilities in float64 (repeat_kv, softmax over allowed keys)."""
    scores = query.double() @ repeat_kv(key.double(), group).transpose(-1, -2)
    scores = scores / math.sqrt(query.shape[-1])
    scores = scores.masked_fill(~allowed, -math.inf)
    probs = scores.softmax(-1)
    out = []
    for b in range(query.shape[0]):
        out.append([reference_row(probs[b, :, i], allowed[b, 0, i], image[b]) for i in rows])
    return probs, out


@pytest.fixture(params=["fused", "explicit"])
def reduction(request, monkeypatch):
    """Run a test with the fused CPU kernel (asserting it never falls back) or the explicit
    materialised-probability path."""
    if request.param == "fused":
        assert kernel.USE_FUSED, "the fused CPU kernel is missing from this torch"

        def no_fallback(*args, **kwargs):
            raise AssertionError("fell back to the explicit path")

        monkeypatch.setattr(kernel, "_explicit_chunk", no_fallback)
    else:
        monkeypatch.setattr(kernel, "USE_FUSED", False)
    return request.param


@pytest.mark.parametrize("row_set", ["contiguous", "gaps"])
@pytest.mark.parametrize("keep_probs", [False, True], ids=["reduced", "with-probs"])
@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
def test_kernel_matches_full_softmax_with_gqa_and_every_mask_form(mask_kind, keep_probs, row_set):
    module, query, key, value, image = kernel_case()
    batch, _, q_len, _ = query.shape
    causal = torch.tril(torch.ones(q_len, q_len, dtype=torch.bool))
    padding = torch.ones(batch, q_len, dtype=torch.bool)
    if mask_kind != "none":
        padding[1, :3] = False  # left padding of the second sequence
    allowed = (causal[None] & padding[:, None, :])[:, None]  # (B, 1, Q, K)
    lowest = torch.finfo(torch.float32).min
    mask = {"none": None, "bool": allowed,
            "float": torch.zeros(allowed.shape).masked_fill(~allowed, lowest)}[mask_kind]
    rows = torch.zeros(batch, q_len, dtype=torch.bool)
    if row_set == "contiguous":
        rows[:, 3:] = True  # valid rows of both sequences; rows 3 and 4 see part of the image
    else:
        rows[:, [3, 5, 8]] = True
    with capture_rows(rows, image, keep_probs=keep_probs, chunk_elements=16) as capture:
        output, _ = entropy_attention_forward(module, query, key, value, mask, scaling=None)
    plain, _ = sdpa_attention_forward(module, query, key, value, mask)
    assert torch.equal(output, plain)  # the pass is not perturbed
    found = _collect_rows(capture)
    probs, want = reference_kernel(query, key, allowed, image, found.positions.tolist(),
                                   module.num_key_value_groups)
    if keep_probs:
        kept = found.probs[0]
        assert torch.allclose(kept.double(), probs[:, :, found.positions], atol=1e-6)
        assert torch.allclose(kept.sum(-1), torch.ones(()), atol=1e-6)  # rows sum to one
        row_allowed = allowed[:, :, found.positions].expand_as(kept)
        assert float(kept[~row_allowed].abs().max()) == 0.0  # future and padding keys: no mass
    for b in range(batch):
        for r, (values, n, n_img) in enumerate(want[b]):
            assert int(found.n_keys[b, r]) == n and int(found.n_image_keys[b, r]) == n_img
            for name, value in values.items():
                assert abs(float(found.values[name][b, r, 0]) - float(value)) < 1e-5, name


def test_kernel_groups_query_heads_over_the_right_kv_head():
    """A wrong GQA pairing (e.g. head h with kv head h % n_kv) is caught."""
    module, query, key, value, image = kernel_case(seed=1, heads=4, kv_heads=2)
    rows = torch.ones(2, query.shape[2], dtype=torch.bool)
    with capture_rows(rows, image, keep_probs=True) as capture:
        entropy_attention_forward(module, query, key, value, None)
    kept = _collect_rows(capture).probs[0]
    causal = torch.tril(torch.ones(9, 9, dtype=torch.bool))
    right, _ = reference_kernel(query, key, causal[None, None].expand(2, 1, 9, 9), image,
                                [], module.num_key_value_groups)
    wrong_key = key[:, [0, 1, 0, 1]]  # interleaved instead of repeated
    wrong, _ = reference_kernel(query, wrong_key, causal[None, None].expand(2, 1, 9, 9), image,
                                [], 1)
    assert torch.allclose(kept.double(), right, atol=1e-6)
    assert not torch.allclose(kept.double(), wrong, atol=1e-3)


def test_without_capture_or_layer_index_it_is_plain_sdpa():
    module, query, key, value, image = kernel_case()
    plain, _ = sdpa_attention_forward(module, query, key, value, None)
    assert torch.equal(entropy_attention_forward(module, query, key, value, None)[0], plain)
    vision = SimpleNamespace(num_key_value_groups=2, is_causal=False)  # no layer_idx: left alone
    with capture_rows(torch.ones(2, 9, dtype=torch.bool), image) as capture:
        entropy_attention_forward(vision, query, key, value, None)
    assert capture.records == {}


def test_select_tokens():
    assert select_tokens(5) == ([0, 1, 2, 3, 4], False)
    assert select_tokens(5, "first_n", 2) == ([0, 1], False)
    assert select_tokens(2, "first_n", 9) == ([0, 1], False)
    text = "<think>a b</think> c d"
    offsets = [(0, 7), (7, 8), (8, 10), (10, 18), (18, 20), (20, 22)]
    assert select_tokens(6, "answer", response_text=text, offsets=offsets) == ([4, 5], False)
    assert select_tokens(6, "answer", response_text=text, offsets=offsets,
                         answer="not there") == (list(range(6)), True)
    with pytest.raises(ValueError):
        select_tokens(3, "first_n")
    with pytest.raises(ValueError):
        select_tokens(3, "middle")


# ----------------------------------------------------------------------------------------------
# Whole models: ours against eager output_attentions, on both architectures
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=ARCHITECTURES)
def arch(request, tiny_models):
    """(name, extractor with sharpened attention, eager copy, plain SDPA copy)."""
    path = tiny_models[request.param]
    extractor = EntropyExtractor(str(path), entry_for(path))
    sharpen(extractor.model)
    eager = sharpen(AutoModelForImageTextToText.from_pretrained(
        path, dtype=torch.float32,
        attn_implementation={"text_config": "eager", "vision_config": "sdpa"}).eval())
    plain = sharpen(AutoModelForImageTextToText.from_pretrained(
        path, dtype=torch.float32, attn_implementation="sdpa").eval())
    return request.param, extractor, eager, plain


def batch_inputs(extractor, prompts, image_counts):
    """A left-padded batch through the extractor's processor, as the generation backend does."""
    processor = extractor.processor
    processor.tokenizer.padding_side = "left"
    texts, images = [], []
    for k, (prompt, count) in enumerate(zip(prompts, image_counts)):
        request = Request(f"x/{k}", prompt, pictures(count, seed=k), SYSTEM)
        texts.append(processor.apply_chat_template(chat_messages(request),
                                                   add_generation_prompt=True, tokenize=False))
        images.append(request.images)
    return processor(text=texts, images=images, padding=True, return_tensors="pt")


def test_loaded_for_text_only_and_vision_left_on_sdpa(arch):
    _, extractor, _, _ = arch
    config = extractor.model.config
    assert config.get_text_config()._attn_implementation == NAME
    assert config.vision_config._attn_implementation == "sdpa"


@pytest.mark.parametrize("padded", [False, True], ids=["single", "left-padded-batch"])
def test_entropies_equal_eager_output_attentions(arch, reduction, padded):
    _, extractor, eager, _ = arch
    if padded:
        inputs = batch_inputs(extractor, ["How are these pictures linked, step by step?",
                                          "Why?"], [3, 2])
        assert (inputs["attention_mask"] == 0).any()
    else:
        inputs = batch_inputs(extractor, ["How are these pictures linked?"], [3])
    rows = inputs["attention_mask"].bool()  # every valid position
    found, _ = entropy_forward(extractor.model, inputs, rows, extractor.image_token_id,
                               chunk_elements=256)  # many chunks
    with torch.inference_mode():
        reference = eager(**inputs, output_attentions=True)
    text_layers = extractor.model.config.get_text_config().num_hidden_layers
    assert found.layers == list(range(text_layers)) and len(reference.attentions) == text_layers
    image = inputs["input_ids"] == extractor.image_token_id
    assert image.sum() > 0
    checked = assert_rows_match(found, reference.attentions, inputs["attention_mask"], image,
                                found.layers)
    assert checked == int(inputs["attention_mask"].sum())
    # sharpened attention is far from uniform: the comparison can tell masks and heads apart
    norms = found.values["entropy_all_norm"][found.selected]
    assert float(norms.min()) < 0.9


def test_probability_rows_sum_to_one_and_masked_keys_get_nothing(arch):
    _, extractor, _, _ = arch
    inputs = batch_inputs(extractor, ["How are these pictures linked, step by step?", "Why?"],
                          [2, 2])
    mask = inputs["attention_mask"].bool()
    found, _ = entropy_forward(extractor.model, inputs, mask, extractor.image_token_id,
                               keep_probs=True)
    length = mask.shape[1]
    for layer, probs in found.probs.items():  # (B, H, r, K)
        for b in range(mask.shape[0]):
            for r, pos in enumerate(found.positions.tolist()):
                if not found.selected[b, r]:
                    continue
                row = probs[b, :, r]
                assert torch.allclose(row.sum(-1), torch.ones(()), atol=1e-5)
                allowed = (torch.arange(length) <= pos) & mask[b]
                assert float(row[:, ~allowed].abs().sum()) == 0.0


def test_logits_equal_plain_sdpa(arch):
    _, extractor, _, plain = arch
    inputs = batch_inputs(extractor, ["How are these pictures linked, step by step?", "Why?"],
                          [3, 2])
    found, ours = entropy_forward(extractor.model, inputs, inputs["attention_mask"].bool(),
                                  extractor.image_token_id, keep_logits=True)
    with torch.inference_mode():
        reference = plain(**inputs)
    valid = inputs["attention_mask"].bool()
    assert torch.equal(ours.logits[valid], reference.logits[valid])


def test_chunking_does_not_change_results(arch, reduction):
    _, extractor, _, _ = arch
    inputs = batch_inputs(extractor, ["How are these pictures linked?"], [2])
    rows = inputs["attention_mask"].bool()
    big, _ = entropy_forward(extractor.model, inputs, rows, extractor.image_token_id)
    small, _ = entropy_forward(extractor.model, inputs, rows, extractor.image_token_id,
                               chunk_elements=1)
    for name in QUANTITIES:
        assert torch.allclose(big.values[name], small.values[name], atol=1e-6, equal_nan=True)


def test_layer_subset(arch):
    _, extractor, _, _ = arch
    inputs = batch_inputs(extractor, ["How are these pictures linked?"], [2])
    rows = inputs["attention_mask"].bool()
    full, _ = entropy_forward(extractor.model, inputs, rows, extractor.image_token_id)
    only, _ = entropy_forward(extractor.model, inputs, rows, extractor.image_token_id,
                              layers=[1])
    assert only.layers == [1]
    assert torch.allclose(only.values["entropy_all"][..., 0], full.values["entropy_all"][..., 1])


# ----------------------------------------------------------------------------------------------
# The extractor: the generation's input plus the response, and the token selections
# ----------------------------------------------------------------------------------------------

RESPONSE = "<think>The man holds the kite near the bridge.</think> The answer is a red kite."


def test_teacher_forced_input_is_the_generation_input_plus_the_response(arch, tiny_models):
    name, extractor, _, _ = arch
    images = pictures(3)
    prompt = "How are these pictures linked?"
    backend = TransformersBackend(str(tiny_models[name]), revision=None,
                                  model=entry_for(tiny_models[name]))
    request = Request("x/1", prompt, images, SYSTEM)
    generation = backend._inputs([request])
    ours = extractor.prompt_inputs(images, prompt, SYSTEM)
    assert set(ours) == set(generation)
    for key in generation:
        assert torch.equal(ours[key], generation[key]), key
    response = extractor.tokenizer(RESPONSE, add_special_tokens=False)["input_ids"]
    forced = extractor.teacher_forced_inputs(ours, response)
    length = ours["input_ids"].shape[1]
    assert forced["input_ids"][0, length:].tolist() == response
    assert torch.equal(forced["input_ids"][:, :length], ours["input_ids"])
    assert forced["attention_mask"][0, length:].eq(1).all()
    if "mm_token_type_ids" in ours:  # Qwen2.5-VL: extended with zeros (text tokens)
        assert forced["mm_token_type_ids"].shape == forced["input_ids"].shape
        assert forced["mm_token_type_ids"][0, length:].eq(0).all()


def test_extract_rows_and_selections(arch, reduction):
    _, extractor, eager, _ = arch
    images, prompt = pictures(2), "How are these pictures linked?"
    everything = extractor.extract(images, prompt, SYSTEM, RESPONSE, "all", per_token=True)
    n = everything["n_response_tokens"]
    assert everything["n_tokens"] == n == len(everything["tokens"])
    assert everything["n_image_tokens"] > 0
    assert everything["n_image_keys"]["min"] == everything["n_image_tokens"]
    length = everything["n_prompt_tokens"]
    assert everything["n_keys"] == {"min": length, "max": length + n - 1,
                                    "mean": length + (n - 1) / 2}  # the generating rows
    for name in QUANTITIES:
        per_layer = everything[name]
        assert len(per_layer) == len(everything["layers"])
        assert abs(everything[f"{name}_mean"] - sum(per_layer) / len(per_layer)) < 1e-9
    assert all(0 <= v <= 1 for v in everything["entropy_all_norm"] + everything["entropy_img_norm"])

    # The same rows from eager attention over the same teacher-forced input.
    inputs = extractor.teacher_forced_inputs(extractor.prompt_inputs(images, prompt, SYSTEM),
                                             extractor.tokenizer(RESPONSE, add_special_tokens=False)
                                             ["input_ids"])
    with torch.inference_mode():
        attentions = eager(**inputs, output_attentions=True).attentions
    image = inputs["input_ids"] == extractor.image_token_id
    for k in range(n):
        pos = length - 1 + k
        allowed = torch.arange(inputs["input_ids"].shape[1]) <= pos
        for li, layer in enumerate(everything["layers"]):
            want, _, _ = reference_row(attentions[layer][0, :, pos], allowed, image[0])
            for name in QUANTITIES:
                assert abs(everything["per_token"][name][k][li] - float(want[name])) < TOL

    first = extractor.extract(images, prompt, SYSTEM, RESPONSE, "first_n", 3, per_token=True)
    assert first["tokens"] == [0, 1, 2] and first["n_tokens"] == 3
    assert torch.allclose(torch.tensor(first["per_token"]["entropy_all"]),
                          torch.tensor(everything["per_token"]["entropy_all"][:3]), atol=1e-6)

    answer = extractor.extract(images, prompt, SYSTEM, RESPONSE, "answer", per_token=True)
    assert answer["selection_used"] == "answer" and not answer["answer_fallback"]
    decoded = extractor.tokenizer.decode(
        extractor.tokenizer(RESPONSE, add_special_tokens=False)["input_ids"][answer["tokens"][0]:])
    assert decoded.strip() == "The answer is a red kite."
    assert answer["tokens"] == list(range(answer["tokens"][0], n))
    assert torch.allclose(torch.tensor(answer["per_token"]["entropy_all"]),
                          torch.tensor(everything["per_token"]["entropy_all"])[answer["tokens"]],
                          atol=1e-6)

    lost = extractor.extract(images, prompt, SYSTEM, RESPONSE, "answer", answer="elsewhere")
    assert lost["answer_fallback"] and lost["selection_used"] == "all"
    assert lost["entropy_all"] == pytest.approx(everything["entropy_all"], abs=1e-6)

    own = extractor.extract(images, prompt, SYSTEM, RESPONSE, "all", align="response")
    assert own["n_keys"]["min"] == length + 1


def test_extract_record_skips_failed_generations(arch):
    _, extractor, _, _ = arch
    request = Request("Violence/Analogy/1", "How are these linked?", pictures(2), None)
    failed = extractor.extract_record(request, {"uid": request.uid, "status": "failed",
                                                "raw_output": None})
    assert failed["status"] == "skipped"
    ok = extractor.extract_record(request, {"uid": request.uid, "status": "ok",
                                            "raw_output": RESPONSE, "answer": "a red kite."},
                                  selection="answer")
    assert ok["status"] == "ok" and ok["uid"] == request.uid and ok["n_tokens"] > 0
    empty = extractor.extract(request.images, request.prompt, None, "")
    assert empty["n_tokens"] == 0 and empty["entropy_all"] == [None] * len(empty["layers"])


def partial_byte_generation(tokenizer):
    """(thinking ids, answer ids) of a generation whose text re-encodes to other tokens: the
    answer holds a lone first byte of a three-byte character (decoded as U+FFFD, which encodes
    as three tokens of its own) and a whole three-byte character (three one-byte tokens)."""
    def encode(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    lone = encode("中")[:1]
    assert len(encode("中")) == 3 and tokenizer.decode(lone) == "\ufffd"
    return (encode("<think>The man holds the kite.</think>"),
            encode("The answer is") + lone + encode(" a red") + encode("中") + encode(" kite."))


def test_a_generation_is_scored_on_its_ids_not_on_its_text_encoded_again(arch):
    _, extractor, _, _ = arch
    thinking, answer = partial_byte_generation(extractor.tokenizer)
    ids = thinking + answer
    raw = extractor.decode(ids)
    retokenised = extractor.tokenizer(raw, add_special_tokens=False)["input_ids"]
    assert len(retokenised) == len(ids) + 2  # U+FFFD came back as three tokens, not one
    request = Request("Violence/Analogy/1", "How are these linked?", pictures(2), SYSTEM)
    record = make_record({"uid": request.uid}, Result(request.uid, "ok", raw_output=raw,
                                                      token_ids=ids), "m", "auto", 2)
    scored = extractor.extract_record(request, record)
    assert scored["tokens_from"] == "generation"
    assert scored["n_response_tokens"] == scored["n_tokens"] == len(ids)
    forced = extractor.extract(request.images, request.prompt, SYSTEM, response_ids=ids)
    assert scored["entropy_all"] == forced["entropy_all"]

    # the answer selection locates the answer through the ids' own decoding
    assert record["answer"] == "The answer is\ufffd a red中 kite."
    picked = extractor.extract(request.images, request.prompt, SYSTEM, response_ids=ids,
                               selection="answer", answer=record["answer"], per_token=True)
    assert not picked["answer_fallback"]
    assert picked["tokens"] == list(range(len(thinking), len(ids)))
    assert extractor.extract_record(request, record, "answer")["n_tokens"] == len(answer)

    # without stored ids (API answers, imports) the text is tokenised again, and it says so
    unknown = extractor.extract_record(request, {**record, "token_ids": None})
    assert unknown["tokens_from"] == "retokenised"
    assert unknown["n_response_tokens"] == len(retokenised)


def test_spans_of_generated_ids_follow_their_decoding_through_partial_characters():
    def decode(ids):  # a byte-level vocabulary: token k is byte k; 0 is a dropped special token
        return bytes(t for t in ids if t).decode("utf-8", errors="replace")

    ids = [ord("a"), 0xE4, 0, 0xB8, 0xAD, ord("b"), 0xE4, ord("c")]  # a 中 b <lone byte> c
    text = decode(ids)
    assert text == "a中b\ufffdc"
    assert prefix_spans(decode, ids, text) == [(0, 1), (1, 2), (1, 2), (1, 2), (1, 2), (2, 3),
                                               (3, 4), (4, 5)]


# ----------------------------------------------------------------------------------------------
# In-generation capture
# ----------------------------------------------------------------------------------------------

GREEDY = {"do_sample": False, "max_new_tokens": 8, "temperature": None, "top_p": None,
          "top_k": None}


@pytest.mark.parametrize("block", [1, 3, 32])
def test_generation_capture_matches_the_teacher_forced_pass(arch, reduction, block):
    _, extractor, _, _ = arch
    images, prompt = pictures(3), "How are these pictures linked?"
    inputs = extractor.prompt_inputs(images, prompt, SYSTEM)
    with torch.inference_mode():
        plain = extractor.model.generate(**inputs, **GREEDY)
        output, captured = generate_with_entropy(extractor.model, inputs, block=block,
                                                 **GREEDY)
    assert torch.equal(output, plain)  # capturing does not change the generation
    new = output[0, inputs["input_ids"].shape[1]:].tolist()
    steps = captured.values["entropy_all"].shape[1]
    assert steps == len(new)
    forced = extractor.extract(images, prompt, SYSTEM, response_ids=new, per_token=True)
    for name in QUANTITIES:
        got = captured.values[name][0]
        want = torch.tensor(forced["per_token"][name])
        assert torch.allclose(got, want, atol=TOL), name
    summary = captured.summary(0, len(new))
    for name in QUANTITIES:
        assert summary[name] == pytest.approx(forced[name], abs=TOL)
    assert summary["n_keys"] == forced["n_keys"]
    assert summary["n_image_keys"] == forced["n_image_keys"]


def test_the_stage_scores_the_generated_ids_as_the_generation_captured_them(arch, tiny_models):
    """Backend to record to teacher-forced pass: the stored ids give the capture's numbers."""
    name, extractor, _, _ = arch
    entry = entry_for(tiny_models[name], entropy_capture=True, decoding={"max_new_tokens": 24})
    backend = TransformersBackend(str(tiny_models[name]), revision=None, model=entry,
                                  capture=EntropyHook())
    sharpen(backend.model)  # the same weights as the extractor's
    request = Request("Violence/Analogy/1", "How are these pictures linked?", pictures(3),
                      SYSTEM)
    result = backend.generate([request])[0]
    record = make_record({"uid": request.uid}, result, name, "auto", 3)
    assert record["token_ids"] == result.token_ids
    scored = extractor.extract_record(request, record)
    captured = record["entropy"]
    assert scored["tokens_from"] == "generation"
    assert scored["n_tokens"] == captured["n_tokens"] == len(result.token_ids) > 0
    for quantity in QUANTITIES:
        assert scored[quantity] == pytest.approx(captured[quantity], abs=TOL), quantity
    assert scored["n_keys"] == captured["n_keys"]
    assert scored["n_image_keys"] == captured["n_image_keys"]


@pytest.mark.parametrize("block", [1, 3])
def test_generation_capture_in_a_left_padded_batch(arch, reduction, block):
    _, extractor, _, _ = arch
    prompts = ["How are these pictures linked, step by step, in detail?", "Why?"]
    inputs = batch_inputs(extractor, prompts, [3, 2])
    with torch.inference_mode():
        output, captured = generate_with_entropy(extractor.model, inputs, block=block,
                                                 **GREEDY)
    eos = extractor.model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    for b, (prompt, count) in enumerate(zip(prompts, [3, 2])):
        new = output[b, inputs["input_ids"].shape[1]:].tolist()
        ends = [i for i, t in enumerate(new) if t in eos]
        new = new[: ends[0] + 1] if ends else new
        forced = extractor.extract(pictures(count, seed=b), prompt, SYSTEM, response_ids=new,
                                   per_token=True)
        for name in QUANTITIES:
            got = captured.values[name][b, : len(new)]
            assert torch.allclose(got, torch.tensor(forced["per_token"][name]), atol=TOL), name
        assert captured.n_keys[b, : len(new)].tolist()[0] == forced["n_prompt_tokens"]


def test_capture_refuses_a_model_without_the_entropy_attention(arch):
    _, extractor, _, plain = arch
    inputs = extractor.prompt_inputs(pictures(2), "Why?", None)
    with pytest.raises(RuntimeError, match="enable_entropy_attention"):
        generate_with_entropy(plain, inputs, max_new_tokens=2)


def test_enable_on_a_loaded_model_gives_the_same_entropies(arch, tiny_models):
    name, extractor, _, _ = arch
    model = sharpen(AutoModelForImageTextToText.from_pretrained(
        tiny_models[name], dtype=torch.float32).eval())  # the library's default attention
    enable_entropy_attention(model)
    assert model.config.get_text_config()._attn_implementation == NAME
    assert model.config.vision_config._attn_implementation == "sdpa"
    inputs = extractor.prompt_inputs(pictures(2), "How are these pictures linked?", SYSTEM)
    with torch.inference_mode():
        output, captured = generate_with_entropy(model, inputs, **GREEDY)
        again, reference = generate_with_entropy(extractor.model, inputs, **GREEDY)
    assert torch.equal(output, again)
    for quantity in QUANTITIES:
        assert torch.allclose(captured.values[quantity], reference.values[quantity], atol=1e-6)


def test_token_offsets_with_and_without_the_tokenizers_offsets(arch):
    _, extractor, _, _ = arch
    tokenizer = extractor.tokenizer
    ids = tokenizer(RESPONSE, add_special_tokens=False)["input_ids"]
    native = token_offsets(tokenizer, RESPONSE, ids)

    class Slow:  # a tokenizer without offsets: spans come from decoding prefixes
        def __call__(self, text, **kwargs):
            if kwargs.get("return_offsets_mapping"):
                raise NotImplementedError
            return tokenizer(text, **kwargs)

        def decode(self, ids, **kwargs):
            return tokenizer.decode(ids, **kwargs)

    decoded = token_offsets(Slow(), RESPONSE, ids)
    assert len(native) == len(decoded) == len(ids)
    assert "".join(RESPONSE[a:b] for a, b in decoded) == RESPONSE
    picked = select_tokens(len(ids), "answer", response_text=RESPONSE, offsets=decoded)
    assert picked == select_tokens(len(ids), "answer", response_text=RESPONSE, offsets=native)
