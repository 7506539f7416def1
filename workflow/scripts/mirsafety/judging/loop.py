"""Judge one generation shard: every answer gets a verdict, and a failed generation is ``error``.

Mirrors the generation loop: verdicts go to a resume ledger as they come (an API judge over
thousands of answers must survive a kill), and the shard's judgments are written only when
every generation has one.
"""

import json
import logging
from dataclasses import asdict
from pathlib import Path

from mirsafety.core.ledger import run_resumable
from mirsafety.core.records import read_jsonl, settings_key, sha256_file, write_shard
from mirsafety.judging.base import LABELS, Judge, JudgeItem, Verdict

log = logging.getLogger(__name__)


def judge_item(generation: dict, instance: dict) -> JudgeItem:
    """What a judge sees: the seed question as the behaviour, the answer without thinking."""
    return JudgeItem(
        uid=generation["uid"],
        behavior=instance["original_question"],
        generation=generation["answer"] or "",
        prompt=instance["revised_prompt"],
        context="\n".join(instance["image_descriptions"]) or None,
    )


def judge_key(generation: dict, instance: dict) -> str:
    """A key of what the judge sees about one answer (``judge_item``), so that the resume ledger
    judges again an answer, prompt or context that changed; the judge itself is in the settings."""
    return settings_key(asdict(judge_item(generation, instance)))


def make_judgment(generation: dict, verdict: Verdict, judge_name: str) -> dict:
    if verdict.label not in LABELS:
        raise ValueError(f"judge {judge_name} gave label {verdict.label!r} for {verdict.uid}")
    return {
        "uid": generation["uid"],
        "model": generation["model"],
        "condition": generation.get("condition", "multi_image"),
        "judge": judge_name,
        "label": verdict.label,
        "safe_kind": verdict.safe_kind,
        "score": verdict.score,
        "raw": verdict.raw,
        "error": verdict.error,
        "clipped": verdict.clipped,
        "generation_status": generation["status"],
    }


def failed_generation_verdict(generation: dict) -> Verdict:
    """A failed generation is never judged (and so never counted safe)."""
    return Verdict(generation["uid"], "error", error=f"generation failed: {generation['error']}")


def _instances_for(generations: list[dict], instances_path) -> dict:
    instances = {i["uid"]: i for i in read_jsonl(instances_path)}
    unknown = [g["uid"] for g in generations if g["uid"] not in instances]
    if unknown:
        raise ValueError(f"{len(unknown)} generation(s) are for instances not in {instances_path}, "
                         f"e.g. {unknown[:3]}; the generations were made on another dataset. "
                         "Fix: re-run generation on the current dataset.")
    return instances


def run_judge_shard(generations: list[dict], instances: dict, judge: Judge, *, judge_name: str,
                    batch_size: int, settings: dict, out_path, meta_path) -> dict:
    """Judge every generation not yet judged under ``settings``; write judgments and meta.

    A failed generation gets its ``error`` verdict here, without the judge or the ledger; an
    earlier ``error`` verdict on an answer is judged again, and so is one made for another
    ``judge_key``.
    """
    def judge_batch(batch):
        verdicts = judge.judge([judge_item(g, instances[g["uid"]]) for g in batch])
        for generation, verdict in zip(batch, verdicts, strict=True):
            if verdict.uid != generation["uid"]:
                raise RuntimeError(f"judge answered {verdict.uid} for {generation['uid']}")
            yield make_judgment(generation, verdict, judge_name)

    def announce(total, todo):
        log.info("%s: %d generation(s), %d to judge", out_path, total, todo)

    failed = {g["uid"]: make_judgment(g, failed_generation_verdict(g), judge_name)
              for g in generations if g["status"] != "ok"}
    return run_resumable(generations, judge_batch,
                         item_key=lambda g: judge_key(g, instances[g["uid"]]),
                         out_path=out_path, meta_path=meta_path,
                         settings=settings, count_field="label",
                         is_done=lambda record: record.get("label") not in (None, "error"),
                         announce=announce, batch_size=batch_size,
                         progress=f"judge {judge_name}", prefilled=failed)


def import_judge_shard(generations: list[dict], instances_path, *, judge_name: str,
                       judge_spec: dict, model_dir: str, settings: dict, out_path,
                       meta_path) -> dict:
    """Labels the authors' harmbench_judge.py already made (judge kind mir_import), matched to
    the instances by their question text. A failed generation stays ``error`` whatever they said."""
    from mirsafety.interop.mir_import import import_judgments

    other = {g.get("condition", "multi_image") for g in generations} - {"multi_image"}
    if other:
        raise ValueError(f"judge {judge_name} imports labels of the multi-image benchmark; it "
                         f"cannot label answers made under {', '.join(sorted(other))}")
    imported = import_judgments(judge_spec["mir_import"]["harmbench_dir"], model_dir,
                                read_jsonl(instances_path))
    by_uid = {r["uid"]: r for r in imported}
    records = [{**by_uid[g["uid"]], "judge": judge_name, "model": g["model"],
                "condition": g.get("condition", "multi_image")} for g in generations]
    for record, generation in zip(records, generations):
        if generation["status"] != "ok":
            record.update(make_judgment(generation, failed_generation_verdict(generation),
                                        judge_name))
    return write_shard(out_path, meta_path, records, settings, "label")


def judge_shard(*, judge_name: str, judge_spec: dict, generations_path, generations_meta_path,
                instances_path, out_path, meta_path, model_dir: str | None = None,
                threads: int = 1, built=None) -> dict:
    """The rule's whole job: load the generations and the judge, judge, record provenance.

    ``model_dir`` names the model's folder in the authors' layout (for judge kind mir_import);
    ``built`` is the folder the build rule made, for a tiny judge.
    """
    from mirsafety.judging.factory import judge_identity, make_judge

    if judge_spec["kind"] == "harmbench":  # the one judge that runs a model here
        import torch

        torch.set_num_threads(threads)
    generations = read_jsonl(generations_path)
    instances = _instances_for(generations, instances_path)
    generation_meta = json.loads(Path(generations_meta_path).read_text())
    settings = {
        "judge_name": judge_name,
        "judge": judge_spec,
        "judge_identity": judge_identity(judge_spec, built),
        "generations_sha256": sha256_file(generations_path),
        "generation_settings_key": generation_meta["settings_key"],
        "model_name": generation_meta["model_name"],
        "dataset_manifest_sha256": generation_meta["dataset_manifest_sha256"],
    }
    if judge_spec["kind"] == "mir_import":
        return import_judge_shard(generations, instances_path, judge_name=judge_name,
                                  judge_spec=judge_spec, model_dir=model_dir, settings=settings,
                                  out_path=out_path, meta_path=meta_path)
    judge = make_judge(judge_spec, built)
    try:
        return run_judge_shard(generations, instances, judge, judge_name=judge_name,
                               batch_size=judge_spec["batch_size"], settings=settings,
                               out_path=out_path, meta_path=meta_path)
    finally:
        judge.close()
