"""Multi-image reasoning items: the embedded procedural set, and a reader for MuirBench.

Both write the same layout, which the rest of the reasoning stage reads::

    {set_dir}/items.jsonl      one item per line (keys sorted), in a fixed order
    {set_dir}/images/...       the items' images; ``images`` in an item are paths relative to
                               ``set_dir``

An item is ``{"id", "benchmark", "task", "question", "options": [str, ...], "answer": "B",
"images": ["images/....png", ...], "meta": {...}}``; ``options[k]`` is the option of letter
``"ABCD..."[k]``.

The embedded set (``benchmark`` = the spec's ``name``) is drawn with Pillow from
``resources/reasoning_spec.yaml`` alone: same spec and Pillow version, byte-identical files. Every
task needs the images compared with each other; the answer letters of each task are spread
evenly over A-D (exactly, when ``items_per_task`` is a multiple of 4); no two images of the set are
identical. It is a synthetic capability probe, not MuirBench: it measures what our models do on
simple cross-image comparisons under our prompt and extraction, offline.
"""

import hashlib
import io
import json
import math
import random
from pathlib import Path

from PIL import Image, ImageDraw

from mirsafety.core.records import write_atomic

LETTERS = "ABCDEFGHIJ"

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 150, 50),
    "blue": (40, 80, 220),
    "yellow": (235, 195, 20),
    "purple": (140, 50, 170),
    "orange": (245, 125, 20),
}
SHAPES = ("circle", "square", "triangle", "diamond", "star")
PLURAL = {s: s + "s" for s in SHAPES}

#: Tries before giving up on drawing an item whose images are all new to the set.
MAX_REDRAWS = 50


# --- drawing ----------------------------------------------------------------------------------

def _polygon(shape: str, box) -> list[tuple[float, float]]:
    x0, y0, x1, y1 = box
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    if shape == "triangle":
        return [(cx, y0), (x1, y1), (x0, y1)]
    if shape == "diamond":
        return [(cx, y0), (x1, cy), (cx, y1), (x0, cy)]
    # star: ten points, alternating outer and inner radius
    points = []
    for k in range(10):
        angle = -math.pi / 2 + k * math.pi / 5
        scale = 1.0 if k % 2 == 0 else 0.45
        points.append((cx + rx * scale * math.cos(angle), cy + ry * scale * math.sin(angle)))
    return points


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, colour: str, box) -> None:
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse(box, fill=fill, outline="black")
    elif shape == "square":
        draw.rectangle(box, fill=fill, outline="black")
    else:
        draw.polygon(_polygon(shape, box), fill=fill, outline="black")


def draw_objects(objects: list[tuple[str, str]], size, rng: random.Random) -> bytes:
    """A PNG of ``objects`` ((colour, shape) pairs), each in its own cell of a 3x3 grid, at a
    random size and offset inside the cell; a single object is drawn large, anywhere."""
    width, height = size
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    if len(objects) == 1:
        side = rng.uniform(0.3, 0.55) * min(width, height)
        x0 = rng.uniform(0, width - side - 1)
        y0 = rng.uniform(0, height - side - 1)
        colour, shape = objects[0]
        _draw_shape(draw, shape, colour, (x0, y0, x0 + side, y0 + side))
    else:
        if len(objects) > 9:
            raise ValueError("at most 9 objects fit the 3x3 grid")
        cell_w, cell_h = width / 3, height / 3
        for (colour, shape), cell in zip(objects, rng.sample(range(9), len(objects)), strict=False):
            side = rng.uniform(0.55, 0.85) * min(cell_w, cell_h)
            x0 = (cell % 3) * cell_w + rng.uniform(0, cell_w - side)
            y0 = (cell // 3) * cell_h + rng.uniform(0, cell_h - side)
            _draw_shape(draw, shape, colour, (x0, y0, x0 + side, y0 + side))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _a(phrase: str) -> str:
    """The phrase with its indefinite article ("an orange star")."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _image_options(count: int) -> list[str]:
    return [f"Image {k}" for k in range(1, count + 1)]


def _place(correct: str, distractors: list[str], index: int) -> list[str]:
    """The options with the correct one at ``index``."""
    options = list(distractors)
    options.insert(index, correct)
    return options


# --- task generators: (rng, answer index 0-3) -> question, options, image object lists, meta ---

def task_odd_one_out(rng: random.Random, answer: int):
    """Four single-object pictures; three show the same coloured shape, one differs."""
    colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    if rng.random() < 0.5:
        odd = (rng.choice([c for c in COLOURS if c != colour]), shape)
        differs = "colour"
    else:
        odd = (colour, rng.choice([s for s in SHAPES if s != shape]))
        differs = "shape"
    objects = [[(colour, shape)] for _ in range(4)]
    objects[answer] = [odd]
    question = ("Three of the four images show the same kind of object (same shape and same "
                "colour; size and position do not matter). Which image is the odd one out?")
    meta = {"common": f"{colour} {shape}", "odd": f"{odd[0]} {odd[1]}", "differs_in": differs}
    return question, _image_options(4), objects, meta


def task_count_across(rng: random.Random, answer: int):
    """3-4 pictures of 2-4 objects; how many pictures contain a given coloured shape?"""
    count_images = rng.choice([3, 4])
    start = 0 if count_images == 3 else rng.choice([0, 1])
    target_count = start + answer
    colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    # Distractors share the colour or the shape of the target, so both must be checked.
    near = ([(colour, s) for s in SHAPES if s != shape]
            + [(c, shape) for c in COLOURS if c != colour])
    others = [(c, s) for c in COLOURS for s in SHAPES if (c, s) != (colour, shape)]
    with_target = set(rng.sample(range(count_images), target_count))
    objects = []
    for k in range(count_images):
        n = rng.randint(2, 4)
        chosen = [rng.choice(near)] + [rng.choice(others) for _ in range(n - 1)]
        if k in with_target:
            chosen[rng.randrange(n)] = (colour, shape)
        rng.shuffle(chosen)
        objects.append(chosen)
    options = [str(v) for v in range(start, start + 4)]
    question = (f"Look at all {count_images} images. In how many of them is there "
                f"{_a(f'{colour} {shape}')}?")
    meta = {"target": f"{colour} {shape}", "count": target_count,
            "images_with_target": sorted(k + 1 for k in with_target)}
    return question, options, objects, meta


def task_sequence_order(rng: random.Random, answer: int):
    """3-4 pictures with different numbers of one coloured shape, shown shuffled; which
    ordering goes from fewest to most?"""
    count_images = rng.choice([3, 4])
    base = rng.choice([1, 2])
    colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    counts = [base + k for k in range(count_images)]
    shown = counts[:]
    rng.shuffle(shown)
    objects = [[(colour, shape)] * n for n in shown]
    order = sorted(range(count_images), key=lambda k: shown[k])

    def label(permutation):
        return ", ".join(f"Image {k + 1}" for k in permutation)

    correct = label(order)
    distractors: list[str] = []
    while len(distractors) < 3:
        permutation = list(range(count_images))
        rng.shuffle(permutation)
        text = label(permutation)
        if text != correct and text not in distractors:
            distractors.append(text)
    question = (f"Each image shows some {colour} {PLURAL[shape]}. Which ordering lists the "
                f"images from the fewest {PLURAL[shape]} to the most?")
    meta = {"counts_shown": shown, "colour": colour, "shape": shape}
    return question, _place(correct, distractors, answer), objects, meta


def task_match_description(rng: random.Random, answer: int):
    """Four pictures of two objects each; only one matches the description (the others swap
    the colours, or change one colour or one shape)."""
    c1, c2, c3 = rng.sample(list(COLOURS), 3)
    s1, s2, s3 = rng.sample(SHAPES, 3)
    target = [(c1, s1), (c2, s2)]
    distractors = [[(c2, s1), (c1, s2)], [(c1, s1), (c3, s2)], [(c1, s3), (c2, s2)]]
    if rng.random() < 0.5:
        distractors[1] = [(c3, s1), (c2, s2)]
    if rng.random() < 0.5:
        distractors[2] = [(c1, s1), (c2, s3)]
    rng.shuffle(distractors)
    objects = [o[:] for o in distractors]
    objects.insert(answer, target)
    for pair in objects:
        rng.shuffle(pair)
    description = f"{_a(f'{c1} {s1}')} and {_a(f'{c2} {s2}')}"
    question = f"Which image shows {description} (and nothing else)?"
    meta = {"description": description}
    return question, _image_options(4), objects, meta


def task_common_colour(rng: random.Random, answer: int):
    """Two pictures of three objects in three colours each; exactly one colour is in both."""
    shared, *rest = rng.sample(list(COLOURS), 5)
    first = [shared, rest[0], rest[1]]
    second = [shared, rest[2], rest[3]]
    objects = []
    for colours in (first, second):
        shapes = rng.sample(SHAPES, 3)
        pair = list(zip(colours, shapes, strict=True))
        rng.shuffle(pair)
        objects.append(pair)
    distractors = rng.sample(rest, 3)
    question = "Which colour appears in both images?"
    meta = {"shared": shared}
    return question, _place(shared, distractors, answer), objects, meta


def draw_large(objects: list[tuple[str, str]], size, rng: random.Random) -> bytes:
    """A PNG of one object drawn large (70-95% of the shorter side), anywhere: for tasks that
    must be seen at the smallest image sizes (the zoo's trained tiny twins)."""
    width, height = size
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    (colour, shape), = objects
    side = rng.uniform(0.7, 0.95) * min(width, height)
    x0 = rng.uniform(0, width - side - 1)
    y0 = rng.uniform(0, height - side - 1)
    _draw_shape(draw, shape, colour, (x0, y0, x0 + side, y0 + side))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def task_count_red(rng: random.Random, answer: int):
    """Three pictures of one large shape each; in how many is the shape red? (The options are
    always 0, 1, 2, 3; the other pictures show other colours.) Asked in one of ``PHRASINGS``."""
    others = [c for c in COLOURS if c != "red"]
    with_red = set(rng.sample(range(3), answer))
    objects = [[("red" if k in with_red else rng.choice(others), rng.choice(SHAPES))]
               for k in range(3)]
    meta = {"count": answer, "images_with_red": sorted(k + 1 for k in with_red)}
    return PHRASINGS["count_red"][0], ["0", "1", "2", "3"], objects, meta


#: Tasks asked in several phrasings of one question: item k of the set in phrasing k mod n, so
#: each phrasing gets an equal share. The zoo teaches a model some phrasings and not others,
#: which makes its accuracy a ramp in the share it was taught (resources/zoo.yaml).
PHRASINGS = {
    "count_red": (
        "Look at all 3 images. In how many of them is the shape red?",
        "How many of the 3 pictures show a red shape?",
        "Count the images whose shape is red.",
        "Across the three images, how many shapes are red?",
        "In how many of these pictures is the shape coloured red?",
    ),
}


def rephrased(item: dict, phrasing: int) -> dict:
    """``item`` asked in phrasing ``phrasing`` of its task (same images, options and answer)."""
    return {**item, "question": PHRASINGS[item["task"]][phrasing],
            "meta": {**item["meta"], "phrasing": phrasing}}


TASKS = {
    "odd_one_out": task_odd_one_out,
    "count_across": task_count_across,
    "sequence_order": task_sequence_order,
    "match_description": task_match_description,
    "common_colour": task_common_colour,
    "count_red": task_count_red,
}

#: Tasks whose pictures are drawn another way than ``draw_objects``.
DRAWERS = {"count_red": draw_large}


# --- the embedded set -------------------------------------------------------------------------

def _answer_indices(rng: random.Random, count: int) -> list[int]:
    """Letters A-D in equal shares (remainder drawn), in a random order."""
    indices = [k % 4 for k in range(count - count % 4)] + rng.sample(range(4), count % 4)
    rng.shuffle(indices)
    return indices


def make_items(spec: dict) -> list[tuple[dict, list[bytes]]]:
    """(item, image PNGs) for every task of the spec, in task order then item order.

    Each task draws from its own generator seeded by ``(seed, task)``, so adding a task leaves
    the others' items unchanged.
    """
    unknown = sorted(set(spec["tasks"]) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown reasoning task(s) {unknown}; known: {sorted(TASKS)}")
    size = tuple(spec["image_size"])
    seen: set[str] = set()
    out = []
    for task in spec["tasks"]:
        rng = random.Random(f"{spec['seed']}:{task}")
        for number, answer in enumerate(_answer_indices(rng, spec["items_per_task"])):
            for _ in range(MAX_REDRAWS):
                question, options, objects, meta = TASKS[task](rng, answer)
                draw = DRAWERS.get(task, draw_objects)
                pngs = [draw(o, size, rng) for o in objects]
                digests = [hashlib.sha256(p).hexdigest() for p in pngs]
                if len(set(digests)) == len(digests) and not seen & set(digests):
                    break
            else:
                raise RuntimeError(f"{task}: could not draw distinct images; enlarge image_size")
            seen.update(digests)
            item_id = f"{task}-{number:03d}"
            if task in PHRASINGS:
                phrasing = number % len(PHRASINGS[task])
                question, meta = PHRASINGS[task][phrasing], {**meta, "phrasing": phrasing}
            out.append(({
                "id": item_id,
                "benchmark": spec["name"],
                "task": task,
                "question": question,
                "options": options,
                "answer": LETTERS[answer],
                "images": [f"images/{item_id}_{k + 1}.png" for k in range(len(pngs))],
                "meta": meta,
            }, pngs))
    return out


def write_items(items: list[dict], set_dir) -> Path:
    """``items.jsonl`` (atomic, keys sorted) in ``set_dir``; returns its path."""
    path = Path(set_dir, "items.jsonl")
    write_atomic(path, "".join(json.dumps(i, ensure_ascii=False, sort_keys=True) + "\n"
                               for i in items))
    return path


def write_reasoning_set(spec: dict, set_dir) -> Path:
    """Draw the embedded set into ``set_dir`` (items.jsonl + images/); returns items.jsonl."""
    set_dir = Path(set_dir)
    (set_dir / "images").mkdir(parents=True, exist_ok=True)
    drawn = make_items(spec)
    for item, pngs in drawn:
        for relative, png in zip(item["images"], pngs, strict=True):
            (set_dir / relative).write_bytes(png)
    return write_items([item for item, _ in drawn], set_dir)


def load_spec(path) -> dict:
    import yaml

    spec = yaml.safe_load(Path(path).read_text())
    missing = {"name", "seed", "image_size", "items_per_task", "tasks"} - set(spec)
    if missing:
        raise ValueError(f"{path}: missing key(s) {sorted(missing)}")
    return spec


def measured_capability(benchmark: str) -> str:
    """The capability column of a score this workflow measured on ``benchmark``."""
    return f"measured:{benchmark}"


def benchmark_name(reasoning: dict) -> str:
    """The name the reasoning set's items carry: MuirBench's, or the embedded spec's ``name``.

    ``reasoning`` is the config's ``reasoning`` section. The workflow names the primary capability
    from this before any item exists, so it must agree with what the items will say.
    """
    if reasoning["benchmark"] == MUIRBENCH:
        return MUIRBENCH
    return load_spec(reasoning["spec"])["name"]


def read_items(set_dir) -> list[dict]:
    """The items of a set folder, checked: letters within the options, images present."""
    from mirsafety.core.records import read_jsonl

    set_dir = Path(set_dir)
    items = read_jsonl(set_dir / "items.jsonl")
    problems = []
    for item in items:
        letters = LETTERS[: len(item["options"])]
        if item["answer"] not in letters:
            problems.append(f"{item['id']}: answer {item['answer']!r} not among {list(letters)}")
        problems += [f"{item['id']}: missing image {p}" for p in item["images"]
                     if not (set_dir / p).is_file()]
    ids = [i["id"] for i in items]
    if len(set(ids)) != len(ids):
        problems.append("duplicate item ids")
    if problems:
        from mirsafety.core.errors import DataError

        raise DataError(f"{set_dir}: bad reasoning items", problems)
    return items


# --- MuirBench in its hub format --------------------------------------------------------------

#: The columns we assume the hub dataset MUIRBENCH/MUIRBENCH (split ``test``, 2,600 items) has,
#: as its dataset card and the lmms-eval task read them (not verified against a download here):
#: idx (string), task (string), image_relation (string), image_type (string), question (string;
#: may hold ``<image>`` placeholders), options (list of strings; an option may be ``<image>``),
#: answer (a letter, "A".."F"), image_list (list of images: ``{bytes, path}`` structs),
#: counterpart_idx (string, the paired answerable/unanswerable item). Only idx, task, question,
#: options, answer and image_list are required; the others are kept in ``meta`` when present.
#: The benchmark name MuirBench items carry (and so their capability, ``measured:muirbench``).
MUIRBENCH = "muirbench"
MUIRBENCH_REQUIRED = ("idx", "task", "question", "options", "answer", "image_list")
MUIRBENCH_META = ("image_relation", "image_type", "counterpart_idx")
IMAGE_PLACEHOLDER = "<image>"


def _number_placeholders(texts: list[str]) -> list[str]:
    """``<image>`` placeholders -> ``[Image k]``, numbered in reading order (question, then
    options), since the prompt gives every image first, in image_list order."""
    counter = 0
    out = []
    for text in texts:
        parts = text.split(IMAGE_PLACEHOLDER)
        rebuilt = parts[0]
        for part in parts[1:]:
            counter += 1
            rebuilt += f"[Image {counter}]" + part
        out.append(rebuilt.strip())
    return out


def _image_suffix(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as image:
        return {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp",
                "BMP": ".bmp"}.get(image.format, ".img")


def read_muirbench(source, set_dir, limit: int | None = None) -> Path:
    """Convert MuirBench parquet shards (a file, or a snapshot folder: every ``*.parquet`` below
    it, sorted) into a set folder; image bytes are written unchanged. Returns items.jsonl."""
    import pyarrow.parquet as pq

    source, set_dir = Path(source), Path(set_dir)
    files = [source] if source.is_file() else sorted(source.rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no parquet file at {source}")
    (set_dir / "images").mkdir(parents=True, exist_ok=True)
    items, problems = [], []
    for file in files:
        table = pq.read_table(file)
        missing = [c for c in MUIRBENCH_REQUIRED if c not in table.column_names]
        if missing:
            raise ValueError(f"{file}: not in MuirBench's format, missing column(s) {missing} "
                             f"(has {table.column_names})")
        for row in table.to_pylist():
            if limit is not None and len(items) >= limit:
                break
            idx = str(row["idx"])
            options = [str(o) for o in row["options"]]
            answer = str(row["answer"]).strip().strip("()").upper()
            if answer not in LETTERS[: len(options)]:
                problems.append(f"idx {idx}: answer {row['answer']!r} is not an option letter")
                continue
            question, *options = _number_placeholders([row["question"], *options])
            images = []
            for k, image in enumerate(row["image_list"]):
                data = image["bytes"] if isinstance(image, dict) else image
                if not data:
                    problems.append(f"idx {idx}: image {k + 1} has no bytes")
                    continue
                relative = f"images/muirbench-{idx}_{k + 1}{_image_suffix(data)}"
                (set_dir / relative).write_bytes(data)
                images.append(relative)
            items.append({
                "id": f"muirbench-{idx}",
                "benchmark": MUIRBENCH,
                "task": row["task"],
                "question": question,
                "options": options,
                "answer": answer,
                "images": images,
                "meta": {k: row[k] for k in ("idx", *MUIRBENCH_META) if k in row},
            })
    if problems:
        from mirsafety.core.errors import DataError

        raise DataError(f"{source}: bad MuirBench rows", problems)
    return write_items(items, set_dir)
