"""From a judge's registry entry to a live judge, and to the identity of what it depends on."""

from mirsafety.core.records import sha256_file
from mirsafety.judging.base import Judge
from mirsafety.models.factory import weights_identity, weights_location


def judge_identity(spec: dict, built=None) -> dict:
    """The versioned inputs behind a judge's labels: its phrase list, prompt or weights."""
    kind = spec["kind"]
    if kind == "refusal":
        return {"patterns_sha256": sha256_file(spec["patterns"])}
    if kind == "mir_import":
        return {"mir_import": spec["mir_import"]}
    if kind == "llm":
        return {"prompt_sha256": sha256_file(spec["prompt"]), "api_model": spec["api"]["model"],
                "base_url": spec["api"]["base_url"]}
    from mirsafety.judging.harmbench import TEMPLATE_FILES, TEMPLATES_DIR

    templates = {name: sha256_file(TEMPLATES_DIR / name) for name in TEMPLATE_FILES.values()}
    return {**weights_identity(spec, built), "templates_sha256": templates}


def make_judge(spec: dict, built=None) -> Judge:
    kind = spec["kind"]
    if kind == "refusal":
        from mirsafety.judging.refusal import RefusalJudge

        return RefusalJudge(spec["patterns"])
    if kind == "llm":
        from mirsafety.judging.llm import LLMJudge

        return LLMJudge(**spec["api"], prompt_path=spec["prompt"],
                        max_parse_retries=spec["max_parse_retries"], max_tokens=spec["max_tokens"],
                        seed=spec["seed"])
    from mirsafety.judging.harmbench import HarmBenchJudge

    location, revision = weights_location(spec, built)
    return HarmBenchJudge(location, revision=revision, variant=spec["variant"], clip=spec["clip"],
                          batch_size=spec["batch_size"], dtype=spec["dtype"])
