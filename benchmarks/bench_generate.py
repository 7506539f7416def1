"""Benchmark of generation, tiny Qwen2.5-VL, batch size 1 vs 8 on CPU; prints a markdown table.

What it measures: the ``generate`` stage's own code path (``make_backend`` + ``run_shard``, i.e.
image loading, chat template, processor, ``model.generate`` with left padding, ledger and shard
writing) for the registry entry ``tiny-qwen2.5-vl-s`` of config.yaml (greedy decoding,
repetition_penalty 1.05, fixed ``max_new_tokens``), over the first N instances of the embedded
sample dataset. A setup child builds the tiny model (``build_tiny_model``) and writes and prepares
the sample in a temporary folder. Then, for each batch size, R runs each in a fresh spawned
process: validate the entry through the config schema (all defaults filled), set ``batch_size``,
load the backend (timed separately), and time ``run_shard`` to a fresh shard path (no resume).

Reported per batch size: items/s (median of R), speed-up over batch size 1, model-load time,
the process's peak RSS, and memory per item = (peak RSS during ``run_shard`` - RSS right after the
model is loaded, before generation) / batch size, plus mean completion tokens per item from the
shard records (greedy decoding with early EOS: items in one batch may stop at different lengths).
The torch thread count is fixed (default: the CPUs this process may use) and printed.

Run: .venv/bin/python benchmarks/bench_generate.py [--instances N] [--repeats R]
     (also --batch-sizes 1 8, --max-new-tokens 24, --threads T; --instances 0 = all 108)
"""

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from fresh_process import fresh

# Light imports only up here, and all heavy work in children: spawned children re-import this
# module, and on Linux a child's ru_maxrss starts at its parent's RSS at fork time (it survives
# exec), so the parent must stay small for the children's peaks to mean anything.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))
os.environ["TQDM_DISABLE"] = "1"  # read by tqdm at import; children inherit it
MODEL_NAME = "tiny-qwen2.5-vl-s"
# config.yaml's entry for tiny-qwen2.5-vl-s, but with weights from the folder built here.
ENTRY = {
    "backend": "transformers",
    "dtype": "float32",
    "system_prompt": "You are a helpful assistant.",
    "decoding": {"do_sample": False, "repetition_penalty": 1.05, "max_new_tokens": 24, "seed": 0},
    "batch_size": 4,
    "shards": 2,
    "family": "tiny-qwen",
    "resources": {"gpus": 0, "mem_mb": 2000, "runtime": 20},
}


def _quiet():
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("mirsafety").setLevel(logging.WARNING)  # keep failed-item warnings
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def setup(tmp):
    """Build the tiny model and the prepared sample under ``tmp``; return (model dir, data dir)."""
    import yaml

    from mirsafety.data.prepare import expected_counts, prepare
    from mirsafety.data.sample import write_sample
    from mirsafety.models.tiny import build_tiny_model

    _quiet()
    spec = yaml.safe_load((REPO / "resources" / "tiny_models.yaml").read_text())
    model_dir = build_tiny_model(MODEL_NAME, spec, tmp / "model")
    sample_spec = yaml.safe_load((REPO / "resources" / "sample_spec.yaml").read_text())
    write_sample(sample_spec, tmp / "source")
    data_dir = tmp / "prepared"
    prepare(tmp / "source", data_dir, dataset="sample", split="train",
            max_image_pixels=40_000_000, expected=expected_counts("sample", sample_spec),
            enforce_counts=True, provenance={})
    return model_dir, data_dir


def _status_mib(field):
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise KeyError(field)


def _reset_peak():
    """Reset the peak-RSS mark (VmHWM) to the current RSS; False where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def run_once(model_dir, data_dir, out_dir, batch_size, n, max_new_tokens, threads):
    """One measured run, in its own process; a dict of timings, memory and shard statistics."""
    import resource
    import time

    import torch

    torch.set_num_threads(threads)
    _quiet()
    from mirsafety.core.config import validate_config
    from mirsafety.core.records import read_jsonl
    from mirsafety.entropy.capture import EntropyHook
    from mirsafety.generation.generate import run_shard
    from mirsafety.models import hf  # noqa: F401  (import outside the timed regions)
    from mirsafety.models.factory import make_backend, weights_identity

    entry = {**ENTRY, "weights": {"path": str(model_dir)},
             "decoding": {**ENTRY["decoding"], "max_new_tokens": max_new_tokens}}
    schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    model = validate_config({"models": {"m": entry}}, schema)["models"]["m"]
    model["batch_size"] = batch_size
    instances = read_jsonl(Path(data_dir) / "instances.jsonl")
    instances = instances[:n] if n else instances
    settings = {"model_name": MODEL_NAME, "model": model, "weights": weights_identity(model),
                "shard": "000-of-001"}

    start = time.perf_counter()
    backend = make_backend(model, capture=EntropyHook())  # as the generate stage
    load_s = time.perf_counter() - start
    loaded_mib = _status_mib("VmRSS")
    peak_load_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    reset = _reset_peak()

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True)
    start = time.perf_counter()
    run_shard(instances, data_dir, backend, model_name=MODEL_NAME, model=model,
              settings=settings, out_path=out_dir / "shard.jsonl", meta_path=out_dir / "meta.json")
    run_s = time.perf_counter() - start
    end_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    run_peak_mib = _status_mib("VmHWM") if reset else end_maxrss
    records = read_jsonl(out_dir / "shard.jsonl")
    backend.close()
    failed = sum(r["status"] != "ok" for r in records)
    ok = [r for r in records if r["status"] == "ok"]
    return {
        "items": len(records), "failed": failed, "load_s": load_s, "run_s": run_s,
        "items_per_s": len(records) / run_s,
        "loaded_mib": loaded_mib, "run_peak_mib": run_peak_mib,
        "peak_mib": max(peak_load_mib, end_maxrss),
        "per_item_mib": (run_peak_mib - loaded_mib) / batch_size,
        "completion_tokens": statistics.mean(r["completion_tokens"] for r in ok) if ok else 0.0,
        "stopped": sum(r["finish_reason"] == "stop" for r in ok),
        "prompt_tokens": statistics.mean(r["prompt_tokens"] for r in ok) if ok else 0.0,
        "threads": torch.get_num_threads(), "peak_reset": reset,
    }



def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=64,
                        help="first N instances of the sample (0 or >= 108: all 108)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per batch size (median)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--max-new-tokens", type=int, default=24, help="as in config.yaml")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch intra-op threads (default: the CPUs this process may use)")
    options = parser.parse_args()
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # children inherit these
        os.environ[name] = str(options.threads)

    results = {}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_generate_") as tmp:
        tmp = Path(tmp)
        print(f"building {MODEL_NAME} and preparing the sample under {tmp} ...", file=sys.stderr)
        model_dir, data_dir = fresh(setup, tmp)
        for size in options.batch_sizes:
            runs = []
            for repeat in range(options.repeats):
                print(f"batch size {size}, run {repeat + 1}/{options.repeats} ...", file=sys.stderr)
                out = tmp / "runs" / f"b{size}-r{repeat}"
                runs.append(fresh(run_once, model_dir, data_dir, out, size, options.instances,
                                  options.max_new_tokens, options.threads))
            results[size] = runs

    load_after = os.getloadavg()[0]
    first = results[options.batch_sizes[0]][0]
    median = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
    base = median(results[options.batch_sizes[0]], "items_per_s")
    print(f"\n`run_shard` with {MODEL_NAME} (float32, greedy, repetition_penalty 1.05, "
          f"max_new_tokens {options.max_new_tokens}) over the first {first['items']} sample "
          f"instances; median of {options.repeats} run(s) per batch size, each in a fresh "
          f"process; torch threads {first['threads']} of {os.cpu_count()} CPU(s); 1-min load "
          f"average {load_before:.2f} before, {load_after:.2f} after (other work on the CPUs slows "
          f"multi-threaded runs badly)\n")
    print(f"| batch size | items/s | speed-up vs {options.batch_sizes[0]} | run s | load s "
          "| RSS after load MiB | run peak RSS MiB | process peak RSS MiB | memory per item MiB "
          "| mean completion tokens/item | stopped at EOS | mean prompt tokens | failed |")
    print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for size, runs in results.items():
        ips = median(runs, "items_per_s")
        print(f"| {size} | {ips:.2f} | {ips / base:.2f}x | {median(runs, 'run_s'):.2f} | "
              f"{median(runs, 'load_s'):.2f} | {median(runs, 'loaded_mib'):.0f} | "
              f"{median(runs, 'run_peak_mib'):.0f} | {max(r['peak_mib'] for r in runs):.0f} | "
              f"{median(runs, 'per_item_mib'):.2f} | {median(runs, 'completion_tokens'):.2f} | "
              f"{runs[0]['stopped']}/{runs[0]['items'] - runs[0]['failed']} | "
              f"{median(runs, 'prompt_tokens'):.1f} | {max(r['failed'] for r in runs)} |")

    peak_how = ("VmHWM, reset right after loading" if first["peak_reset"]
                else "ru_maxrss, which also covers loading")
    print(f"""
- items/s = items / wall time of the `run_shard` call (image loading, processor, generate, ledger
  and shard writes; imports and model loading excluded). No warm-up: first-call overheads are in.
- load s = `make_backend` (processor + `from_pretrained`), timed separately.
- memory per item = (run peak RSS - RSS after load) / batch size, where RSS after load is VmRSS
  right after `make_backend`, before any generation, and run peak RSS is the peak during
  `run_shard` ({peak_how}).
  It is the extra resident memory generation needs per batch slot (activations, KV cache, pixel
  tensors, allocator caches, one-time lazy initialisation of the first call); for a model this
  small it is dominated by allocator and library overheads, not by the model. Medians over runs.
- process peak RSS = ru_maxrss of the whole child process (imports, loading and generation), max
  over runs.
- Greedy decoding with early EOS: items in one batch may stop at different lengths (a batch runs
  until its longest item is done; shorter items' slots keep computing padding), so the mean
  completion tokens per item (EOS included, from the shard records) is reported. "stopped at EOS"
  counts items with finish_reason stop (first run); the EOS may be the last allowed token, so
  they can still have max_new_tokens tokens. The random-weight tiny model rarely emits EOS.""")


if __name__ == "__main__":
    main()
