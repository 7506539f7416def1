"""Tiny multimodal models built offline, for the default run and the tests.

No hub, no weights in git: a model is a pure function of its entry in ``resources/tiny_models.yaml``
(and the library versions). ``build_tiny_model`` trains a small byte-level BPE tokenizer on a
generated corpus, builds the config, initialises random weights under the spec's seed, assembles
the processor with the architecture's chat template and saves everything in the hub's own layout,
so the generation code loads a tiny model exactly like a real one.
"""

import json
import logging
import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, pre_tokenizers
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer
from transformers import (
    AutoModelForImageTextToText,
    GenerationConfig,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3Processor,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
)
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from mirsafety.models.processors import Qwen2_5_VLImageOnlyProcessor, load_processor

__all__ = ["ARCHITECTURES", "build_tiny_model", "load_model", "load_processor", "make_corpus"]

log = logging.getLogger(__name__)

# The chat template of Qwen2-VL / Qwen2.5-VL Instruct (ChatML; a default system prompt is added
# when the conversation has none). Content renders in the order given.
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The chat template of Idefics3-8B-Llama3 ("User:<image>text<end_of_utterance>\nAssistant:"),
# content in the order given (the study sends images first, then the text), plus plain-string
# content (the stock template silently drops it, e.g. a system prompt given as a string).
IDEFICS3_CHAT_TEMPLATE = (
    "<|begin_of_text|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}{{ ': ' + message['content'] }}"
    "{% else %}{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}"
    "{% endif %}{% for line in message['content'] %}"
    "{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

# Words of the generated tokenizer corpus: common English, the chat roles, words of prompts about
# images, and the sample dataset's keywords (resources/sample_spec.yaml), so they get merges.
_WORDS = {
    "article": "the a an this that each every some no".split(),
    "noun": (
        "man woman child person people friend group city house road street room door window "
        "table chair picture image photo scene object thing place time day night year way "
        "hand head water fire light book letter message answer question step plan story "
        "teapot bicycle lantern umbrella violin cactus kite compass teacup ladder pineapple "
        "telescope sailboat snowman guitar backpack clock balloon feather mushroom bridge "
        "windmill lighthouse carrot relation sequence detail part whole order reason result"
    ).split(),
    "adjective": (
        "first second third fourth last next other same small large old new red blue green "
        "white black bright dark simple careful safe harmful quiet busy open closed"
    ).split(),
    "verb": (
        "shows holds takes makes gives finds sees explains describes follows connects leads "
        "causes changes moves opens closes helps asks answers writes reads builds breaks"
    ).split(),
    "preposition": "in on at near under over behind beside between after before with".split(),
}
_TEMPLATES = (
    "{article} {adjective} {noun} {verb} {article} {noun} {preposition} {article} {noun}.",
    "What does the {adjective} {noun} in the {adjective} image show?",
    "Describe how the {noun} {verb} the {noun}, step by step.",
    "The user asks about the {noun} and the assistant answers.",
    "Look at the {adjective} picture: {article} {noun} {verb} {article} {adjective} {noun}.",
    "I am sorry, but I cannot help with the {noun}; it is not safe.",
)


def make_corpus(sentences: int, seed: int) -> list[str]:
    """Deterministic English-like sentences (no download), the tokenizer's training text."""
    rng = random.Random(seed)
    lines = []
    for _ in range(sentences):
        template = rng.choice(_TEMPLATES)
        words = {kind: rng.choice(options) for kind, options in _WORDS.items()}
        line = template.format(**words)
        lines.append(line[0].upper() + line[1:])
    return lines


def special_tokens(tokenizer_spec: dict, architecture: str) -> list[str]:
    """The architecture's special tokens, incl. Idefics3's ``<row_i_col_j>`` tile tags."""
    section = tokenizer_spec["special_tokens"][architecture]
    tokens = list(section["tokens"])
    grid = section.get("row_col_grid", 0)
    tokens += [f"<row_{i + 1}_col_{j + 1}>" for i in range(grid) for j in range(grid)]
    return tokens


def train_bpe(backend: Tokenizer, trainer: BpeTrainer, corpus) -> tuple[dict, list[tuple]]:
    """Train ``backend`` on ``corpus``; its vocabulary and merges, for a transformers tokenizer."""
    backend.train_from_iterator(corpus, trainer)
    merges = [tuple(pair) for pair in json.loads(backend.to_str())["model"]["merges"]]
    return backend.get_vocab(), merges


def train_tokenizer(tokenizer_spec: dict, architecture: str) -> Qwen2Tokenizer:
    """A byte-level BPE of ``vocab_size`` tokens (special tokens included), trained offline.

    It trains with the normaliser, pre-tokeniser and decoder that ``Qwen2Tokenizer`` rebuilds on
    reload, so the saved tokenizer.json and the reloaded tokenizer agree. Both architectures use
    this class (a byte-level BPE like Qwen2's and SmolVLM's); the processors only need the tokens.
    """
    section = tokenizer_spec["special_tokens"][architecture]
    specials = special_tokens(tokenizer_spec, architecture)
    pipeline = Qwen2Tokenizer().backend_tokenizer
    backend = Tokenizer(BPE())
    backend.normalizer, backend.pre_tokenizer = pipeline.normalizer, pipeline.pre_tokenizer
    trainer = BpeTrainer(
        vocab_size=tokenizer_spec["vocab_size"],
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = make_corpus(tokenizer_spec["corpus_sentences"], tokenizer_spec["corpus_seed"])
    vocab, merges = train_bpe(backend, trainer, corpus)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=section.get("bos_token"),
        eos_token=section["eos_token"],
        pad_token=section["pad_token"],
        extra_special_tokens=specials,
        model_max_length=tokenizer_spec["model_max_length"],
        padding_side="left",  # decoder-only generation pads on the left
    )
    if len(tokenizer) != tokenizer_spec["vocab_size"]:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens, spec says {tokenizer_spec['vocab_size']}")
    return tokenizer


def _head_dim(text: dict) -> int:
    return text["hidden_size"] // text["num_attention_heads"]


def _token_ids(tokenizer, section: dict) -> dict:
    """bos/eos/pad ids for a text config (None where the architecture has no such token)."""
    ids = {}
    for role in ("bos", "eos", "pad"):
        token = section.get(f"{role}_token")
        ids[f"{role}_token_id"] = None if token is None else tokenizer.convert_tokens_to_ids(token)
    return ids


def qwen2_5_vl_config(model: dict, tokenizer, section: dict) -> Qwen2_5_VLConfig:
    """Qwen2.5-VL config; ``mrope_section`` must sum to half the text head dim."""
    text, vision = dict(model["text"]), dict(model["vision"])
    mrope = text.pop("mrope_section")
    if sum(mrope) != _head_dim(text) // 2:
        raise ValueError(f"mrope_section {mrope} must sum to head_dim/2 = {_head_dim(text) // 2}")
    text_config = {
        **text,
        **_token_ids(tokenizer, section),
        "vocab_size": len(tokenizer),
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope},
    }
    token_id = tokenizer.convert_tokens_to_ids
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config={**vision, "out_hidden_size": text["hidden_size"]},
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        vision_end_token_id=token_id("<|vision_end|>"),
        tie_word_embeddings=False,
    )


def qwen2_5_vl_processor(model: dict, tokenizer) -> Qwen2_5_VLImageOnlyProcessor:
    """Image processor with the vision tower's patch sizes, wrapped with the ChatML template."""
    vision, images = model["vision"], model["images"]
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=vision["patch_size"],
        temporal_patch_size=vision["temporal_patch_size"],
        merge_size=vision["spatial_merge_size"],
        min_pixels=images["min_pixels"],
        max_pixels=images["max_pixels"],
    )
    return Qwen2_5_VLImageOnlyProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN_CHAT_TEMPLATE
    )


def idefics3_config(model: dict, tokenizer, section: dict) -> Idefics3Config:
    """Idefics3 config: a Llama text part and a SigLIP-style vision tower of one tile.

    The pixel shuffle needs the tile's patch grid side divisible by ``scale_factor``.
    """
    vision = model["vision"]
    side = vision["image_size"] // vision["patch_size"]
    if side % model["scale_factor"]:
        raise ValueError(f"patch grid side {side} is not divisible by scale_factor {model['scale_factor']}")
    ids = _token_ids(tokenizer, section)
    text = {**model["text"], **ids, "vocab_size": len(tokenizer)}
    return Idefics3Config(
        text_config={"model_type": "llama", **text},
        vision_config=dict(vision),
        scale_factor=model["scale_factor"],
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=ids["pad_token_id"],
        tie_word_embeddings=False,
    )


def idefics3_processor(model: dict, tokenizer) -> Idefics3Processor:
    """Tiles of the vision tower's ``image_size`` (the processor's max_image_size must match it)."""
    vision, images = model["vision"], model["images"]
    tile = vision["image_size"]
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": images["longest_edge"]},
        max_image_size={"longest_edge": tile},
        do_image_splitting=images["do_image_splitting"],
    )
    seq_len = (tile // vision["patch_size"]) ** 2 // model["scale_factor"] ** 2
    return Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=seq_len,
        chat_template=IDEFICS3_CHAT_TEMPLATE,
    )


# architecture -> (config builder, model class, processor builder)
ARCHITECTURES = {
    "qwen2_5_vl": (qwen2_5_vl_config, Qwen2_5_VLForConditionalGeneration, qwen2_5_vl_processor),
    "idefics3": (idefics3_config, Idefics3ForConditionalGeneration, idefics3_processor),
}


def generation_config(tokenizer, section: dict) -> GenerationConfig:
    """Greedy by default; stop at the end-of-turn token (and end-of-text where it differs)."""
    ids = _token_ids(tokenizer, section)
    eos = [ids["eos_token_id"]]
    if ids["pad_token_id"] != ids["eos_token_id"]:
        eos.append(ids["pad_token_id"])
    return GenerationConfig(
        bos_token_id=ids["bos_token_id"], eos_token_id=eos, pad_token_id=ids["pad_token_id"],
        do_sample=False
    )


def build_tiny_model(name: str, spec: dict, out_dir) -> Path:
    """Build model ``name`` of ``spec`` (the parsed tiny_models.yaml) into ``out_dir``.

    Deterministic: the same spec gives byte-identical files (weights are drawn under the model's
    seed on CPU in float32). Writes ``tiny_spec.json`` (what it was built from) last, so a folder
    holding it is complete.
    """
    if name not in spec["models"]:
        raise KeyError(f"tiny model {name!r} is not in the spec (it has {sorted(spec['models'])})")
    model_spec = spec["models"][name]
    architecture = model_spec["architecture"]
    make_config, model_class, make_processor = ARCHITECTURES[architecture]
    section = spec["tokenizer"]["special_tokens"][architecture]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = train_tokenizer(spec["tokenizer"], architecture)
    config = make_config(model_spec, tokenizer, section)
    torch.manual_seed(model_spec["seed"])
    model = model_class(config).to(torch.float32).eval()
    model.generation_config = generation_config(tokenizer, section)
    model.save_pretrained(out_dir, safe_serialization=True)
    make_processor(model_spec, tokenizer).save_pretrained(out_dir)

    built_from = {"name": name, "model": model_spec, "tokenizer": spec["tokenizer"]}
    (out_dir / "tiny_spec.json").write_text(json.dumps(built_from, indent=2, sort_keys=True) + "\n")
    log.info("built %s (%s, %d parameters) in %s", name, architecture, model.num_parameters(), out_dir)
    return out_dir


def load_model(path, dtype: str = "float32", attn_implementation=None):
    """A saved image-text-to-text model (tiny or real, any family the Auto class knows), in eval
    mode, on CPU. No subclass is needed here: only the Qwen2-VL *processor* needs torchvision.

    ``dtype`` is a torch dtype name or "auto"; ``attn_implementation`` a string or a
    per-sub-config dict, e.g. ``{"text_config": "<custom>", "vision_config": "sdpa"}`` (the
    entropy pass). None keeps the library's default (SDPA).
    """
    kwargs = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch_dtype, **kwargs)
    return model.eval()
