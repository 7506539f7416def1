"""Contract test of our vLLM backend against the real vllm package (``make vllm-contract``).

Not collected by pytest (vLLM is several GB and pins its own torch): run in two steps,
``build`` in the project's venv (the tiny twins are built with the project's transformers),
then ``check`` in the venv of envs/vllm.yaml:

* every decoding of the study (each local model's, and its reasoning variant) goes through our
  ``sampling_params`` into vLLM's ``SamplingParams``, which must keep every value as given
  (greedy, temperature, top_p, top_k, repetition_penalty, seed, max_tokens);
* the messages our backend sends (``openai_api.build_messages``: system prompt, images as PNG
  data URLs, then the text) go through vLLM's own chat parsing and chat-template rendering for
  the tiny twin of each vLLM model: its architecture must be one vLLM implements natively, every
  image must arrive at its size, and the rendered prompt must equal what the transformers
  processor's own chat template renders (one image placeholder per image, in order).

What needs a GPU (loading weights, the multimodal processor's pixel values, generation,
tensor parallelism) is not checked here.
"""

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

from mirsafety.core.config import validate_config  # noqa: E402
from mirsafety.models.backend import Request  # noqa: E402
from mirsafety.models.openai_api import build_messages  # noqa: E402
from mirsafety.models.vllm_backend import sampling_params  # noqa: E402

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
TINY = REPO / "resources" / "tiny_models.yaml"
FIELDS = ("temperature", "top_p", "top_k", "repetition_penalty", "seed", "max_tokens")


def study(path) -> dict:
    return validate_config(yaml.safe_load(Path(path).read_text()), SCHEMA)


def vllm_twins(config: dict) -> dict[str, str]:
    """{study model: its tiny twin} for the models the study generates with vLLM."""
    twins = yaml.safe_load(TINY.read_text())["study_twins"]
    return {name: twins[name] for name, spec in config["models"].items()
            if spec["backend"] == "vllm" and isinstance(twins.get(name), str)}


def build(study_path, out_dir) -> None:
    """Build the twins of the study's vLLM models (project venv: the project's transformers)."""
    from mirsafety.models.tiny import build_tiny_model

    spec = yaml.safe_load(TINY.read_text())
    for twin in sorted(set(vllm_twins(study(study_path)).values())):
        if not (Path(out_dir) / twin / "tiny_spec.json").is_file():
            build_tiny_model(twin, spec, Path(out_dir) / twin)
        print(f"twin {twin}: {Path(out_dir) / twin}")


def decodings(config: dict):
    """(model, stage, decoding) of every local model: generation and the reasoning set."""
    for name, spec in config["models"].items():
        if spec["backend"] in ("vllm", "transformers"):
            yield name, "generate", spec["decoding"]
            reasoning = {**spec["decoding"], "max_new_tokens": config["reasoning"]["max_new_tokens"]}
            yield name, "reasoning", reasoning


def check_sampling(config: dict) -> list[str]:
    from vllm import SamplingParams
    from vllm.sampling_params import SamplingType

    problems = []
    for name, stage, decoding in decodings(config):
        ours = sampling_params(decoding)
        theirs = SamplingParams(**ours)
        kept = {f: getattr(theirs, f) for f in FIELDS}
        want_type = SamplingType.RANDOM_SEED if decoding["do_sample"] else SamplingType.GREEDY
        bad = [f"{f}: ours {ours[f]!r}, vLLM {kept[f]!r}" for f in FIELDS if ours[f] != kept[f]]
        if theirs.sampling_type != want_type:
            bad.append(f"sampling type {theirs.sampling_type.name}, want {want_type.name}")
        if decoding["do_sample"] and (theirs.temperature, theirs.top_p) != (
                decoding["temperature"], decoding["top_p"] or 1.0):
            bad.append("temperature/top_p differ from the registry")
        line = " ".join(f"{f}={kept[f]}" for f in FIELDS)
        print(f"{'ok  ' if not bad else 'FAIL'} SamplingParams {name} {stage}: "
              f"{theirs.sampling_type.name} {line}")
        problems += [f"{name} {stage}: {b}" for b in bad]
    return problems


def sample_request(system_prompt) -> Request:
    from PIL import Image

    images = [Image.new("RGB", size, color) for size, color in
              (((64, 48), "red"), ((32, 32), "green"), ((48, 64), "blue"))]
    return Request(uid="contract-0", prompt="What do the three images show?", images=images,
                   system_prompt=system_prompt)


def check_chat(name: str, model: dict, folder: Path) -> list[str]:
    """vLLM's chat parsing and template rendering of our messages, on the twin's folder."""
    from transformers import AutoProcessor
    from vllm.config import ModelConfig
    from vllm.model_executor.models import ModelRegistry
    from vllm.renderers.chat_utils.chat_message import parse_chat_messages
    from vllm.renderers.hf import resolve_chat_template_content_format, safe_apply_chat_template
    from vllm.tokenizers.registry import cached_tokenizer_from_config

    request = sample_request(model["system_prompt"])
    messages = build_messages(request)
    config = ModelConfig(model=str(folder), tokenizer=str(folder), dtype="float32",
                         limit_mm_per_prompt={"image": 8})
    tokenizer = cached_tokenizer_from_config(config)
    content_format = resolve_chat_template_content_format(
        None, None, "auto", tokenizer, model_config=config)
    conversation, mm_data, _ = parse_chat_messages(messages, config, content_format)
    prompt = safe_apply_chat_template(config, tokenizer, conversation, tokenize=False,
                                      add_generation_prompt=True)
    images = (mm_data or {}).get("image") or []
    images = images if isinstance(images, list) else [images]
    sizes = [getattr(im, "size", None) for im in images]
    want_sizes = [im.size for im in request.images]

    processor = AutoProcessor.from_pretrained(folder)
    hf_messages = [{"role": m["role"], "content": m["content"] if isinstance(m["content"], str)
                    else [{"type": "image"} if p["type"] == "image_url" else p
                          for p in m["content"]]} for m in messages]
    hf_prompt = processor.apply_chat_template(hf_messages, add_generation_prompt=True,
                                              tokenize=False)
    problems = []
    native = set(config.architectures) & set(ModelRegistry.get_supported_archs())
    if not native:
        problems.append(f"vLLM has no native implementation of {config.architectures}")
    if sizes != want_sizes:
        problems.append(f"images reached vLLM as {sizes}, sent {want_sizes}")
    if prompt != hf_prompt:
        problems.append(f"vLLM rendered {prompt!r}; the processor's template renders "
                        f"{hf_prompt!r}")
    if request.prompt not in prompt:
        problems.append("the text is missing from the rendered prompt")
    print(f"{'ok  ' if not problems else 'FAIL'} chat {name} (twin {folder.name}, "
          f"{'/'.join(config.architectures)}): content format {content_format}, "
          f"{len(images)} image(s) {sizes}, prompt {len(prompt)} chars, same as the "
          f"processor's template: {prompt == hf_prompt}")
    return [f"{name} ({folder.name}): {p}" for p in problems]


def check(study_path, twins_dir) -> int:
    import vllm

    config = study(study_path)
    print(f"vllm {vllm.__version__}; {sum(1 for _ in decodings(config))} decodings of "
          f"{study_path}")
    problems = check_sampling(config)
    for name, twin in vllm_twins(config).items():
        try:
            problems += check_chat(name, config["models"][name], Path(twins_dir) / twin)
        except Exception as error:  # noqa: BLE001 - each twin is reported, then the next runs
            print(f"FAIL chat {name} (twin {twin}): {type(error).__name__}: {error}")
            problems.append(f"{name} ({twin}): {type(error).__name__}: {error}")
    print(f"\n{len(problems)} problem(s)" + "".join(f"\n  - {p}" for p in problems))
    print("Not checked without a GPU: loading weights, the multimodal processor's pixel values "
          "and image tokens, generation itself, tensor parallelism, finish reasons and token "
          "ids (generated_ids).")
    return 1 if problems else 0


if __name__ == "__main__":
    mode, study_path, twins_dir = sys.argv[1:4]
    if mode == "build":
        build(study_path, twins_dir)
    else:
        sys.exit(check(study_path, twins_dir))
