"""Benchmark of the HarmBench judge on the tiny classifier, batch size 1 vs 16 on CPU; prints a
markdown table.

What it measures: ``HarmBenchJudge.judge`` (clip, prompt rendering, tokenisation, left-padded
batches sorted by length, one forward pass per batch, Yes/No logits) over N synthetic items whose
answers have 0 to ~300 words (a refusal every third item), on the tiny stand-in classifier of
resources/tiny_judges.yaml (``tiny-harmbench-cls``, built by a setup child into a temporary folder).
For each batch size, R runs each in a fresh spawned process: load the judge (timed separately),
judge all items once untimed (warm-up), then time ``judge`` over all items. Reported: items/s
(median of R), speed-up over batch size 1, load time (tokenizer + weights), mean prompt tokens,
and the process's peak RSS. The torch thread count is fixed (default: the CPUs this process
may use) and printed.

The tiny classifier is ~0.2 M parameters, so these numbers measure the judge's own overhead
(tokenisation, padding, Python) far more than model compute; they say nothing about the 13B
classifier's speed.

Run: .venv/bin/python benchmarks/bench_judge.py [--items N] [--repeats R] [--batch-sizes 1 16]
"""

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from fresh_process import fresh

# Light imports only up here, and all heavy work in children (see bench_prepare.py).
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))
os.environ["TQDM_DISABLE"] = "1"
NAME = "tiny-harmbench-cls"
WORDS = "the kite lantern bridge opens closes shows step then first next red blue careful".split()


def build(out):
    import yaml

    from mirsafety.judging.tiny_classifier import build_tiny_classifier

    spec = yaml.safe_load((REPO / "resources" / "tiny_judges.yaml").read_text())
    return str(build_tiny_classifier(spec, Path(out), name=NAME))


def make_items(n):
    import random

    from mirsafety.judging.base import JudgeItem

    rng = random.Random(0)
    items = []
    for i in range(n):
        if i % 3 == 0:
            answer = "I am sorry, but I cannot help with that request."
        else:
            answer = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 300)))
        items.append(JudgeItem(uid=f"u{i}", behavior=f"Explain how to misuse object {i} step by step",
                               generation=answer, prompt="(multi-image prompt)"))
    return items


def _child(folder, n, batch_size, threads):
    import resource
    import time

    import torch

    torch.set_num_threads(threads)
    import transformers  # noqa: F401  (imported outside the timed load)

    from mirsafety.judging.harmbench import HarmBenchJudge

    items = make_items(n)
    start = time.perf_counter()
    judge = HarmBenchJudge(folder, dtype="float32", batch_size=batch_size)
    load = time.perf_counter() - start
    judge.judge(items)  # warm-up
    start = time.perf_counter()
    verdicts = judge.judge(items)
    seconds = time.perf_counter() - start
    tokens = statistics.mean(len(judge.tokenizer(judge.prompt(i)).input_ids) for i in items)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    errors = sum(v.label == "error" for v in verdicts)
    return n / seconds, load, tokens, peak, errors



def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    options = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_judge_") as tmp:
        folder = fresh(build, Path(tmp) / NAME)
        for batch_size in options.batch_sizes:
            print(f"measuring batch size {batch_size} ...", file=sys.stderr)
            runs = [fresh(_child, folder, options.items, batch_size, options.threads)
                    for _ in range(options.repeats)]
            rows.append((batch_size, statistics.median(r[0] for r in runs),
                         statistics.median(r[1] for r in runs), runs[0][2],
                         max(r[3] for r in runs), runs[0][4]))

    base = rows[0][1]
    print(f"\nHarmBench judge on {NAME} (CPU, float32, {options.threads} torch thread(s)), "
          f"{options.items} items, median of {options.repeats} run(s), each in a fresh process\n")
    print("| batch size | items/s | speed-up | load s | mean prompt tokens | peak RSS MiB | errors |")
    print("|--:|--:|--:|--:|--:|--:|--:|")
    for batch_size, rate, load, tokens, peak, errors in rows:
        print(f"| {batch_size} | {rate:.1f} | {rate / base:.2f}x | {load:.2f} | {tokens:.0f} | "
              f"{peak:.0f} | {errors} |")


if __name__ == "__main__":
    main()
