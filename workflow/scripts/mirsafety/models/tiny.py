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
from transformers import AutoModelForImageTextToText, GenerationConfig, Qwen2Tokenizer

from mirsafety.models.processors import load_processor
from mirsafety.models.twins import (
    gemma3,
    glm4v,
    idefics3,
    internvl,
    llava_onevision,
    mllama,
    qwen2_5_vl,
    smolvlm,
)

__all__ = ["FAMILIES", "build_tiny_model", "load_model", "load_processor", "make_corpus"]

log = logging.getLogger(__name__)

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


def train_bpe(backend: Tokenizer, trainer: BpeTrainer, corpus) -> tuple[dict, list[tuple]]:
    """Train ``backend`` on ``corpus``; its vocabulary and merges, for a transformers tokenizer."""
    backend.train_from_iterator(corpus, trainer)
    merges = [tuple(pair) for pair in json.loads(backend.to_str())["model"]["merges"]]
    return backend.get_vocab(), merges


def train_tokenizer(tokenizer_spec: dict, family) -> Qwen2Tokenizer:
    """A byte-level BPE of ``vocab_size`` tokens (special tokens included), trained offline.

    It trains with the normaliser, pre-tokeniser and decoder that ``Qwen2Tokenizer`` rebuilds on
    reload, so the saved tokenizer.json and the reloaded tokenizer agree. Both architectures use
    this class (a byte-level BPE like Qwen2's and SmolVLM's); the processors only need the tokens,
    which are the family's real special tokens (``family.SPECIAL_TOKENS``).
    """
    section = family.SPECIAL_TOKENS
    specials = list(section["tokens"])
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


def _token_ids(tokenizer, section: dict) -> dict:
    """bos/eos/pad ids for a text config (None where the architecture has no such token)."""
    ids = {}
    for role in ("bos", "eos", "pad"):
        token = section.get(f"{role}_token")
        ids[f"{role}_token_id"] = None if token is None else tokenizer.convert_tokens_to_ids(token)
    return ids


#: architecture (``architecture:`` of a spec entry) -> its family module
FAMILIES = {
    "gemma3": gemma3,
    "glm4v": glm4v,
    "idefics3": idefics3,
    "internvl": internvl,
    "llava_onevision": llava_onevision,
    "mllama": mllama,
    "qwen2_5_vl": qwen2_5_vl,
    "smolvlm": smolvlm,
}


def generation_config(ids: dict, stops: list[int]) -> GenerationConfig:
    """Greedy by default; stop at the end-of-turn token, end-of-text where it differs, and the
    family's other stop tokens (``STOP_TOKENS``), as the real checkpoint's generation config."""
    eos = [ids["eos_token_id"]]
    if ids["pad_token_id"] != ids["eos_token_id"]:
        eos.append(ids["pad_token_id"])
    eos += [stop for stop in stops if stop not in eos]
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
    if architecture not in FAMILIES:
        raise KeyError(f"tiny model {name!r}: unknown architecture {architecture!r} "
                       f"(known: {', '.join(sorted(FAMILIES))})")
    family = FAMILIES[architecture]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = train_tokenizer(spec["tokenizer"], family)
    ids = _token_ids(tokenizer, family.SPECIAL_TOKENS)
    config = family.config(model_spec, tokenizer, ids)
    torch.manual_seed(model_spec["seed"])
    model = family.MODEL_CLASS(config).to(torch.float32).eval()
    stops = tokenizer.convert_tokens_to_ids(list(getattr(family, "STOP_TOKENS", ())))
    model.generation_config = generation_config(ids, stops)
    model.save_pretrained(out_dir, safe_serialization=True)
    family.processor(model_spec, tokenizer).save_pretrained(out_dir)

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
