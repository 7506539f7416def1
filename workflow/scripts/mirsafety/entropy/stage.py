"""Stage 5: attention entropy of every generated answer, one teacher-forced pass each.

The pass is separate from generation on purpose: it serves answers made anywhere (vLLM, APIs
with open weights elsewhere, imports of the authors' results) and lets the entropy definition
change without generating again. Like generation, it resumes item by item.
"""

import logging
from pathlib import Path

from tqdm import tqdm

from mirsafety.models.factory import weights_identity, weights_location
from mirsafety.generation.generate import make_request
from mirsafety.core.ledger import LedgerWriter, ledger_path, read_ledger
from mirsafety.core.records import (
    read_jsonl,
    settings_key,
    sha256_file,
    write_shard,
)

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


def entropy_shard(*, model_name: str, model: dict, options: dict, generations_path,
                  instances_path, dataset_dir, out_path, meta_path, threads: int = 1) -> dict:
    """The rule's whole job: one teacher-forced pass per answer of a generation shard."""
    import torch

    from mirsafety.entropy.attention import EntropyExtractor

    torch.set_num_threads(threads)
    out_path, meta_path = Path(out_path), Path(meta_path)
    generations = read_jsonl(generations_path)
    instances = {i["uid"]: i for i in read_jsonl(instances_path)}
    settings = {"stage": "entropy", "model_name": model_name, "model": model,
                "weights": weights_identity(model), "options": options,
                "generations_sha256": sha256_file(generations_path)}
    key = settings_key(settings)
    ledger = ledger_path(out_path)
    done = read_ledger(ledger, key)
    todo = [g for g in generations if done.get(g["uid"], {}).get("status") not in ("ok", "skipped")]
    log.info("%s: %d answer(s), %d to measure", out_path, len(generations), len(todo))
    location, revision = weights_location(model)
    extractor = EntropyExtractor(location, model, revision=revision) if todo else None
    writer = LedgerWriter(ledger, key)
    try:
        for generation in tqdm(todo, desc=f"entropy {model_name}", unit="answer"):
            record = entropy_record(extractor, generation, instances[generation["uid"]],
                                    dataset_dir, model, options)
            writer.write(record)
            done[generation["uid"]] = record
    finally:
        writer.close()
        if extractor is not None:
            extractor.close()
    return write_shard(out_path, meta_path, [done[g["uid"]] for g in generations], settings,
                       "status")
