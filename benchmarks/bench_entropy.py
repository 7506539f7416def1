"""Benchmark of the attention-entropy pass against eager ``output_attentions`` and a plain SDPA
forward pass, and of the in-generation capture's cost; prints markdown tables.

Model: the tiny Qwen2.5-VL of resources/tiny_models.yaml (``--variant s``: hidden 64, 4 heads /
2 kv heads, 2 layers) or, with ``--variant wide``, the same spec made wider and deeper (hidden
256, 8 heads / 4 kv heads, head_dim 32, 4 layers), built by ``build_tiny_model`` in a temporary
folder. Input: 3 images (16 image tokens each) and a filler text prompt, plus a "response" of
filler tokens appended, sized so that the whole sequence has exactly L tokens and the response
(the rows reduced, aligned as the extractor does: the rows that produce the response tokens) is
the last quarter of it (``--response-fraction``).

Passes, each ``model(**inputs, use_cache=False, logits_to_keep=1)`` on the same input, batch 1:
  ours   -- the model loaded with the entropy attention for its language model, inside
            ``entropy_forward`` (all four entropies, every layer, the response rows);
  eager  -- the language model on eager attention with ``output_attentions=True`` (the memory an
            entropy computed from returned attention maps needs at least; the entropies
            themselves not even computed);
  sdpa   -- the plain model (SDPA), no entropies.
Each (pass, L) is measured in R fresh spawned processes: load, one warm-up call, C timed calls
(default malloc; the median), then ``mallopt(M_MMAP_THRESHOLD, 64 KiB)`` + ``malloc_trim`` so
large buffers come from mmap and go back to the OS at free, the peak RSS reset
(``/proc/self/clear_refs`` 5), and one more call: extra peak = VmHWM during that call - VmRSS
just before it (the loaded model, inputs and warm allocator excluded). Medians over R are
reported. Time is the process's CPU time with one torch thread (``--threads``): on a shared
machine wall time swings with other jobs' load, CPU time of a single thread much less; the
wall-clock ratio is printed beside it.

Generation: a prompt of ``--gen-prompt`` tokens (3 images + text), greedy, exactly
``--gen-tokens`` new tokens (min = max new tokens), with the plain SDPA model vs
``generate_with_entropy`` on the entropy model (same weights). In each fresh process both models
are loaded and the two alternate ``--gen-rounds`` times after a warm-up; overhead = median
capture time / median plain time - 1 per process, then the median over R processes.

Run: .venv/bin/python benchmarks/bench_entropy.py [--lengths 512 1024 2048 4096] [--repeats R]
     [--variant s|wide] [--threads T] [--calls C] [--gen-tokens N] [--gen-prompt P]
     [--gen-rounds K] [--response-fraction F]
"""

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from fresh_process import fresh

# Light imports only up here, and all heavy work in children: spawned children re-import this
# module, and the parent should stay small.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))
os.environ["TQDM_DISABLE"] = "1"
MODEL_NAME = "tiny-qwen2.5-vl-s"
MIB = 1024 * 1024
WIDE = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 8,
        "num_key_value_heads": 4, "intermediate_size": 512, "mrope_section": [4, 6, 6]}
FILLER = ("the man holds a red kite near the old bridge and the child looks at the bright "
          "picture while a small boat moves under the clock tower in the quiet city").split()
M_MMAP_THRESHOLD = -3


def _quiet():
    import logging

    logging.basicConfig(level=logging.ERROR)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def build(tmp, variant):
    """Build the tiny model (or its wide variant) under ``tmp``; return its folder."""
    import yaml

    from mirsafety.models.tiny import build_tiny_model

    _quiet()
    spec = yaml.safe_load((REPO / "resources" / "tiny_models.yaml").read_text())
    if variant == "wide":
        spec["models"][MODEL_NAME]["text"].update(WIDE)
    return build_tiny_model(MODEL_NAME, spec, Path(tmp) / f"model-{variant}")


def _pictures():
    import io
    import random

    from PIL import Image

    from mirsafety.data.sample import draw_scene

    rng = random.Random(0)
    return [Image.open(io.BytesIO(draw_scene(f"thing{k}", k + 1, 3, (112, 112), rng)))
            .convert("RGB") for k in range(3)]


def make_inputs(extractor, length, response_fraction):
    """(teacher-forced inputs of exactly ``length`` tokens, rows (1, L) bool of the response)."""
    import torch

    images, tokenizer = _pictures(), extractor.tokenizer
    target = length - max(1, int(length * response_fraction))
    words = max(1, target // 2)
    for _ in range(8):  # adjust the filler until the prompt is within the target
        text = " ".join(FILLER[i % len(FILLER)] for i in range(words))
        prompt = extractor.prompt_inputs(images, text, "You are a helpful assistant.")
        size = prompt["input_ids"].shape[1]
        if size <= target and target - size < 8:
            break
        words = max(1, words + (target - size) * 3 // 4 if size < target
                    else words - (size - target) - 1)
    size = prompt["input_ids"].shape[1]
    filler = tokenizer(" ".join(FILLER), add_special_tokens=False)["input_ids"]
    response = [filler[i % len(filler)] for i in range(length - size)]
    inputs = extractor.teacher_forced_inputs(prompt, response)
    rows = torch.zeros((1, length), dtype=torch.bool)
    rows[0, size - 1: length - 1] = True  # the rows that produce the response tokens
    assert inputs["input_ids"].shape[1] == length
    return inputs, rows


def _rss(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def _measure_call(call, calls):
    """(median CPU s, median wall s over ``calls`` warm calls, extra peak bytes of one more)."""
    import ctypes
    import gc
    import time

    call()  # warm-up
    gc.collect()
    cpu, wall = [], []
    for _ in range(calls):
        start, start_wall = time.process_time(), time.perf_counter()
        call()
        cpu.append(time.process_time() - start)
        wall.append(time.perf_counter() - start_wall)
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(M_MMAP_THRESHOLD, 64 * 1024)
    gc.collect()
    libc.malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    base = _rss("VmRSS")
    call()
    return statistics.median(cpu), statistics.median(wall), _rss("VmHWM") - base


def pass_child(model_dir, kind, length, response_fraction, threads, calls):
    """One measurement of one pass in a fresh process: (CPU s, wall s, extra peak bytes, rows)."""
    import torch
    from transformers import AutoModelForImageTextToText

    from mirsafety.entropy.capture import entropy_forward
    from mirsafety.entropy.extractor import EntropyExtractor

    _quiet()
    torch.set_num_threads(threads)
    entry = {"trust_remote_code": False, "model_class": "AutoModelForImageTextToText",
             "dtype": "float32", "thinking": "auto"}
    extractor = EntropyExtractor(str(model_dir), entry)
    inputs, rows = make_inputs(extractor, length, response_fraction)
    image_id = extractor.image_token_id
    if kind == "ours":
        model = extractor.model

        def call():
            with torch.inference_mode():
                entropy_forward(model, inputs, rows, image_id)
    else:
        del extractor
        text = "eager" if kind == "eager" else "sdpa"
        model = AutoModelForImageTextToText.from_pretrained(
            model_dir, dtype=torch.float32,
            attn_implementation={"text_config": text, "vision_config": "sdpa"}).eval()

        def call():
            with torch.inference_mode():
                out = model(**inputs, use_cache=False, logits_to_keep=1,
                            output_attentions=kind == "eager")
            if kind == "eager":
                assert out.attentions is not None and len(out.attentions) > 0
    cpu, wall, extra = _measure_call(call, calls)
    return cpu, wall, extra, int(rows.sum())


def generation_child(model_dir, prompt_tokens, new_tokens, rounds, threads):
    """(median plain, median capture CPU s; the same in wall s; steps recorded), both models
    in one process."""
    import time

    import torch
    from transformers import AutoModelForImageTextToText

    from mirsafety.entropy.capture import generate_with_entropy
    from mirsafety.entropy.extractor import EntropyExtractor

    _quiet()
    torch.set_num_threads(threads)
    entry = {"trust_remote_code": False, "model_class": "AutoModelForImageTextToText",
             "dtype": "float32", "thinking": "auto"}
    extractor = EntropyExtractor(str(model_dir), entry)
    plain = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32,
                                                        attn_implementation="sdpa").eval()
    inputs, _ = make_inputs(extractor, prompt_tokens + 1, 1 / (prompt_tokens + 1))
    prompt = {k: (v[:, :-1] if k in ("input_ids", "attention_mask", "mm_token_type_ids") else v)
              for k, v in inputs.items()}
    greedy = {"do_sample": False, "max_new_tokens": new_tokens, "min_new_tokens": new_tokens,
              "temperature": None, "top_p": None, "top_k": None}
    steps = []

    def run_plain():
        with torch.inference_mode():
            return plain.generate(**prompt, **greedy)

    def run_capture():
        with torch.inference_mode():
            output, found = generate_with_entropy(extractor.model, prompt, **greedy)
        steps.append(found.values["entropy_all"].shape[1])
        return output

    assert torch.equal(run_plain(), run_capture())  # warm-up; same tokens
    cpu, wall = {"plain": [], "capture": []}, {"plain": [], "capture": []}
    for _ in range(rounds):
        for name, run in (("plain", run_plain), ("capture", run_capture)):
            start, start_wall = time.process_time(), time.perf_counter()
            run()
            cpu[name].append(time.process_time() - start)
            wall[name].append(time.perf_counter() - start_wall)
    m = statistics.median
    return (m(cpu["plain"]), m(cpu["capture"]), m(wall["plain"]), m(wall["capture"]), steps[-1])



def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per measurement")
    parser.add_argument("--variant", choices=["s", "wide"], default="s")
    parser.add_argument("--response-fraction", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: process CPU time is then a faithful clock)")
    parser.add_argument("--calls", type=int, default=5, help="timed calls per process (median)")
    parser.add_argument("--gen-prompt", type=int, default=512)
    parser.add_argument("--gen-tokens", type=int, default=128)
    parser.add_argument("--gen-rounds", type=int, default=5)
    options = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_entropy_") as tmp:
        model_dir = fresh(build, tmp, options.variant)
        for length in options.lengths:
            found = {}
            for kind in ("ours", "eager", "sdpa"):
                print(f"L={length} {kind} ...", file=sys.stderr)
                runs = [fresh(pass_child, model_dir, kind, length, options.response_fraction,
                              options.threads, options.calls) for _ in range(options.repeats)]
                found[kind] = [statistics.median(r[i] for r in runs) for i in range(3)]
                found[kind].append(runs[0][3])
            rows.append((length, found))
        print("generation ...", file=sys.stderr)
        generation = [fresh(generation_child, model_dir, options.gen_prompt, options.gen_tokens,
                            options.gen_rounds, options.threads) for _ in range(options.repeats)]

    arch = WIDE if options.variant == "wide" else {"hidden_size": 64, "num_hidden_layers": 2,
                                                   "num_attention_heads": 4,
                                                   "num_key_value_heads": 2}
    print(f"\nAttention-entropy pass vs eager output_attentions vs plain SDPA; {MODEL_NAME} "
          f"variant '{options.variant}' (hidden {arch['hidden_size']}, "
          f"{arch['num_hidden_layers']} layers, {arch['num_attention_heads']} heads / "
          f"{arch['num_key_value_heads']} kv heads), float32, CPU, {options.threads} thread(s); "
          f"batch 1; response rows = last {options.response_fraction:.0%} of the sequence; "
          f"median of {options.repeats} fresh process(es)\n")
    print("| L | rows reduced | ours ms | eager ms | sdpa ms | ours / sdpa time "
          "| (same, wall clock) | ours extra peak MiB | eager extra peak MiB "
          "| sdpa extra peak MiB | eager / ours extra peak |")
    print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for length, found in rows:
        ours, eager, sdpa = found["ours"], found["eager"], found["sdpa"]
        print(f"| {length} | {ours[3]} | {1000 * ours[0]:.1f} | {1000 * eager[0]:.1f} | "
              f"{1000 * sdpa[0]:.1f} | {ours[0] / sdpa[0]:.2f}x | {ours[1] / sdpa[1]:.2f}x | "
              f"{ours[2] / MIB:.1f} | {eager[2] / MIB:.1f} | {sdpa[2] / MIB:.1f} | "
              f"{eager[2] / max(ours[2], 1):.1f}x |")
    print("\nTimes are process CPU time (one torch thread), the median of "
          f"{options.calls} warm calls per process; the wall-clock ratio beside it.")

    overheads = [capture / plain - 1 for plain, capture, *_ in generation]
    print(f"\nIn-generation capture: prompt {options.gen_prompt} tokens (3 images + text), "
          f"{options.gen_tokens} new tokens, greedy; {options.gen_rounds} alternating rounds per "
          f"process after a warm-up (median), {options.repeats} process(es)\n")
    print("| process | plain generate ms | generate_with_entropy ms | overhead | overhead "
          "(wall clock) | overhead per token |")
    print("|--:|--:|--:|--:|--:|--:|")
    for k, (plain, capture, plain_wall, capture_wall, steps) in enumerate(generation, 1):
        print(f"| {k} | {1000 * plain:.1f} | {1000 * capture:.1f} | "
              f"{100 * (capture / plain - 1):+.1f}% | "
              f"{100 * (capture_wall / plain_wall - 1):+.1f}% "
              f"| {1e6 * (capture - plain) / steps:.0f} us |")
    print(f"| median | | | {100 * statistics.median(overheads):+.1f}% | | |")
    print(f"\n({generation[0][4]} rows recorded per generation: one per new token.)")


if __name__ == "__main__":
    main()
