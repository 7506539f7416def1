"""Stage 5: attention entropy of every generated answer, one teacher-forced pass each.

The pass is separate from generation on purpose: it serves answers made anywhere (vLLM, APIs
with open weights elsewhere, imports of the authors' results) and lets the entropy definition
change without generating again. Like generation, it resumes item by item.
"""

import logging

from mirsafety.core.ledger import run_resumable
from mirsafety.core.records import read_jsonl, settings_key, sha256_file
from mirsafety.models.factory import weights_identity, weights_location
from mirsafety.models.requests import make_request, request_key

log = logging.getLogger(__name__)


def entropy_record(extractor, generation: dict, instance: dict, dataset_dir, model: dict,
                   options: dict) -> dict:
    """Entropies of one answer; a failed generation is ``skipped``, a failed pass ``failed``."""
    try:
        request = make_request(instance, dataset_dir, model)
        record = extractor.extract_record(request, generation, options["selection"],
                                          options["first_n"])
    except Exception as error:  # noqa: BLE001 - one bad item must not sink the shard
        log.warning("%s: entropy pass failed: %s", generation["uid"], error)
        record = {"uid": generation["uid"], "status": "failed",
                  "error": f"{type(error).__name__}: {error}"}
    return {**record, "model": generation["model"]}


def entropy_key(generation: dict, instance: dict, dataset_dir, model: dict) -> str:
    """A key of what the pass measures for one answer: the request it answers (``request_key``)
    and the answer itself, its generated ``token_ids`` included (they are what is scored), so
    that the resume ledger measures again an answer whose prompt, images, text or ids changed;
    the model and the entropy options are in the shard's settings. An answer without ids keeps
    the key it had before ids were stored: its re-tokenised measurement is still the same."""
    answer = {"request": request_key(instance, dataset_dir, model),
              "status": generation["status"],
              "raw_output": generation.get("raw_output"),
              "answer": generation.get("answer")}
    if generation.get("token_ids") is not None:
        answer["token_ids"] = generation["token_ids"]
    return settings_key(answer)


def run_entropy_shard(generations: list[dict], instances: dict, open_extractor, *,
                      model_name: str, model: dict, options: dict, dataset_dir, settings: dict,
                      out_path, meta_path) -> dict:
    """Measure every answer not yet measured under ``settings`` and its ``entropy_key``; write
    the shard and its meta. ``open_extractor()`` loads the model: it is called only when an
    answer is to be measured, so a finished shard never loads it."""
    extractor = None

    def measure(batch):
        nonlocal extractor
        if extractor is None:
            extractor = open_extractor()
        for generation in batch:
            yield entropy_record(extractor, generation, instances[generation["uid"]],
                                 dataset_dir, model, options)

    def announce(total, todo):
        log.info("%s: %d answer(s), %d to measure", out_path, total, todo)

    try:
        return run_resumable(
            generations, measure,
            item_key=lambda g: entropy_key(g, instances[g["uid"]], dataset_dir, model),
            out_path=out_path, meta_path=meta_path, settings=settings, count_field="status",
            is_done=lambda record: record.get("status") in ("ok", "skipped"),
            announce=announce, batch_size=1, progress=f"entropy {model_name}", unit="answer")
    finally:
        if extractor is not None:
            extractor.close()


def entropy_shard(*, model_name: str, model: dict, options: dict, generations_path,
                  instances_path, dataset_dir, out_path, meta_path, threads: int = 1,
                  built=None) -> dict:
    """The rule's whole job: one teacher-forced pass per answer of a generation shard.

    A ``failed`` answer is measured again. ``built`` is the folder the build rule made, for tiny
    weights.
    """
    import torch

    from mirsafety.entropy.extractor import EntropyExtractor

    torch.set_num_threads(threads)
    generations = read_jsonl(generations_path)
    instances = {i["uid"]: i for i in read_jsonl(instances_path)}
    settings = {"stage": "entropy", "model_name": model_name, "model": model,
                "weights": weights_identity(model, built), "options": options,
                "generations_sha256": sha256_file(generations_path)}
    location, revision = weights_location(model, built)
    return run_entropy_shard(
        generations, instances, lambda: EntropyExtractor(location, model, revision=revision),
        model_name=model_name, model=model, options=options, dataset_dir=dataset_dir,
        settings=settings, out_path=out_path, meta_path=meta_path)
