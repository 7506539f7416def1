"""Stage 6, reasoning capability: the embedded set, answer extraction, scoring, the MuirBench
reader, the published scores (one source per column) and the capability table."""

import hashlib
import io
import json
from collections import Counter
from pathlib import Path

import datasets
import pandas as pd
import pytest
import yaml
from PIL import Image

from mirsafety.core.errors import DataError
from mirsafety.models.backend import Backend, Result
from mirsafety.reasoning.item_set import (
    PHRASINGS,
    TASKS,
    load_spec,
    read_items,
    read_muirbench,
    rephrased,
    write_items,
    write_reasoning_set,
)
from mirsafety.reasoning.scores import (
    MEASURED_SOURCE,
    TABLE_COLUMNS,
    build_prompt,
    capability_table,
    evaluate,
    extract_choice,
    load_published,
    run_reasoning,
    score_results,
)

from conftest import REPO, hand_wilson, registry_entry

SPEC_PATH = REPO / "resources" / "reasoning_spec.yaml"
SMALL = {"name": "mir-reasoning-embedded", "seed": 3, "image_size": [64, 64],
         "items_per_task": 8, "tasks": list(TASKS)}


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def default_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("reasoning-set")
    write_reasoning_set(load_spec(SPEC_PATH), root)
    return root


@pytest.fixture
def small_set(tmp_path):
    write_reasoning_set(SMALL, tmp_path / "set")
    return tmp_path / "set"


# --- the embedded set -------------------------------------------------------------------------

def test_set_is_byte_identical_when_drawn_twice(default_set, tmp_path):
    write_reasoning_set(load_spec(SPEC_PATH), tmp_path / "again")
    first, second = files_of(default_set), files_of(tmp_path / "again")
    assert first.keys() == second.keys() and first == second
    assert len(first) > 100


def test_every_task_present_answers_even_images_distinct(default_set):
    spec = load_spec(SPEC_PATH)
    items = read_items(default_set)
    assert len(items) == spec["items_per_task"] * len(spec["tasks"])
    # every task but the zoo's count_red (resources/reasoning_spec_zoo.yaml)
    assert set(spec["tasks"]) == set(TASKS) - {"count_red"}
    assert [i["task"] for i in items] == [t for t in spec["tasks"]
                                          for _ in range(spec["items_per_task"])]
    for task in spec["tasks"]:
        letters = Counter(i["answer"] for i in items if i["task"] == task)
        assert letters == {letter: spec["items_per_task"] // 4 for letter in "ABCD"}, task
    digests = [hashlib.sha256((default_set / p).read_bytes()).hexdigest()
               for i in items for p in i["images"]]
    assert len(digests) == len(set(digests))
    for item in items:
        assert 2 <= len(item["images"]) <= 4
        assert len(item["options"]) == 4 and len(set(item["options"])) == 4
        assert item["benchmark"] == spec["name"]
        for path in item["images"]:
            assert not Path(path).is_absolute()
            with Image.open(default_set / path) as image:
                assert image.size == tuple(spec["image_size"])
    per_task_images = {t: {len(i["images"]) for i in items if i["task"] == t} for t in TASKS}
    assert per_task_images["common_colour"] == {2}
    assert per_task_images["odd_one_out"] == {4}
    assert per_task_images["count_across"] <= {3, 4}


def test_answers_agree_with_what_was_drawn(small_set):
    for item in read_items(small_set):
        chosen = item["options"]["ABCD".index(item["answer"])]
        meta = item["meta"]
        if item["task"] == "count_across":
            assert chosen == str(meta["count"]) == str(len(meta["images_with_target"]))
        elif item["task"] == "count_red":
            assert chosen == str(meta["count"]) == str(len(meta["images_with_red"]))
        elif item["task"] == "common_colour":
            assert chosen == meta["shared"]
        elif item["task"] == "sequence_order":
            order = [int(k.split()[-1]) for k in chosen.split(", ")]
            assert [meta["counts_shown"][k - 1] for k in order] == sorted(meta["counts_shown"])
        else:
            assert chosen == f"Image {'ABCD'.index(item['answer']) + 1}"


def test_odd_one_out_pixels_single_out_the_answer(small_set):
    """The odd image is the only one whose shape colour differs, or whose shape does."""
    for item in read_items(small_set):
        if item["task"] != "odd_one_out" or item["meta"]["differs_in"] != "colour":
            continue
        colours = []
        for path in item["images"]:
            with Image.open(small_set / path) as image:
                counts = image.convert("RGB").getcolors(maxcolors=1 << 16)
            colours.append({c for n, c in counts if n > 20} - {(255, 255, 255)})
        odd = "ABCD".index(item["answer"])
        others = [c for k, c in enumerate(colours) if k != odd]
        assert others[0] == others[1] == others[2] and colours[odd] != others[0]


ZOO_SPEC_PATH = REPO / "resources" / "reasoning_spec_zoo.yaml"


def test_count_red_is_balanced_deterministic_and_read_off_the_pixels(tmp_path):
    """The zoo's task: letters exactly balanced, the same bytes when drawn twice, the other
    tasks' items untouched by it, and the answer the number of images whose shape is red."""
    spec = load_spec(ZOO_SPEC_PATH)
    assert spec["tasks"] == ["count_red"]
    write_reasoning_set(spec, tmp_path / "one")
    write_reasoning_set(spec, tmp_path / "two")
    assert files_of(tmp_path / "one") == files_of(tmp_path / "two")
    items = read_items(tmp_path / "one")
    assert len(items) == spec["items_per_task"]
    assert Counter(i["answer"] for i in items) == dict.fromkeys("ABCD", spec["items_per_task"] // 4)
    # item k in phrasing k mod 5, all with one option list: nothing but the images tells the
    # answer, and every phrasing is asked equally often
    assert [i["meta"]["phrasing"] for i in items] == [k % 5 for k in range(len(items))]
    assert [i["question"] for i in items] == [PHRASINGS["count_red"][k % 5]
                                              for k in range(len(items))]
    assert len(set(PHRASINGS["count_red"])) == 5
    assert {tuple(i["options"]) for i in items} == {("0", "1", "2", "3")}
    red = (220, 30, 30)
    for item in items:
        assert item["options"] == ["0", "1", "2", "3"] and len(item["images"]) == 3
        shown = []
        for path in item["images"]:
            with Image.open(tmp_path / "one" / path) as image:
                assert image.size == tuple(spec["image_size"])
                counts = image.convert("RGB").getcolors(maxcolors=1 << 16)
            # one large shape: its fill is the most common colour besides white and black
            fill = max((n, c) for n, c in counts if c not in {(255, 255, 255), (0, 0, 0)})[1]
            shown.append(fill == red)
        assert "ABCD".index(item["answer"]) == sum(shown)
    # adding the task leaves the other tasks' draws byte-identical
    write_reasoning_set({**SMALL, "tasks": ["odd_one_out"]}, tmp_path / "a")
    write_reasoning_set({**SMALL, "tasks": ["odd_one_out", "count_red"]}, tmp_path / "b")
    first = files_of(tmp_path / "a")
    second = files_of(tmp_path / "b")
    assert {k: v for k, v in second.items() if "count_red" not in k and k != "items.jsonl"} \
        == {k: v for k, v in first.items() if k != "items.jsonl"}


def test_rephrased_changes_only_the_question_and_its_phrasing(small_set):
    """The zoo asks a count_red item in another phrasing: same id, images, options and answer;
    the drawn item itself is left as it was."""
    item = next(i for i in read_items(small_set) if i["task"] == "count_red")
    drawn = json.loads(json.dumps(item))
    for phrasing, question in enumerate(PHRASINGS["count_red"]):
        asked = rephrased(item, phrasing)
        assert asked["question"] == question and asked["meta"]["phrasing"] == phrasing
        assert {k: v for k, v in asked.items() if k not in ("question", "meta")} \
            == {k: v for k, v in item.items() if k not in ("question", "meta")}
        assert {k: v for k, v in asked["meta"].items() if k != "phrasing"} \
            == {k: v for k, v in item["meta"].items() if k != "phrasing"}
    assert item == drawn


def test_phrasings_leave_the_default_set_as_it_was(default_set):
    """Only tasks with phrasings carry one; the default set (which has none) is the very draw it
    was before count_red and its phrasings were added. The digest pins items.jsonl (text only,
    so it does not depend on Pillow's PNG encoder); change it only with the set's version."""
    items = read_items(default_set)
    assert not set(PHRASINGS) & {i["task"] for i in items}
    assert all("phrasing" not in i["meta"] for i in items)
    assert hashlib.sha256((default_set / "items.jsonl").read_bytes()).hexdigest() \
        == "52954109058eb63a3470dbf48530a41da011cefe34d57ad718347727032ba932"


def test_bad_items_are_refused(small_set):
    items = read_items(small_set)
    items[0]["answer"] = "E"
    (small_set / items[1]["images"][0]).unlink()
    write_items(items, small_set)
    with pytest.raises(DataError) as error:
        read_items(small_set)
    assert len(error.value.problems) == 2


def test_unknown_task_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown reasoning task"):
        write_reasoning_set({**SMALL, "tasks": ["odd_one_out", "telepathy"]}, tmp_path)


# --- prompt and extraction --------------------------------------------------------------------

def test_prompt_lists_question_options_and_instruction():
    item = {"question": "Which colour appears in both images?",
            "options": ["red", "blue", "green", "yellow"]}
    assert build_prompt(item) == ("Which colour appears in both images?\n\nA. red\nB. blue\n"
                                  "C. green\nD. yellow\n\nAnswer with the letter of the correct "
                                  "option (A, B, C or D) only.")


@pytest.mark.parametrize("reply, expected", [
    ("B", "B"),
    ("(B)", "B"),
    ("B.", "B"),
    (" b ", "B"),
    ("[C]", "C"),
    ("**D**", "D"),
    ("Answer: B", "B"),
    ("answer: c", "C"),
    ("The answer is B", "B"),
    ("The answer is B.", "B"),
    ("The correct answer is (C) because the circle is blue.", "C"),
    ("The correct option is D", "D"),
    ("Option A is correct.", "A"),
    ("B. Image 2", "B"),
    ("(B) Image 2, since it is the only green one.", "B"),
    ("C: 3", "C"),
    ("I think it is (A).", "A"),
    ("<think>Maybe A, or C?</think>B", "B"),
    ("<think>long thoughts</think>The answer is D.", "D"),
    ("<answer>C</answer>", "C"),
    # ambiguous, absent or impossible -> None
    ("A or B", None),
    ("A, C", None),
    ("The answer is A. No wait, the answer is C.", None),
    ("B. Image 2. The answer is C.", None),
    ("Either (A) or (D).", None),
    ("The second image is different.", None),
    ("A red circle appears in both images.", None),
    ("", None),
    ("E", None),
    ("The answer is F.", None),
    ("<think>The answer is B</think>", None),
])
def test_extract_choice(reply, expected):
    assert extract_choice(reply, "ABCD") == expected


def test_extract_choice_respects_option_count_and_none():
    assert extract_choice("C", "AB") is None
    assert extract_choice("E", "ABCDE") == "E"
    assert extract_choice(None, "ABCD") is None


# --- scoring ----------------------------------------------------------------------------------

def make_items(n=8):
    tasks = ["t1", "t2"]
    return [{"id": f"i{k}", "benchmark": "b", "task": tasks[k % 2], "question": "q",
             "options": ["w", "x", "y", "z"], "answer": "ABCD"[k % 4], "images": []}
            for k in range(n)]


def test_evaluate_counts_correct_wrong_unparsed_failed():
    items = make_items(8)
    replies = {"i0": "A", "i1": "The answer is B", "i2": "D", "i3": "no idea",
               "i4": "(A)", "i5": "A or B", "i6": None, "i7": "<think>hmm</think>D"}
    results = [Result(u, "failed", error="boom") if r is None else Result(u, "ok", raw_output=r)
               for u, r in replies.items()]
    summary = evaluate(results, items)
    assert summary["n"] == 8
    assert summary["n_correct"] == 4          # i0, i1, i4, i7
    assert summary["n_wrong_parsed"] == 1     # i2
    assert summary["n_unparsed"] == 2         # i3, i5
    assert summary["n_failed"] == 1           # i6
    assert (summary["n_correct"] + summary["n_wrong_parsed"] + summary["n_unparsed"]
            + summary["n_failed"]) == summary["n"]
    assert summary["accuracy"] == 50.0
    assert (summary["ci_low"], summary["ci_high"]) == pytest.approx([100 * v for v in hand_wilson(4, 8)])
    assert summary["ci_method"] == "wilson" and summary["chance_accuracy"] == 25.0
    assert summary["benchmark"] == "b"
    t1, t2 = summary["per_task"]["t1"], summary["per_task"]["t2"]   # even / odd items
    assert (t1["n"], t1["n_correct"], t1["n_wrong_parsed"], t1["n_unparsed"], t1["n_failed"]) == (
        4, 2, 1, 0, 1)
    assert (t2["n"], t2["n_correct"], t2["n_wrong_parsed"], t2["n_unparsed"], t2["n_failed"]) == (
        4, 2, 0, 2, 0)
    assert t1["accuracy"] == 50.0
    assert summary["predicted"] == {"A": 2, "B": 1, "D": 2}


def test_a_partial_or_foreign_run_is_refused():
    items = make_items(3)
    with pytest.raises(ValueError, match="1 item"):
        score_results([Result("i0", "ok", raw_output="A"), Result("i1", "ok", raw_output="B")],
                      items)
    with pytest.raises(ValueError, match="unknown"):
        score_results([Result(u, "ok", raw_output="A") for u in ("i0", "i1", "i2", "zz")], items)


# --- running a model: scripted backend (resume), then a real tiny model ----------------------

class ScriptedBackend(Backend):
    """Answers each item's gold letter, except: wrong letters, gibberish, and failures."""

    def __init__(self, answers: dict, fail=()):
        self.answers, self.fail, self.seen = answers, set(fail), []

    def generate(self, requests):
        self.seen += [r.uid for r in requests]
        for request in requests:
            assert request.prompt.endswith("only.") and 2 <= len(request.images) <= 4
        return [Result(r.uid, "failed", error="scripted") if r.uid in self.fail
                else Result(r.uid, "ok", raw_output=self.answers[r.uid]) for r in requests]


def scripted_model(tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir(exist_ok=True)
    (weights / "config.json").write_text("{}")
    return registry_entry({"backend": "transformers", "weights": {"path": str(weights)},
                           "batch_size": 3})


def test_run_writes_records_and_resumes_only_failed_items(small_set, tmp_path):
    items = read_items(small_set)
    answers = {i["id"]: f"The answer is {i['answer']}." for i in items}
    answers[items[0]["id"]] = "gibberish"
    wrong = items[1]
    answers[wrong["id"]] = "ABCD"[("ABCD".index(wrong["answer"]) + 1) % 4]
    model = scripted_model(tmp_path)
    out = tmp_path / "out"
    failing = items[2]["id"]
    first = ScriptedBackend(answers, fail=[failing])
    summary = run_reasoning("scripted", model, small_set, out, backend=first)
    assert len(first.seen) == len(items)
    assert summary["n"] == len(items) and summary["n_failed"] == 1
    assert summary["n_unparsed"] == 1 and summary["n_wrong_parsed"] == 1
    assert summary["n_correct"] == len(items) - 3
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert [r["uid"] for r in records] == [i["id"] for i in items]
    assert {"uid", "raw_output", "extracted", "correct", "status", "gold"} <= set(records[0])
    assert records[2]["status"] == "failed" and records[2]["correct"] is False
    assert json.loads((out / "summary.json").read_text())["n_correct"] == summary["n_correct"]

    again = ScriptedBackend(answers)
    summary = run_reasoning("scripted", model, small_set, out, backend=again)
    assert again.seen == [failing]
    assert summary["n_failed"] == 0 and summary["n_correct"] == len(items) - 2


def test_tiny_model_end_to_end(tiny_models, tmp_path):
    write_reasoning_set({**SMALL, "items_per_task": 4}, tmp_path / "set")
    items = read_items(tmp_path / "set")
    write_items([i for i in items if i["id"].endswith("-000")], tmp_path / "set")
    model = registry_entry({"backend": "transformers", "dtype": "float32",
                            "weights": {"path": str(tiny_models["tiny-qwen2.5-vl-s"])},
                            "system_prompt": "You are a helpful assistant.",
                            "decoding": {"max_new_tokens": 8}, "batch_size": 2})
    summary = run_reasoning("tiny-qwen2.5-vl-s", model, tmp_path / "set", tmp_path / "out")
    assert summary["n"] == len(TASKS) == len(summary["per_task"])
    assert (summary["n_correct"] + summary["n_wrong_parsed"] + summary["n_unparsed"]
            + summary["n_failed"]) == summary["n"]
    assert summary["status_counts"].get("ok", 0) + summary["n_failed"] == summary["n"]
    assert 0 <= summary["accuracy"] <= 100
    assert summary["ci_low"] <= summary["accuracy"] <= summary["ci_high"]
    records = (tmp_path / "out" / "records.jsonl").read_text().splitlines()
    assert len(records) == summary["n"]


# --- MuirBench in its hub format --------------------------------------------------------------

MUIRBENCH_FEATURES = datasets.Features({
    "idx": datasets.Value("string"),
    "task": datasets.Value("string"),
    "image_relation": datasets.Value("string"),
    "image_type": datasets.Value("string"),
    "question": datasets.Value("string"),
    "options": datasets.List(datasets.Value("string")),
    "answer": datasets.Value("string"),
    "image_list": datasets.List(datasets.Image()),
    "counterpart_idx": datasets.Value("string"),
})


def jpeg(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 16), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def muir_rows():
    return [
        {"idx": "1", "task": "Image-Text Matching", "image_relation": "Independent",
         "image_type": "Photograph", "question": "Which image shows a red square? <image>",
         "options": ["<image>", "<image>", "None of the choices provided"], "answer": "B",
         "image_list": [{"bytes": jpeg("white"), "path": None},
                        {"bytes": jpeg("blue"), "path": None},
                        {"bytes": jpeg("red"), "path": None}],
         "counterpart_idx": "2"},
        {"idx": "2", "task": "Counting", "image_relation": "Narrative",
         "image_type": "Drawing", "question": "How many cats are there in total?",
         "options": ["1", "2", "3", "4", "5"], "answer": "E",
         "image_list": [{"bytes": jpeg("green"), "path": None},
                        {"bytes": jpeg("gray"), "path": None}],
         "counterpart_idx": "1"},
    ]


def write_muir(rows, root: Path) -> Path:
    path = root / "data" / "test-00000-of-00001.parquet"
    path.parent.mkdir(parents=True)
    datasets.Dataset.from_list(rows, features=MUIRBENCH_FEATURES).to_parquet(str(path))
    return root


def test_muirbench_reader_on_a_local_hub_parquet(tmp_path):
    snapshot = write_muir(muir_rows(), tmp_path / "snapshot")
    read_muirbench(snapshot, tmp_path / "muir")
    items = read_items(tmp_path / "muir")
    assert [i["id"] for i in items] == ["muirbench-1", "muirbench-2"]
    first, second = items
    assert first["question"] == "Which image shows a red square? [Image 1]"
    assert first["options"] == ["[Image 2]", "[Image 3]", "None of the choices provided"]
    assert first["answer"] == "B" and first["task"] == "Image-Text Matching"
    assert first["benchmark"] == "muirbench"
    assert first["meta"] == {"idx": "1", "image_relation": "Independent",
                             "image_type": "Photograph", "counterpart_idx": "2"}
    assert (tmp_path / "muir" / first["images"][2]).read_bytes() == jpeg("red")
    assert first["images"][0].endswith(".jpg")
    assert second["answer"] == "E" and len(second["options"]) == 5
    prompt = build_prompt(second)
    assert "E. 5" in prompt and "(A, B, C, D or E)" in prompt
    summary = evaluate([Result("muirbench-1", "ok", raw_output="B"),
                        Result("muirbench-2", "ok", raw_output="E")], items)
    assert summary["accuracy"] == 100.0 and set(summary["per_task"]) == {
        "Image-Text Matching", "Counting"}


def test_muirbench_reader_refuses_other_formats_and_bad_answers(tmp_path):
    rows = muir_rows()
    rows[1]["answer"] = "G"
    with pytest.raises(DataError, match="bad MuirBench rows"):
        read_muirbench(write_muir(rows, tmp_path / "a"), tmp_path / "out-a")
    path = tmp_path / "b" / "x.parquet"
    path.parent.mkdir()
    pd.DataFrame({"idx": ["1"], "question": ["q"]}).to_parquet(path)
    with pytest.raises(ValueError, match="missing column"):
        read_muirbench(path, tmp_path / "out-b")


# --- published scores -------------------------------------------------------------------------

CSV_ROWS = [
    # model, benchmark, score, source, note
    ("Alpha-Instruct", "MuirBench", "50.0", "Paper X Table 4 (x)", "label Alpha"),
    ("Alpha-Instruct", "MuirBench", "55.0", "Paper Y Table 1", "label Alpha"),
    ("Beta", "MuirBench", "60.0", "Paper X Table 4 (x)", "label Beta"),
    ("Gamma", "MuirBench", "70.0", "Paper Y Table 1", "label Gamma"),
    ("Alpha-Instruct", "BLINK", "40.0", "Paper Y Table 1", "setting one"),
    ("Alpha-Instruct", "BLINK", "42.0", "Paper Y Table 1", "setting two"),
    ("Beta", "BLINK", "45.0", "Paper Y Table 1", "setting one"),
    ("Beta", "BLINK", "47.0", "Paper Y Table 1", "setting two"),
    ("Gamma", "BLINK", "30.0", "Paper Y Table 1", "only row"),
    ("Gamma", "MMIU", "33.0", "Report Z", ""),
]


@pytest.fixture
def published_files(tmp_path):
    csv = tmp_path / "scores.csv"
    pd.DataFrame(CSV_ROWS, columns=["model", "benchmark", "score", "source", "note"]).to_csv(
        csv, index=False)
    sources = {"version": 1, "columns": {
        "MuirBench": {"benchmark": "MuirBench", "role": "primary",
                      "sources": ["Paper Q", "Paper X Table 4", "Paper Y"]},
        "BLINK": {"benchmark": "BLINK", "role": "robustness", "sources": ["Paper Y"],
                  "prefer_note": ["setting two"]},
        "MMIU": {"benchmark": "MMIU", "role": "robustness", "sources": ["Paper X"]},
        "MuirBench@Y": {"benchmark": "MuirBench", "role": "alternate", "sources": ["Paper Y"]},
    }}
    aliases = {"version": 1, "aliases": {"alpha": "Alpha-Instruct", "beta": "Beta",
                                         "gamma": "Gamma", "delta": None}}
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(sources, sort_keys=False))
    (tmp_path / "aliases.yaml").write_text(yaml.safe_dump(aliases, sort_keys=False))
    return csv, tmp_path / "sources.yaml", tmp_path / "aliases.yaml"


def test_one_source_per_column_by_the_priority_rule(published_files):
    frame = load_published(*published_files, models=["alpha", "beta", "gamma", "delta", "eps"])
    assert list(frame.columns[:5]) == ["model", "benchmark", "score", "source", "note"]
    assert (frame.groupby("benchmark")["source"].nunique() == 1).all()
    muir = frame[frame["benchmark"] == "MuirBench"].set_index("model")["score"].to_dict()
    # "Paper Q" matches nothing; "Paper X Table 4" wins: gamma (only in Paper Y) gets no score.
    assert muir == {"alpha": 50.0, "beta": 60.0}
    alternate = frame[frame["benchmark"] == "MuirBench@Y"].set_index("model")["score"].to_dict()
    assert alternate == {"alpha": 55.0, "gamma": 70.0}
    blink = frame[frame["benchmark"] == "BLINK"].set_index("model")["score"].to_dict()
    assert blink == {"alpha": 42.0, "beta": 47.0, "gamma": 30.0}   # prefer_note settles ties
    assert frame.attrs["sources"]["MMIU"] is None
    assert frame.attrs["sources"]["MuirBench"] == "Paper X Table 4 (x)"
    assert frame.attrs["missing"]["MuirBench"] == ["gamma"]
    assert frame.attrs["unmatched"] == ["delta", "eps"]
    assert frame.attrs["no_alias"] == ["eps"]
    assert set(frame["published_model"]) == {"Alpha-Instruct", "Beta", "Gamma"}
    # Nothing averaged: every score is a CSV score.
    assert set(frame["score"]) <= {float(r[2]) for r in CSV_ROWS}


def test_unsettled_duplicates_are_reported_not_guessed(published_files):
    csv, sources, aliases = published_files
    spec = yaml.safe_load(sources.read_text())
    del spec["columns"]["BLINK"]["prefer_note"]
    sources.write_text(yaml.safe_dump(spec))
    frame = load_published(csv, sources, aliases)
    blink = frame[frame["benchmark"] == "BLINK"]
    assert blink.set_index("model")["score"].to_dict() == {"gamma": 30.0}
    assert frame.attrs["ambiguous"] == ["alpha / BLINK", "beta / BLINK"]


def test_prefix_matching_two_sources_and_unknown_alias_are_errors(published_files):
    csv, sources, aliases = published_files
    spec = yaml.safe_load(sources.read_text())
    spec["columns"]["MuirBench"]["sources"] = ["Paper"]
    sources.write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match="matches 2 sources"):
        load_published(csv, sources, aliases)
    aliases.write_text(yaml.safe_dump({"aliases": {"alpha": "Alpha"}}))   # no fuzzy matching
    with pytest.raises(ValueError, match="not in"):
        load_published(csv, published_files[1], aliases)


def test_shipped_published_files_cover_the_study_registry():
    from mirsafety.reasoning.scores import PUBLISHED_COLUMNS, read_published_csv

    # The repository's own copy is the reference table: five columns, a source on every row,
    # a number for every score.
    csv = REPO / "resources" / "published_reasoning_scores.csv"
    table = read_published_csv(csv)
    assert list(table.columns) == PUBLISHED_COLUMNS
    assert (table["source"].str.strip() != "").all() and table["score"].notna().all()
    study = list(yaml.safe_load((REPO / "config" / "study.yaml").read_text())["models"])
    frame = load_published(csv, REPO / "resources" / "published_sources.yaml",
                           REPO / "resources" / "model_aliases.yaml", models=study)
    assert frame.attrs["no_alias"] == []
    assert (frame.groupby("benchmark")["source"].nunique() == 1).all()
    assert {"MuirBench", "BLINK", "MMIU", "MIRB", "Mantis-Eval", "MMMU-val"} <= set(
        frame["benchmark"])
    assert frame.attrs["roles"]["MuirBench"] == "primary"
    assert frame.attrs["ambiguous"] == []
    assert "Idefics3-8B" in frame.attrs["unmatched"]
    scores = frame.set_index(["model", "benchmark"])["score"]
    assert scores["Qwen2.5-VL-7B", "MuirBench"] == 59.6      # InternVL3 Table 4, not GLM's 53.2
    assert scores["Qwen2.5-VL-7B", "MuirBench@GLM-4.1V-table"] == 53.2
    assert scores["Kimi-VL-A3B-Thinking", "MuirBench@GLM-4.5V-table"] == 63.8   # the 2506 weights
    config = list(yaml.safe_load((REPO / "config.yaml").read_text())["models"])
    aliases = yaml.safe_load((REPO / "resources" / "model_aliases.yaml").read_text())["aliases"]
    assert set(config) <= set(aliases)


# --- the capability table ---------------------------------------------------------------------

def test_capability_table_keeps_measured_and_published_apart(published_files):
    published = load_published(*published_files)
    items = make_items(4)
    measured = {"alpha": evaluate([Result(i["id"], "ok", raw_output=i["answer"])
                                   for i in items], items),
                "zeta": evaluate([Result(i["id"], "ok", raw_output="A") for i in items], items)}
    table = capability_table(measured, published, ["alpha", "beta", "zeta", "delta"])
    assert list(table.columns) == TABLE_COLUMNS
    first = table.iloc[0]
    assert (first["model"], first["capability"], first["score"], first["n_items"],
            first["source"]) == ("alpha", "measured:b", 100.0, 4.0, MEASURED_SOURCE)
    assert first["ci_low"] == pytest.approx(100 * hand_wilson(4, 4)[0])
    published_rows = table[table["capability"].str.startswith("published:")]
    assert published_rows["ci_low"].isna().all() and published_rows["n_items"].isna().all()
    assert set(published_rows["capability"]) == {"published:MuirBench", "published:BLINK",
                                                 "published:MuirBench@Y"}
    assert (published_rows["source"] != MEASURED_SOURCE).all()
    assert table[table["model"] == "zeta"]["score"].tolist() == [25.0]
    assert "delta" not in set(table["model"])
    assert list(dict.fromkeys(table["model"])) == ["alpha", "beta", "zeta"]


@pytest.mark.parametrize("benchmark", ["muirbench", "embedded"])
def test_primary_capability_name_agrees_with_the_scored_items(benchmark, tmp_path):
    """The workflow names the primary capability from the config before any item exists
    (common.smk); with MuirBench it once took the embedded spec's name, and render failed."""
    from mirsafety.reasoning.item_set import benchmark_name, measured_capability

    if benchmark == "muirbench":
        read_muirbench(write_muir(muir_rows(), tmp_path / "snapshot"), tmp_path / "set")
    else:
        write_reasoning_set(SMALL, tmp_path / "set")
    items = read_items(tmp_path / "set")
    summary = evaluate([Result(i["id"], "ok", raw_output="A") for i in items], items)
    table = capability_table({"m": summary}, pd.DataFrame(columns=["model"]), ["m"])
    named = measured_capability(benchmark_name({"benchmark": benchmark, "spec": SPEC_PATH}))
    assert table["capability"].tolist() == [named]
