"""From a model's registry entry to a live backend, and to the identity of its weights."""

import hashlib
from pathlib import Path

from mirsafety.models.backend import Backend, CaptureHook

#: Weights the workflow makes itself (tiny: built by build_tiny_model, zoo: trained by
#: train_zoo_model): small, so their identity includes a hash of every weight file.
MADE_BY_WORKFLOW = ("tiny", "zoo")


def _made_by_workflow(weights: dict) -> str | None:
    """"tiny" or "zoo" when the workflow makes these weights, else None."""
    return next((kind for kind in MADE_BY_WORKFLOW if kind in weights), None)


def built_weights(inputs) -> Path | None:
    """The folder a build rule made for this job (its ``weights`` input, a ``config.json``)."""
    config = getattr(inputs, "weights", None)
    return Path(config).parent if config else None


def weights_location(model: dict, built: Path | None = None) -> tuple[str, str | None] | None:
    """(name or path, revision) to load from; None for an API model. Tiny and zoo weights are
    where the workflow's rule made them: ``built``, the rule's input (see ``built_weights``)."""
    weights = model.get("weights")
    if not weights:
        return None
    made = _made_by_workflow(weights)
    if made:
        if built is None:
            raise ValueError(f"{made} weights '{weights[made]}' are made by the workflow: pass "
                             "the folder its rule made (the rule's `weights` input)")
        return str(built), None
    if "path" in weights:
        return weights["path"], None
    return weights["hub_id"], weights.get("revision")


def weights_identity(model: dict, built: Path | None = None) -> dict:
    """What the answers depend on, cheaply: a tiny or zoo model's weight hash; a folder's sizes.

    Hashing the weights of a 72B model per shard would cost minutes, so real folders are
    identified by their file names and sizes and hub models by id and revision.
    """
    weights = model.get("weights")
    if model.get("mir_import"):
        return {"mir_import": model["mir_import"]}
    if not weights:
        return {"api_model": model["api"]["model"], "base_url": model["api"]["base_url"]}
    if "hub_id" in weights:
        return {"hub_id": weights["hub_id"], "revision": weights.get("revision")}
    folder = Path(weights_location(model, built)[0])
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    identity = {"path": str(folder),
                "files": {p.relative_to(folder).as_posix(): p.stat().st_size for p in files}}
    made = _made_by_workflow(weights)
    if made:
        identity[made] = weights[made]
        identity["sha256"] = {
            p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files if p.suffix == ".safetensors"
        }
    return identity


def make_backend(model: dict, *, capture: CaptureHook | None = None,
                 built: Path | None = None) -> Backend:
    """Load the backend a registry entry names (imports only what that backend needs).

    ``capture`` (e.g. ``entropy.capture.EntropyHook()``) goes to a transformers backend, which
    uses it when the entry sets ``entropy_capture``; the other backends record nothing.
    """
    decoding = model["decoding"]
    if model["backend"] == "openai":
        from mirsafety.models.openai_api import OpenAIBackend

        return OpenAIBackend(
            **model["api"],
            temperature=decoding["temperature"],  # None: the provider's default, as the paper
            top_p=decoding["top_p"],
            max_tokens=decoding["max_new_tokens"],
            seed=decoding["seed"],
        )
    location, revision = weights_location(model, built)
    if model["backend"] == "vllm":
        from mirsafety.models.vllm_backend import VLLMBackend

        return VLLMBackend(location, revision=revision, model=model)
    from mirsafety.models.hf import TransformersBackend

    return TransformersBackend(location, revision=revision, model=model, capture=capture)
