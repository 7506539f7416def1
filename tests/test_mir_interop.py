"""Interoperability with the authors' released MIR code: their infer and harmbench layouts."""

import json
import logging
from collections import Counter

import pytest

from mirsafety.core.errors import DataError
from mirsafety.core.taxonomy import instance_uid, sort_key
from mirsafety.interop.mir_export import (
    export_generations,
    export_judgments,
    mir_statics_asr,
    mir_statics_counts,
)
from mirsafety.interop.mir_import import import_generations, import_judgments
from mirsafety.interop.mir_layout import EXCLUDED_FILE, JUDGE_NAME, MissingInstancesError
from mirsafety.models.backend import Result
from mirsafety.models.record import make_record

MODEL = "m1"
CELLS = [("Hate_Speech", "Analogy"), ("Hate_Speech", "Decomposition"),
         ("Privacy", "Analogy"), ("Privacy", "Decomposition")]
IDS = ["1", "2", "10"]  # numeric order: 10 comes last, not between 1 and 2


def make_instances(ids=IDS, cells=CELLS) -> list[dict]:
    instances = []
    for category, relation in cells:
        for source_id in ids:
            uid = instance_uid(category, relation, source_id)
            instances.append({"uid": uid, "id": source_id, "category": category,
                              "relation": relation, "original_question": f"seed question {uid}",
                              "revised_prompt": f"multi-image prompt {uid}"})
    return sorted(instances, key=lambda i: sort_key(i["category"], i["relation"], i["id"]))


def generation(instance: dict, raw: str | None = None, failed: str | None = None) -> dict:
    if failed:
        result = Result(instance["uid"], "failed", error=failed)
    else:
        result = Result(instance["uid"], "ok", raw_output=raw or f"answer to {instance['uid']}",
                        completion_tokens=7)
    return make_record(instance, result, MODEL, "auto", 2)


def judgment(uid: str, label: str, status: str = "ok", error: str | None = None) -> dict:
    return {"uid": uid, "model": MODEL, "judge": "harmbench", "label": label, "safe_kind": None,
            "score": 0.5, "raw": {"unsafe": "Yes", "safe": "No"}.get(label),
            "error": error if label == "error" else None, "generation_status": status}


@pytest.fixture
def study():
    """12 instances, their generations (one with thinking, two failed) and judgments with errors."""
    instances = make_instances()
    generations, judgments = [], []
    labels = ["unsafe", "safe", "unsafe", "safe", "safe", "unsafe",
              "unsafe", "unsafe", "safe", "safe", "unsafe", "safe"]
    for k, (instance, label) in enumerate(zip(instances, labels, strict=True)):
        if k in (1, 7):  # failed generations: judged error by the loop, never safe
            generations.append(generation(instance, failed=f"TimeoutError: item {k}"))
            judgments.append(judgment(instance["uid"], "error", "failed", "generation failed"))
            continue
        raw = f"<think>plan {k}</think>answer {k}" if k == 4 else None
        generations.append(generation(instance, raw))
        if k == 9:  # the judge could not decide
            judgments.append(judgment(instance["uid"], "error", error="classifier output 'Mmm'"))
        else:
            judgments.append(judgment(instance["uid"], label))
    return instances, generations, judgments


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=4), encoding="utf-8")


def cell_of(instances, category, relation):
    return [i for i in instances if (i["category"], i["relation"]) == (category, relation)]


def our_asr_by_relation(judgments: list[dict], instances: list[dict]) -> dict[str, float]:
    relation = {i["uid"]: i["relation"] for i in instances}
    counts = Counter((relation[j["uid"]], j["label"]) for j in judgments)
    return {r: counts[r, "unsafe"] / (counts[r, "unsafe"] + counts[r, "safe"])
            for r in sorted({relation[j["uid"]] for j in judgments})}


# --- round trips ------------------------------------------------------------------------------


def test_generations_round_trip(study, tmp_path):
    instances, generations, _ = study
    written = export_generations(generations, instances, tmp_path / "infer")
    assert len(written) == len(CELLS)
    items = json.loads((tmp_path / "infer" / MODEL / "Privacy" / "Analogy.json").read_text())
    assert [i["item_index"] for i in items] == [0, 1, 2]
    assert set(items[0]) == {"item_index", "original_question", "revised_prompt", "answer",
                             "inference_status"}
    assert items[2]["original_question"] == "seed question Privacy/Analogy/10"
    assert items[1]["inference_status"] == "failed"  # instance 7
    assert items[1]["answer"].startswith("[INFERENCE_FAILED: TimeoutError")

    imported = import_generations(tmp_path / "infer", MODEL, instances)
    assert [g["uid"] for g in imported] == [i["uid"] for i in instances]
    for ours, back in zip(generations, imported, strict=True):
        assert set(back) == set(ours)
        assert back["status"] == ours["status"]
        assert back["answer"] == ours["answer"]
        assert back["thinking"] == ours["thinking"]
        if ours["status"] == "ok":
            assert back["raw_output"] == ours["raw_output"]
        else:
            assert back["error"] == ours["error"] and back["answer"] is None
    assert imported[4]["thinking"] == "plan 4" and imported[4]["answer"] == "answer 4"


def test_judgments_round_trip(study, tmp_path):
    instances, generations, judgments = study
    export_judgments(judgments, generations, instances, tmp_path / "harmbench")
    data = json.loads((tmp_path / "harmbench" / MODEL / "Hate_Speech" / "Analogy.json")
                      .read_text())
    assert [e["label"] for e in data["judge_result"]] == ["unsafe", "unsafe"]  # 1 is an error
    assert data["ASR"] == 100.0
    assert set(data["judge_result"][0]) == {"question", "answer", "label", "item_index"}

    back = import_judgments(tmp_path / "harmbench", MODEL, instances, generations=generations)
    assert [j["uid"] for j in back] == [j["uid"] for j in judgments]
    assert [j["label"] for j in back] == [j["label"] for j in judgments]
    assert [j["generation_status"] for j in back] == [j["generation_status"] for j in judgments]
    assert {j["judge"] for j in back} == {JUDGE_NAME}
    errors = {j["uid"]: j["error"] for j in back if j["label"] == "error"}
    assert errors == {j["uid"]: j["error"] for j in judgments if j["label"] == "error"}


def test_yes_no_labels_round_trip(study, tmp_path):
    instances, generations, judgments = study
    export_judgments(judgments, generations, instances, tmp_path, label_style="yes_no")
    data = json.loads((tmp_path / MODEL / "Privacy" / "Analogy.json").read_text())
    assert {e["label"] for e in data["judge_result"]} == {"Yes", "No"}
    back = import_judgments(tmp_path, MODEL, instances)
    assert [j["label"] for j in back] == [j["label"] for j in judgments]


# --- statics.py -------------------------------------------------------------------------------


def test_statics_on_export_equals_our_asr(study, tmp_path):
    instances, generations, judgments = study
    export_judgments(judgments, generations, instances, tmp_path)
    ours = our_asr_by_relation(judgments, instances)
    theirs = mir_statics_asr(tmp_path, MODEL)
    assert theirs == ours  # exact: the same integer counts divided the same way
    # errors are excluded from the denominator: Analogy has 6 items, 2 of them errors
    assert mir_statics_counts(tmp_path, MODEL)["Analogy"] == (3, 4)
    excluded = json.loads((tmp_path / MODEL / EXCLUDED_FILE).read_text())["files"]
    listed = sorted(item["uid"] for items in excluded.values() for item in items)
    assert listed == sorted(j["uid"] for j in judgments if j["label"] == "error")
    assert excluded["Privacy/Analogy.json"][0]["item_index"] == 1


def test_statics_all_error_relation(tmp_path):
    """A relation whose items are all errors: statics.py says 0, our ASR is undefined."""
    instances = make_instances(ids=["1"],
                               cells=[("Violence", "Relevance"), ("Violence", "Analogy")])
    generations = [generation(i) for i in instances]
    judgments = [judgment("Violence/Analogy/1", "safe"),
                 judgment("Violence/Relevance/1", "error", error="no verdict")]
    export_judgments(judgments, generations, instances, tmp_path)
    data = json.loads((tmp_path / MODEL / "Violence" / "Relevance.json").read_text())
    assert data == {"ASR": None, "judge_result": []}
    assert mir_statics_asr(tmp_path, MODEL) == {"Analogy": 0.0, "Relevance": 0}
    assert mir_statics_counts(tmp_path, MODEL)["Relevance"] == (0, 0)


def test_statics_counts_only_the_unsafe_label(tmp_path):
    """As statics.py: label == "unsafe" counts, anything else (even "Yes") does not."""
    entries = [{"question": "q", "answer": "a", "label": label}
               for label in ("unsafe", "safe", "Yes", "unsafe")]
    write_json(tmp_path / MODEL / "Violence" / "Analogy.json", {"ASR": 50.0,
                                                                 "judge_result": entries})
    write_json(tmp_path / MODEL / "Privacy" / "Analogy.json",
               {"ASR": 0.0, "judge_result": entries[1:2]})
    write_json(tmp_path / MODEL / "not-a-folder.json", {"judge_result": entries})
    assert mir_statics_counts(tmp_path, MODEL) == {"Analogy": (2, 5)}
    assert mir_statics_asr(tmp_path, MODEL) == {"Analogy": 0.4}


# --- the authors' own files -------------------------------------------------------------------


def authors_infer(instances, category, relation, answers: dict, statuses: dict | None = None):
    """An infer file as their writer makes it: inference_status only when not success."""
    records = []
    for index, instance in enumerate(cell_of(instances, category, relation)):
        if index not in answers:
            continue
        record = {"item_index": index, "original_question": instance["original_question"],
                  "revised_prompt": instance["revised_prompt"], "answer": answers[index]}
        if statuses and index in statuses:
            record["inference_status"] = statuses[index]
        records.append(record)
    return records


def test_import_authors_files_with_failures(tmp_path):
    instances = make_instances(cells=[("Violence", "Analogy")])
    answers = {0: "<answer>Sure, step one</answer>", 1: "[INFERENCE_FAILED: CUDA OOM]",
               2: "[WORKER_CRASHED: segfault]"}
    infer = authors_infer(instances, "Violence", "Analogy", answers,
                          {1: "failed", 2: "crashed"})
    write_json(tmp_path / "infer" / MODEL / "Violence" / "Analogy.json", infer)
    gens = import_generations(tmp_path / "infer", MODEL, instances)
    assert [g["status"] for g in gens] == ["ok", "failed", "failed"]
    assert gens[0]["answer"] == "Sure, step one" and gens[0]["raw_output"] == answers[0]
    assert gens[1]["error"] == "CUDA OOM" and gens[1]["answer"] is None
    assert gens[2]["error"] == "worker crashed: segfault"
    assert gens[0]["prompt_tokens"] is None and gens[0]["images_given"] is None
    assert gens[0]["token_ids"] is None  # unknown: the entropy stage tokenises the text again

    # their judge judged the failure texts too, as "safe": they must come back as errors
    judge = [{"question": r["original_question"], "answer": r["answer"], "label": label}
             for r, label in zip(infer, ["unsafe", "safe", "safe"], strict=True)]
    write_json(tmp_path / "harmbench" / MODEL / "Violence" / "Analogy.json",
               {"ASR": 100 / 3, "judge_result": judge})
    back = import_judgments(tmp_path / "harmbench", MODEL, instances)
    assert [j["label"] for j in back] == ["unsafe", "error", "error"]
    assert [j["generation_status"] for j in back] == ["ok", "failed", "failed"]
    assert back[1]["raw"] == "safe" and "CUDA OOM" in back[1]["error"]


def test_failed_status_without_marker_is_failed(tmp_path):
    instances = make_instances(ids=["1"], cells=[("Violence", "Analogy")])
    infer = authors_infer(instances, "Violence", "Analogy", {0: "partial text"}, {0: "failed"})
    write_json(tmp_path / MODEL / "Violence" / "Analogy.json", infer)
    [gen] = import_generations(tmp_path, MODEL, instances)
    assert gen["status"] == "failed" and gen["answer"] is None


def test_import_labels(tmp_path):
    instances = make_instances(ids=["1", "2", "3", "4", "5"], cells=[("Privacy", "Causality")])
    labels = ["Yes", "No", "unsafe", "safe", "maybe"]
    judge = [{"question": i["original_question"], "answer": "text", "label": label}
             for i, label in zip(instances, labels, strict=True)]
    write_json(tmp_path / MODEL / "Privacy" / "Causality.json", {"ASR": 40.0,
                                                                  "judge_result": judge})
    back = import_judgments(tmp_path, MODEL, instances)
    assert [j["label"] for j in back] == ["unsafe", "safe", "unsafe", "safe", "error"]
    assert [j["raw"] for j in back] == labels
    assert "maybe" in back[4]["error"]


def test_positions_follow_the_infer_file(tmp_path):
    """Their harmbench file has no indices: with an incomplete infer file, position != index."""
    instances = make_instances(cells=[("Privacy", "Relevance")])
    infer = authors_infer(instances, "Privacy", "Relevance", {1: "a1", 2: "a2"})
    write_json(tmp_path / "infer" / MODEL / "Privacy" / "Relevance.json", infer)
    judge = [{"question": r["original_question"], "answer": r["answer"], "label": "unsafe"}
             for r in infer]
    write_json(tmp_path / "hb" / MODEL / "Privacy" / "Relevance.json",
               {"ASR": 100.0, "judge_result": judge})
    with pytest.raises(DataError, match=r"Relevance.json entry 0 \(item_index 0\): "
                                        r"original_question does not match"):
        import_judgments(tmp_path / "hb", MODEL, instances, allow_missing=True)
    back = import_judgments(tmp_path / "hb", MODEL, instances, infer_dir=tmp_path / "infer",
                            allow_missing=True)
    assert [j["uid"] for j in back] == [i["uid"] for i in instances[1:]]


# --- refusals ---------------------------------------------------------------------------------


def test_mismatched_question_names_file_and_index(tmp_path):
    instances = make_instances(cells=[("Hate_Speech", "Temporal_Jump")])
    infer = authors_infer(instances, "Hate_Speech", "Temporal_Jump", {0: "a", 1: "b", 2: "c"})
    infer[1]["original_question"] = "a different seed question"
    write_json(tmp_path / MODEL / "Hate_Speech" / "Temporal_Jump.json", infer)
    with pytest.raises(DataError) as caught:
        import_generations(tmp_path, MODEL, instances)
    [problem] = caught.value.problems
    assert "Hate_Speech/Temporal_Jump.json item_index 1" in problem
    assert "original_question does not match instance Hate_Speech/Temporal_Jump/2" in problem
    assert "a different seed question" in problem


def test_mismatched_prompt_and_answer(study, tmp_path):
    instances, generations, judgments = study
    export_generations(generations, instances, tmp_path / "infer")
    path = tmp_path / "infer" / MODEL / "Privacy" / "Decomposition.json"
    items = json.loads(path.read_text())
    items[2]["revised_prompt"] = "edited"
    write_json(path, items)
    with pytest.raises(DataError, match=r"Decomposition.json item_index 2: revised_prompt"):
        import_generations(tmp_path / "infer", MODEL, instances)

    export_judgments(judgments, generations, instances, tmp_path / "hb")
    path = tmp_path / "hb" / MODEL / "Hate_Speech" / "Decomposition.json"
    data = json.loads(path.read_text())
    data["judge_result"][0]["answer"] = "another model's answer"
    write_json(path, data)
    with pytest.raises(DataError, match=r"entry 0 \(item_index 0\): answer differs"):
        import_judgments(tmp_path / "hb", MODEL, instances, generations=generations)


def test_extracted_order_overrides_numeric_order(tmp_path):
    """Their item_index follows the extracted file's order; ours is numeric. Text catches it."""
    instances = make_instances(cells=[("Self-Harm", "Causality")])
    by_id = {i["id"]: i for i in instances}
    their_order = [by_id["10"], by_id["1"], by_id["2"]]
    write_json(tmp_path / "extracted" / "Self-Harm" / "Causality_final.json",
               [{"id": int(i["id"]), "original_question": i["original_question"],
                 "revised_prompt": i["revised_prompt"]} for i in their_order])
    infer = [{"item_index": k, "original_question": i["original_question"],
              "revised_prompt": i["revised_prompt"], "answer": f"answer {i['id']}"}
             for k, i in enumerate(their_order)]
    write_json(tmp_path / "infer" / MODEL / "Self-Harm" / "Causality.json", infer)
    with pytest.raises(DataError, match="item_index 0: original_question does not match"):
        import_generations(tmp_path / "infer", MODEL, instances)
    gens = import_generations(tmp_path / "infer", MODEL, instances,
                              extracted_dir=tmp_path / "extracted")
    assert {g["uid"]: g["answer"] for g in gens} == {
        i["uid"]: f"answer {i['id']}" for i in instances}
    # and our export writes their order back
    export_generations(gens, instances, tmp_path / "out", extracted_dir=tmp_path / "extracted")
    assert json.loads((tmp_path / "out" / MODEL / "Self-Harm" / "Causality.json").read_text()) \
        == [{**r, "inference_status": "success"} for r in infer]


def test_missing_instances_reported(study, tmp_path, caplog):
    instances, generations, judgments = study
    export_generations(generations, instances, tmp_path / "infer")
    export_judgments(judgments, generations, instances, tmp_path / "hb")
    (tmp_path / "infer" / MODEL / "Privacy" / "Decomposition.json").unlink()
    (tmp_path / "hb" / MODEL / "Privacy" / "Decomposition.json").unlink()
    expected = [i["uid"] for i in cell_of(instances, "Privacy", "Decomposition")]
    with pytest.raises(MissingInstancesError) as caught:
        import_generations(tmp_path / "infer", MODEL, instances)
    assert caught.value.missing == expected
    assert "3 of 12 instance(s) have no generation" in str(caught.value)
    with caplog.at_level(logging.WARNING, logger="mirsafety.interop.mir_import"):
        gens = import_generations(tmp_path / "infer", MODEL, instances, allow_missing=True)
    assert len(gens) == 9
    assert all(uid in caplog.text for uid in expected)
    with pytest.raises(MissingInstancesError) as caught:
        import_judgments(tmp_path / "hb", MODEL, instances, generations=generations)
    # Privacy/Decomposition/1 was an error judgment: excluded.json still holds it
    assert caught.value.missing == expected[1:]


def test_unknown_position_and_folder(tmp_path):
    instances = make_instances(cells=[("Violence", "Analogy")])
    write_json(tmp_path / MODEL / "Violence" / "Analogy.json",
               [{"item_index": 3, "original_question": "q", "revised_prompt": "p",
                 "answer": "a"}])
    write_json(tmp_path / MODEL / "Violense" / "Analogy.json", [])
    with pytest.raises(DataError) as caught:
        import_generations(tmp_path, MODEL, instances)
    text = "\n".join(caught.value.problems)
    assert "item_index 3: no instance at this position of Violence x Analogy (3 known)" in text
    assert "Violense: unknown category folder" in text


def test_export_refuses_failed_generation_judged_safe_and_nonempty_folder(study, tmp_path):
    instances, generations, judgments = study
    bad = [dict(j, label="safe") if j["generation_status"] == "failed" else j for j in judgments]
    with pytest.raises(DataError, match="labelled safe but its generation failed"):
        export_judgments(bad, generations, instances, tmp_path)
    assert not (tmp_path / MODEL).exists()
    export_judgments(judgments, generations, instances, tmp_path)
    with pytest.raises(DataError, match="non-empty folder"):
        export_judgments(judgments, generations, instances, tmp_path)
