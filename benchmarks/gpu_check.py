"""The study's code on a real accelerator: every twin's entropy against eager attention in
bfloat16, and decode speed of a Qwen2.5-VL-7B-shaped model against the memory-bandwidth roofline.

Part 1, twins: each study twin of resources/tiny_models.yaml is built in a temporary folder,
loaded on the device in bfloat16 through the entropy extractor (the study's code path) and, as a
reference, with eager attention returning its maps; the largest |ours - eager| over the
normalised entropies of every valid row and layer is reported per twin, with the image-key count.
bfloat16 rounds the attention inputs, so the figures are agreement at the dtype the study runs,
not the float32 1e-4 the CPU tests hold.

Part 2, decode: a random-weight model with Qwen2.5-VL-7B's text shape (hidden 3584, 28 layers,
28 query / 4 key-value heads, MLP 18944, vocabulary 152064) in bfloat16, greedy, a 64-token text
prompt, exactly N new tokens (``min_new_tokens``), at batch 1 and 32, through
``model.generate`` as the transformers backend runs it. Decode tokens/s = batch x new tokens /
(time of the whole generate - time of a 1-token generate). Roofline: a decode step must read
every weight once, so batch-1 tokens/s cannot exceed bandwidth / weight bytes; at batch B the
same read serves B tokens (the KV cache of a short prompt is small beside the weights).

Run on the GPU host (one short script, figures to a JSON file):
    python benchmarks/gpu_check.py --out gpu_check.json [--bandwidth-gbs 4800] [--new-tokens 64]
Smoke run of the same code on CPU with a scaled-down shape (what CI can check):
    python benchmarks/gpu_check.py --device cpu --smoke --out /tmp/gpu_check.json
"""

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

#: HBM bandwidth in GB/s of GPUs a site is likely to have (vendor data sheets), by name fragment.
BANDWIDTH_GBS = {"H200": 4800, "H100 SXM": 3350, "H100 PCIe": 2000, "H100": 3350,
                 "A100-SXM4-80GB": 2039, "A100 80GB PCIe": 1935, "A100": 1555, "L40S": 864,
                 "A6000": 768, "4090": 1008}
QWEN_7B_TEXT = {"hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28,
                "num_key_value_heads": 4, "intermediate_size": 18944, "vocab_size": 152064,
                "mrope_section": [16, 24, 24]}
SMOKE_TEXT = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "intermediate_size": 256, "vocab_size": 1024,
              "mrope_section": [4, 6, 6]}


def bandwidth(device_name: str, given: float | None) -> float | None:
    if given:
        return given
    return next((gbs for key, gbs in BANDWIDTH_GBS.items() if key in device_name), None)


def twin_agreement(device: str, dtype) -> dict:
    """Per twin: max |entropy - eager| (normalised, all rows and layers) and image keys."""
    import io
    import random

    import torch
    import yaml
    from PIL import Image
    from transformers import AutoModelForImageTextToText

    from mirsafety.core.config import validate_config
    from mirsafety.data.sample import draw_scene
    from mirsafety.entropy.capture import entropy_forward
    from mirsafety.entropy.extractor import EntropyExtractor
    from mirsafety.models.tiny import build_tiny_model

    spec = yaml.safe_load((REPO / "resources" / "tiny_models.yaml").read_text())
    twins = sorted({t for t in spec["study_twins"].values() if isinstance(t, str)})
    schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    images = [Image.open(io.BytesIO(draw_scene(f"thing{k}", k + 1, 3, (64, 64),
                                               random.Random(k)))).convert("RGB")
              for k in range(3)]
    results = {}
    with tempfile.TemporaryDirectory() as root:
        for name in twins:
            path = build_tiny_model(name, spec, Path(root) / name)
            entry = validate_config({"models": {"m": {
                "backend": "transformers", "weights": {"path": str(path)},
                "dtype": "bfloat16"}}}, schema)["models"]["m"]
            extractor = EntropyExtractor(str(path), entry)
            inputs = extractor.prompt_inputs(images, "How are these pictures linked?", None)
            rows = inputs["attention_mask"].bool()
            found, _ = entropy_forward(extractor.model, inputs, rows, extractor.image_token_id)
            eager = AutoModelForImageTextToText.from_pretrained(
                path, dtype=dtype, attn_implementation={"text_config": "eager",
                                                        "vision_config": "sdpa"}).to(device).eval()
            with torch.inference_mode():
                maps = eager(**inputs, output_attentions=True).attentions
            worst = 0.0
            for li, layer in enumerate(found.layers):
                p = maps[layer][0].double()  # heads x queries x keys
                for r, pos in enumerate(found.positions.tolist()):
                    n = int(found.n_keys[0, r])
                    row = p[:, pos, :pos + 1]
                    h = -torch.special.xlogy(row, row).sum(-1).mean() / math.log(n)
                    got = float(found.values["entropy_all_norm"][0, r, li])
                    worst = max(worst, abs(got - float(h)))
            results[name] = {"max_abs_diff_norm_entropy": worst,
                             "image_keys": int(found.n_image_keys[0, -1]),
                             "layers": len(found.layers)}
            del extractor, eager
    return results


def decode_speed(device: str, dtype, text: dict, new_tokens: int, batches) -> dict:
    """Tokens/s of greedy decode for a random model of ``text``'s shape, per batch size."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    text = dict(text)
    mrope = text.pop("mrope_section")
    config = Qwen2_5_VLConfig(
        text_config={**text, "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                                                 "mrope_section": mrope}},
        vision_config={"depth": 1, "hidden_size": 64, "num_heads": 2, "intermediate_size": 64,
                       "out_hidden_size": text["hidden_size"]})
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(config).to(dtype).eval()
    params = sum(p.numel() for p in model.model.language_model.parameters())
    params += model.lm_head.weight.numel()
    weight_bytes = params * torch.finfo(dtype).bits // 8
    results = {"text_params": params, "weight_gb": weight_bytes / 1e9}
    for batch in batches:
        ids = torch.randint(10, text["vocab_size"] - 10, (batch, 64), device=device)
        kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "do_sample": False,
                  "pad_token_id": 0, "eos_token_id": None}

        def run(tokens):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            started = time.perf_counter()
            with torch.inference_mode():
                model.generate(**kwargs, max_new_tokens=tokens, min_new_tokens=tokens)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            return time.perf_counter() - started

        run(2)  # warm-up: kernels, allocator
        prefill = min(run(1) for _ in range(2))
        total = min(run(new_tokens) for _ in range(2))
        decode = max(total - prefill, 1e-9)
        results[f"batch_{batch}"] = {"decode_tokens_per_s": batch * (new_tokens - 1) / decode,
                                     "seconds": total}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", required=True)
    parser.add_argument("--bandwidth-gbs", type=float, default=None)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--smoke", action="store_true", help="scaled-down shape (CPU check)")
    args = parser.parse_args()

    import torch

    dtype = torch.bfloat16
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    report = {"device": name, "torch": torch.__version__}
    report["twins"] = twin_agreement(args.device, dtype)
    shape = SMOKE_TEXT if args.smoke else QWEN_7B_TEXT
    speed = decode_speed(args.device, dtype, shape, 8 if args.smoke else args.new_tokens,
                         (1, 4) if args.smoke else (1, 32))
    gbs = bandwidth(name, args.bandwidth_gbs)
    if gbs:
        roofline = gbs * 1e9 / (speed["weight_gb"] * 1e9)
        for key, value in speed.items():
            if key.startswith("batch_"):
                batch = int(key.split("_")[1])
                value["roofline_tokens_per_s"] = batch * roofline
                value["fraction_of_roofline"] = value["decode_tokens_per_s"] / (batch * roofline)
    report["decode"] = {"shape": "smoke" if args.smoke else "Qwen2.5-VL-7B text",
                        "bandwidth_gbs": gbs, **speed}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
