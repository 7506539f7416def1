"""Benchmark of the ``prepare`` stage against a do-nothing baseline; prints a markdown table.

Case "sample" is the embedded sample (resources/sample_spec.yaml). Case "realistic" is a synthetic
hub parquet of N instances x 3 noisy 1024x1024 PNGs (~1 MB each, about the size of the benchmark's
FLUX images). For each case it times ``mirsafety.data.prepare.prepare`` and a baseline that only
streams the parquet's ``images`` column with pyarrow and writes each image's bytes unchanged (no
decoding, validation or hashing). Every run is in a fresh spawned process: its wall time is taken
around the call only (imports excluded) and its peak RSS from getrusage at the end. The medians of
R runs are reported, and case "realistic" is extrapolated linearly to the 2,676 instances of the
full benchmark. All data lives in a temporary folder; the page cache is warm.

Run: .venv/bin/python benchmarks/bench_prepare.py [--instances N] [--repeats R]
"""

import argparse
import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from fresh_process import fresh

# Light imports only up here, and all heavy work in children: spawned children re-import this
# module, and on Linux a child's ru_maxrss starts at its parent's RSS at fork time (it survives
# exec), so the parent must stay small for the children's peaks to mean anything.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))
os.environ["TQDM_DISABLE"] = "1"  # read by tqdm at import; children inherit it
FULL_INSTANCES = 2676
MIB = 1024 * 1024


def run_prepare(source, out, dataset, expected, enforce):
    from mirsafety.data.prepare import prepare

    manifest = prepare(source, out, dataset=dataset, split="train", max_image_pixels=40_000_000,
                       expected=expected, enforce_counts=enforce, provenance={})
    return manifest["n_images"]


def run_baseline(source, out):
    import pyarrow.parquet as pq

    out.mkdir(parents=True)
    n = 0
    for path in sorted(Path(source).glob("data/*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=8, columns=["images"]):
            for blob in batch.column("images").flatten().field("bytes"):
                n += 1
                (out / f"{n}.img").write_bytes(blob.as_buffer())
    return n


def _child(kind, args):
    """One measured run, in its own process: (seconds, peak RSS MiB, images, bytes written)."""
    import resource
    import shutil
    import time

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("mirsafety").setLevel(logging.ERROR)  # expected count-mismatch warnings
    function = {"prepare": run_prepare, "baseline": run_baseline}[kind]
    if kind == "prepare":
        import mirsafety.data.prepare  # noqa: F401  (import outside the timed region)
    else:
        import pyarrow.parquet  # noqa: F401
    start = time.perf_counter()
    images = function(*args)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    out = args[1]
    written = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    shutil.rmtree(out)
    return seconds, peak, images, written



def measure(kind, args, repeats):
    runs = [fresh(_child, kind, args) for _ in range(repeats)]
    return {"s": statistics.median(r[0] for r in runs), "mib": max(r[1] for r in runs),
            "images": runs[0][2], "bytes": runs[0][3]}


def noisy_png(seed) -> bytes:
    """A 1024x1024 PNG of random shapes plus grey noise: compresses to about 1 MB."""
    import io
    import random

    import numpy as np
    from PIL import Image, ImageDraw

    rng, noise = random.Random(seed), np.random.default_rng(seed)
    image = Image.new("RGB", (1024, 1024), tuple(rng.randrange(100, 256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(8, 16)):
        x0, y0 = rng.randrange(1024), rng.randrange(1024)
        box = (x0, y0, x0 + rng.randint(40, 512), y0 + rng.randint(40, 512))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape(box, fill=tuple(rng.randrange(256) for _ in range(3)))
    pixels = np.asarray(image, dtype=np.int16) + noise.integers(-8, 9, (1024, 1024, 1), np.int16)
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_realistic(n, snapshot_dir):
    """A hub-format snapshot of ``n`` instances of 3 images, spread over all cells."""
    import datasets

    from mirsafety.core.taxonomy import CATEGORIES, RELATIONS
    from mirsafety.data.sample import HUB_FEATURES, PLACEHOLDER, hub_parquet_path

    with ProcessPoolExecutor(mp_context=multiprocessing.get_context("spawn")) as executor:
        pictures = list(executor.map(noisy_png, range(3 * n)))
    cells = [(c, r) for c in CATEGORIES for r in RELATIONS]
    records = []
    for i in range(n):
        category, relation = cells[i % len(cells)]
        keywords = [f"object{3 * i + k}" for k in range(3)]
        records.append({
            "id": i // len(cells) + 1, "category": category, "relationship_type": relation,
            "original_question": f"{PLACEHOLDER} Seed question #{i + 1} ({category}).",
            "revised_prompt": f"{PLACEHOLDER} Look at the 3 pictures ({', '.join(keywords)}) "
                              f"and describe how they are linked ({relation}).",
            "image_descriptions": [f"A drawn scene with a {k}." for k in keywords],
            "image_keywords": keywords, "num_images": 3,
            "images": [{"bytes": pictures[3 * i + k], "path": None} for k in range(3)],
            "iteration": 1,
        })
    path = hub_parquet_path(snapshot_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(records, features=HUB_FEATURES).to_parquet(str(path))
    return path


def write_cases(tmp, instances):
    """Write both sources; return (name, instances, source dir, parquet, prepare arguments)."""
    import datasets
    import yaml

    from mirsafety.data.prepare import expected_counts
    from mirsafety.data.sample import write_sample

    datasets.disable_progress_bars()
    spec = yaml.safe_load((REPO / "resources" / "sample_spec.yaml").read_text())
    sample = expected_counts("sample", spec)
    return [
        ("sample", sample["total"], tmp / "sample", write_sample(spec, tmp / "sample"),
         ("sample", sample, True)),
        ("realistic", instances, tmp / "realistic", write_realistic(instances, tmp / "realistic"),
         ("mir", expected_counts("mir"), False)),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=60, help="instances in case realistic")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (median)")
    options = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        tmp = Path(tmp)
        print(f"writing data under {tmp} ...", file=sys.stderr)
        cases = fresh(write_cases, tmp, options.instances)
        for name, n, source, parquet, extra in cases:
            print(f"measuring {name} ...", file=sys.stderr)
            prep = measure("prepare", (source, tmp / "out" / "prepared", *extra), options.repeats)
            base = measure("baseline", (source, tmp / "out" / "copied"), options.repeats)
            rows.append((name, n, parquet.stat().st_size, prep, base))

    print(f"\n`prepare` vs baseline (pyarrow iter_batches, bytes written unchanged); median of "
          f"{options.repeats} run(s), each in a fresh process; {os.cpu_count()} CPU(s)\n")
    print("| case | instances | images | parquet MiB | prepare s | baseline s | prepare/baseline "
          "| prepare peak RSS MiB | baseline peak RSS MiB | prepared output MiB |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for name, n, size, prep, base in rows:
        print(f"| {name} | {n} | {prep['images']} | {size / MIB:.1f} | {prep['s']:.2f} | "
              f"{base['s']:.2f} | {prep['s'] / base['s']:.1f}x | {prep['mib']:.0f} | "
              f"{base['mib']:.0f} | {prep['bytes'] / MIB:.1f} |")

    name, n, size, prep, base = rows[-1]
    scale = FULL_INSTANCES / n
    print(f"\nProjection to the full benchmark ({FULL_INSTANCES:,} instances, assuming a mean of "
          f"3 images of ~1 MB at 1024x1024 each, i.e. ~{3 * FULL_INSTANCES:,} images), linear in "
          f"case {name}'s per-instance figures:\n")
    print("| full benchmark | prepare | baseline |")
    print("|---|--:|--:|")
    print(f"| time per instance | {1000 * prep['s'] / n:.1f} ms | {1000 * base['s'] / n:.1f} ms |")
    print(f"| projected time | {prep['s'] * scale:.0f} s ({prep['s'] * scale / 60:.1f} min) | "
          f"{base['s'] * scale:.0f} s ({base['s'] * scale / 60:.1f} min) |")
    print(f"| projected disk written | {prep['bytes'] * scale / 1024**3:.2f} GiB | "
          f"{base['bytes'] * scale / 1024**3:.2f} GiB |")
    print(f"| projected source parquet | {size * scale / 1024**3:.2f} GiB | (same) |")
    print("\nPeak RSS is not extrapolated: both readers hold one parquet row group at a time "
          "(`datasets` writes row groups of at most ~100 MB), so it does not grow with N.")


if __name__ == "__main__":
    main()
