"""Run one model over one shard of the instances: resumable, every item accounted for.

A shard is a contiguous chunk of ``instances.jsonl``. Finished items go to the ledger as they
come; only when every item of the shard has a record is the shard file written (atomically),
together with its provenance. Failed items are recorded as ``failed`` (and judged ``error``
downstream); a re-run of the shard re-asks only them.
"""

import hashlib
import logging

from mirsafety.core.ledger import run_resumable
from mirsafety.core.records import read_jsonl, sha256_file, write_shard
from mirsafety.core.shards import parse_shard, shard_slice
from mirsafety.models.backend import Backend, Result
from mirsafety.models.record import make_record
from mirsafety.models.requests import make_request, request_key

log = logging.getLogger(__name__)

def _failed(uid: str, error: Exception) -> Result:
    return Result(uid, "failed", error=f"{type(error).__name__}: {error}")


def _generate_batch(backend: Backend, batch: list[dict], dataset_dir, model: dict, condition: str):
    """Results for a batch; an item whose images cannot be loaded fails alone."""
    requests, results = {}, {}
    for instance in batch:
        try:
            requests[instance["uid"]] = make_request(instance, dataset_dir, model, condition)
        except OSError as error:
            results[instance["uid"]] = _failed(instance["uid"], error)
    ready = list(requests.values())
    for request, result in zip(ready, backend.generate(ready) if ready else [], strict=True):
        if result.uid != request.uid:
            raise RuntimeError(f"backend answered {result.uid} for {request.uid}")
        results[request.uid] = result
    given = {uid: len(request.images) for uid, request in requests.items()}
    return [(i, results[i["uid"]], given.get(i["uid"], 0)) for i in batch]


def run_shard(instances: list[dict], dataset_dir, backend: Backend, *, model_name: str,
              model: dict, settings: dict, out_path, meta_path,
              condition: str = "multi_image") -> dict:
    """Generate every instance not yet done with ``settings``; write the shard and its meta.

    ``settings`` identifies what the answers depend on (model entry, weights, dataset manifest,
    shard); the ledger is reused only under the same settings, and an item's answer only for the
    same request (``request_key``). Only an ``ok`` answer stands: a failed item is asked again.
    Returns the meta record.
    """
    def generate(batch):
        for instance, result, given in _generate_batch(backend, batch, dataset_dir, model,
                                                       condition):
            yield make_record(instance, result, model_name, model["thinking"], given, condition)

    def announce(total, todo):
        log.info("%s: %d item(s), %d already done, %d to generate", out_path, total,
                 total - todo, todo)

    meta = run_resumable(instances, generate,
                         item_key=lambda instance: request_key(instance, dataset_dir, model,
                                                               condition),
                         out_path=out_path, meta_path=meta_path,
                         settings=settings, count_field="status",
                         is_done=lambda record: record.get("status") == "ok",
                         announce=announce, batch_size=model["batch_size"],
                         progress=f"generate {model_name}")
    failed = meta["status_counts"].get("failed", 0)
    if failed:
        log.warning("%d item(s) failed; they are recorded as failed. Re-run this shard "
                    "(snakemake --forcerun generate) to retry only them.", failed)
    return meta


def generate_shard(*, model_name: str, model: dict, shard: str, instances_path, manifest_path,
                   dataset_dir, out_path, meta_path, condition: str = "multi_image",
                   threads: int = 1, built=None) -> dict:
    """The rule's whole job: select the shard, load the backend, run, record provenance.

    ``threads`` caps torch's CPU threads at what the scheduler granted the job; ``built`` is the
    folder the build rule made, for tiny weights (``models.factory.built_weights``).
    """
    import torch

    from mirsafety.entropy.capture import EntropyHook
    from mirsafety.models.factory import make_backend, weights_identity

    torch.set_num_threads(threads)

    instances = shard_slice(read_jsonl(instances_path), *parse_shard(shard))
    settings = {
        "model_name": model_name,
        "model": model,
        "weights": weights_identity(model, built),
        "dataset_manifest_sha256": sha256_file(manifest_path),
        "shard": shard,
        "condition": condition,
        "uids": hashlib.sha256("\n".join(i["uid"] for i in instances).encode()).hexdigest(),
    }
    if model["backend"] == "mir_import":
        if condition != "multi_image":
            raise ValueError(f"{model_name}: imported answers exist only for multi_image")
        return import_shard(instances, model_name=model_name, model=model, settings=settings,
                            instances_path=instances_path, out_path=out_path, meta_path=meta_path)
    backend = make_backend(model, capture=EntropyHook(), built=built)
    settings["weights"]["resolved_commit"] = getattr(backend, "commit", None)
    settings["generation_config"] = backend.generation_config()
    try:
        return run_shard(instances, dataset_dir, backend, model_name=model_name, model=model,
                         settings=settings, out_path=out_path, meta_path=meta_path,
                         condition=condition)
    finally:
        backend.close()


def import_shard(instances: list[dict], *, model_name: str, model: dict, settings: dict,
                 instances_path, out_path, meta_path) -> dict:
    """A shard of answers the authors' released code already generated (backend mir_import).

    Every instance of the dataset must be in the import (checked against its texts), so a
    partial or mismatched run cannot enter the analysis unnoticed.
    """
    from mirsafety.interop.mir_import import import_generations

    spec = model["mir_import"]
    imported = import_generations(spec["infer_dir"], spec["model_dir"] or model_name,
                                  read_jsonl(instances_path), extracted_dir=spec["extracted_dir"])
    by_uid = {r["uid"]: {**r, "model": model_name, "condition": "multi_image"} for r in imported}
    return write_shard(out_path, meta_path, [by_uid[i["uid"]] for i in instances], settings,
                       "status")
