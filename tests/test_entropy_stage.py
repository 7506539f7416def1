"""The entropy stage's resume: an answer is measured again when what it measures changed."""

import json

from PIL import Image

from mirsafety.entropy.stage import run_entropy_shard

MODEL = {"system_prompt": None, "single_image": False, "image_pixels": {"min": None, "max": None}}
OPTIONS = {"selection": "all", "first_n": None}


class FakeExtractor:
    """Records the (uid, prompt, answer) of each pass instead of running a model."""

    def __init__(self, seen):
        self.seen = seen

    def extract_record(self, request, generation, selection, first_n):
        self.seen.append((generation["uid"], request.prompt, generation["raw_output"]))
        return {"uid": generation["uid"], "status": "ok", "mean": 1.0}

    def close(self):
        pass


def run(root, generations, instances):
    seen = []
    meta = run_entropy_shard(generations, instances, lambda: FakeExtractor(seen), model_name="m",
                             model=MODEL, options=OPTIONS, dataset_dir=root, settings={"k": 1},
                             out_path=root / "e.jsonl", meta_path=root / "e.meta.json")
    return seen, meta


def test_an_edited_prompt_or_answer_is_measured_again_and_only_it(tmp_path):
    Image.new("RGB", (8, 8), "red").save(tmp_path / "a.png")
    instances = {f"u{k}": {"uid": f"u{k}", "revised_prompt": f"p{k}", "images": ["a.png"]}
                 for k in range(4)}
    generations = [{"uid": f"u{k}", "model": "m", "status": "ok", "raw_output": f"r{k}",
                    "answer": f"r{k}"} for k in range(4)]
    seen, meta = run(tmp_path, generations, instances)
    assert len(seen) == 4 and meta["status_counts"] == {"ok": 4}
    instances["u1"]["revised_prompt"] = "an edited prompt"
    generations[3] = {**generations[3], "raw_output": "a new answer", "answer": "a new answer"}
    seen, meta = run(tmp_path, generations, instances)
    assert seen == [("u1", "an edited prompt", "r1"), ("u3", "p3", "a new answer")]
    assert meta["status_counts"] == {"ok": 4}
    rows = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [r["uid"] for r in rows] == ["u0", "u1", "u2", "u3"]
    assert run(tmp_path, generations, instances)[0] == []


def test_an_answer_with_other_generated_ids_is_measured_again(tmp_path):
    """The ids are what is scored: the same text from other ids is another measurement."""
    Image.new("RGB", (8, 8), "red").save(tmp_path / "a.png")
    instances = {f"u{k}": {"uid": f"u{k}", "revised_prompt": f"p{k}", "images": ["a.png"]}
                 for k in range(3)}
    generations = [{"uid": f"u{k}", "model": "m", "status": "ok", "raw_output": "\ufffd",
                    "answer": "\ufffd", "token_ids": [100 + k]} for k in range(3)]
    assert len(run(tmp_path, generations, instances)[0]) == 3
    generations[2] = {**generations[2], "token_ids": [100, 2]}
    assert run(tmp_path, generations, instances)[0] == [("u2", "p2", "\ufffd")]
