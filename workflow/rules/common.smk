"""Helpers and config validation shared by every stage. Functions only; rules live per stage."""

import functools
import os
import sys
from pathlib import Path

import yaml
from snakemake.utils import min_version

min_version("9.0")

SCRIPTS = Path(workflow.current_basedir).parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

from mirsafety.core.config import (  # noqa: E402
    validate_config,
    without_entropy,
    without_excluded,
)
from mirsafety.core.shards import shard_name, shard_size  # noqa: E402
from mirsafety.data.hub import require_token  # noqa: E402
from mirsafety.data.prepare import expected_counts  # noqa: E402
from mirsafety.models.zoo.spec import load_zoo, planted_rho  # noqa: E402
from mirsafety.render import FIGURES as RENDER_FIGURES  # noqa: E402
from mirsafety.render import NUMBERS as RENDER_NUMBERS  # noqa: E402
from mirsafety.render import TABLES as RENDER_TABLES  # noqa: E402
from mirsafety.reasoning.item_set import (  # noqa: E402
    benchmark_name as reasoning_benchmark_name,
    load_spec as load_reasoning_spec,
    measured_capability,
)
from mirsafety.core.job_size import (  # noqa: E402
    MUIRBENCH_ITEMS,
    entropy_seconds,
    generation_seconds,
    item_seconds,
    job_resources,
    judge_seconds,
)

config.update(
    without_excluded(
        validate_config(
            config, Path(workflow.current_basedir).parent / "schemas" / "config.schema.yaml"
        )
    )
)

DATASET = config["dataset"]["name"]

# What the render stage writes; paper/main.tex reads exactly these (mirsafety.render.FIGURES, ...).
FIGURES = {name: f"results/figures/{name}.pdf" for name in RENDER_FIGURES}
TABLES = {name: f"results/tables/{name}.tex" for name in (*RENDER_TABLES, RENDER_NUMBERS)}
SAMPLE_SNAPSHOT = "results/raw/sample"
HUB_SNAPSHOT = "results/raw/mir"


wildcard_constraints:
    dataset="sample|mir",
    shard=r"\d{3}-of-\d{3}",
    condition="multi_image|single_image|text_only|prompt_only",
    model="|".join(config["models"]) or "no-model-registered",
    judge="|".join(config["judges"]) or "no-judge-registered",


def uses_hub():
    """True when this run downloads the real dataset (and so needs HF_TOKEN)."""
    return DATASET == "mir" and not config["dataset"]["local_path"]


def require_hub_token():
    """A run that will download the real dataset stops before its first job without HF_TOKEN,
    saying where to get one (mirsafety.data.hub.require_token)."""
    if uses_hub() and not Path(HUB_SNAPSHOT).exists():
        require_token(config["dataset"]["repo_id"])


def sample_spec():
    return yaml.safe_load(Path(config["sample"]["spec"]).read_text())


def dataset_source_dir(wildcards):
    """The folder prepare reads: the sample snapshot, the user's local copy, or the download."""
    if wildcards.dataset == "sample":
        return SAMPLE_SNAPSHOT
    return config["dataset"]["local_path"] or HUB_SNAPSHOT


def dataset_source_input(wildcards):
    """What prepare depends on, so a new sample spec or a new download re-runs it."""
    if wildcards.dataset == "sample":
        return rules.sample_dataset.output.parquet
    return dataset_source_dir(wildcards)


def dataset_settings(wildcards):
    """Every value that changes the prepared dataset, passed through params to trigger re-runs."""
    ds = config["dataset"]
    if wildcards.dataset == "sample":
        return {
            "split": "train",
            "expected": expected_counts("sample", sample_spec()),
            "enforce_counts": True,
            "provenance": {"spec": config["sample"]["spec"]},
        }
    provenance = (
        {"local_path": ds["local_path"]}
        if ds["local_path"]
        else {"repo_id": ds["repo_id"], "revision": ds["revision"]}
    )
    return {
        "split": ds["split"],
        "expected": expected_counts("mir"),
        "enforce_counts": ds["check_published_counts"],
        "provenance": provenance,
    }


def dataset_manifest():
    return f"results/data/{DATASET}/manifest.json"


def dataset_dir():
    """The prepared dataset every model is run on."""
    return str(Path(dataset_manifest()).parent)


def generation_inputs(wildcards):
    """The prepared dataset, and the weights folder when the workflow builds it (tiny models)."""
    inputs = {
        "instances": str(Path(dataset_dir(), "instances.jsonl")),
        "manifest": dataset_manifest(),
    }
    return {**inputs, **weights_input(wildcards.model)}


def weights_input(model):
    """{"weights": the config.json its rule makes} when the workflow makes the model's weights
    (built tiny or trained zoo), else {} (the backend loads them from a path, the hub or an API)."""
    weights = config["models"][model].get("weights", {})
    if "tiny" in weights:
        return {"weights": rules.build_tiny_model.output.config.format(tiny=weights["tiny"])}
    if "zoo" in weights:
        return {"weights": rules.train_zoo_model.output.config.format(zoo=weights["zoo"])}
    return {}


@functools.cache
def zoo_spec():
    """The zoo spec (zoo.spec), read and checked once, when a zoo model is first asked for."""
    return load_zoo(config["zoo"]["spec"])


def zoo_models():
    """Registered models trained in the zoo: registry name -> zoo model name."""
    return {
        name: spec["weights"]["zoo"]
        for name, spec in config["models"].items()
        if "zoo" in spec.get("weights", {})
    }


def train_zoo_inputs(wildcards):
    """What a zoo model's training reads: its base tiny model, the zoo spec, the prepared
    dataset (the attack prompts it is trained on) and the reasoning spec (its training draw)."""
    models = zoo_spec()["models"]
    if wildcards.zoo not in models:
        raise ValueError(
            f"weights.zoo '{wildcards.zoo}' is not a model of {config['zoo']['spec']} "
            f"({', '.join(models)}); fix the name or add it to the zoo spec"
        )
    return {
        "spec": config["zoo"]["spec"],
        "base": rules.build_tiny_model.output.config.format(tiny=models[wildcards.zoo]["base"]),
        "instances": str(Path(dataset_dir(), "instances.jsonl")),
        "manifest": dataset_manifest(),
        "reasoning_spec": config["reasoning"]["spec"],
    }


def zoo_registry_entry(zoo):
    """The registry entry a zoo model is asked through, so that training renders its prompts
    (system prompt, conditions, image sizing) exactly as generation will."""
    names = [name for name, trained in zoo_models().items() if trained == zoo]
    if not names:
        raise ValueError(
            f"zoo model '{zoo}' is not registered: add a model with weights: {{zoo: {zoo}}}"
        )
    return config["models"][names[0]]


def zoo_outputs():
    """The zoo's ground truth, when zoo models are registered."""
    return [rules.zoo_truth.output.truth] if zoo_models() else []


def zoo_planted_rho():
    """The zoo's planted Spearman rho when the run's models are a zoo (the paper then says the
    run is a method check with planted effects), else None (real models)."""
    return planted_rho(zoo_spec()) if zoo_models() else None


@functools.cache
def dataset_total():
    """Instances a complete dataset holds (sample spec or published count): what shards split."""
    return expected_counts(DATASET, sample_spec() if DATASET == "sample" else None)["total"]


@functools.cache
def reasoning_total():
    """Items of the reasoning set: MuirBench's, or the embedded set's spec."""
    if config["reasoning"]["benchmark"] == "muirbench":
        return MUIRBENCH_ITEMS
    spec = load_reasoning_spec(config["reasoning"]["spec"])
    return spec["items_per_task"] * len(spec["tasks"])


def shard_resources(wildcards, attempt):
    """A generation or entropy job (no condition): the model's GPUs and memory, runtime from
    the throughput model (mirsafety.core.job_size) scaled by shard size."""
    model = config["models"][wildcards.model]
    items = shard_size(dataset_total(), model["shards"])
    condition = getattr(wildcards, "condition", None)
    derived = generation_seconds(model, condition) if condition else entropy_seconds(model)
    seconds = item_seconds(wildcards.model, model["resources"], derived)
    return job_resources(model["resources"], items, seconds, attempt)


def model_threads(wildcards):
    """CPU threads of a model's generation, reasoning or entropy job: its resources.threads."""
    return config["models"][wildcards.model]["resources"]["threads"]


def judge_threads(wildcards):
    """CPU threads of a judge job; a judge that runs no model here (phrases, an API, imported
    labels) needs one."""
    judge = config["judges"][wildcards.judge]
    return judge["resources"]["threads"] if judge["kind"] == "harmbench" else 1


def judge_resources(wildcards, attempt):
    """A judge job: the judge's GPUs and memory, runtime scaled by the judged shard's size."""
    model, judge = config["models"][wildcards.model], config["judges"][wildcards.judge]
    items = shard_size(dataset_total(), model["shards"])
    seconds = item_seconds(wildcards.judge, judge["resources"], judge_seconds(judge, model))
    return job_resources(judge["resources"], items, seconds, attempt)


def reasoning_resources(wildcards, attempt):
    """A reasoning job: the model's GPUs and memory, runtime scaled by the reasoning set's size."""
    model = config["models"][wildcards.model]
    derived = generation_seconds(model, reasoning_cap=config["reasoning"]["max_new_tokens"])
    seconds = item_seconds(wildcards.model, model["resources"], derived)
    return job_resources(model["resources"], reasoning_total(), seconds, attempt)


def generation_env(wildcards):
    """The env of a generate or reasoning_generate job: vLLM pins its own torch and
    transformers, so a model with backend vllm runs in envs/vllm.yaml."""
    if config["models"][wildcards.model]["backend"] == "vllm":
        return "../../envs/vllm.yaml"
    return "../../envs/generate.yaml"


def model_conditions(model, conditions="all"):
    """The conditions a model runs under: all of its own, or those of ``conditions`` it has."""
    own = config["models"][model]["conditions"]
    return own if conditions == "all" else [c for c in own if c in conditions]


def generation_outputs(conditions="all"):
    """Every shard of every registered model, under every (or the given) condition."""
    return [
        path
        for name in config["models"]
        for path in expand(
            rules.generate.output.shard,
            model=name,
            shard=shard_names(name),
            condition=model_conditions(name, conditions),
        )
    ]


def shard_names(model):
    shards = config["models"][model]["shards"]
    return [shard_name(k, shards) for k in range(shards)]


def judge_inputs(wildcards):
    """A generation shard with its provenance, the instances, and tiny judge weights if any."""
    inputs = {
        "generations": rules.generate.output.shard.format(**wildcards),
        "generations_meta": rules.generate.output.meta.format(**wildcards),
        "instances": str(Path(dataset_dir(), "instances.jsonl")),
    }
    weights = config["judges"][wildcards.judge].get("weights", {})
    if "tiny" in weights:
        inputs["weights"] = rules.build_tiny_judge.output.config.format(tiny=weights["tiny"])
    return inputs


def judgment_outputs(judge, kind="judgments", models=None, conditions=("multi_image",)):
    """Every shard of every model (or of ``models``), as judged by ``judge``: the multi-image
    benchmark by default, every condition with ``conditions="all"`` (an imported judge has
    labels for the multi-image benchmark only)."""
    if config["judges"][judge]["kind"] == "mir_import":
        conditions = ("multi_image",)
    return [
        path
        for model in (config["models"] if models is None else models)
        for path in expand(
            getattr(rules.judge.output, kind),
            judge=judge,
            model=model,
            shard=shard_names(model),
            condition=model_conditions(model, conditions),
        )
    ]


def primary_judge():
    """The judge behind the headline numbers (analysis.primary_judge, else the first one)."""
    name = config["analysis"]["primary_judge"] or next(iter(config["judges"]), None)
    if name is not None and name not in config["judges"]:
        raise ValueError(
            f"analysis.primary_judge '{name}' is not a registered judge "
            f"({', '.join(config['judges'])}); fix the name or register it under judges"
        )
    return name


def analysis_outputs():
    """Per judge: ASR tables, the correlation with capability and the entropy comparison; judge
    agreement (two or more judges); the primary judge's results in the MIR code's layout."""
    if not config["models"] or not config["judges"]:
        return []
    judges = list(config["judges"])
    outputs = expand(rules.asr.output.asr, judge=judges)
    outputs += expand(rules.correlation.output.table, judge=judges)
    outputs += expand(rules.entropy_compare.output.comparison, judge=judges)
    if len(config["judges"]) > 1:
        outputs.append(rules.judge_agreement.output[0])
    outputs += expand(rules.export_mir.output.export, judge=primary_judge())
    outputs += [rules.audit_sample.output.sheet, rules.judge_vs_people.output[0]]
    return outputs


def mir_model_dir(model):
    """The model's folder name in the authors' result layout (for mir_import)."""
    spec = config["models"][model].get("mir_import") or {}
    return spec.get("model_dir") or model


def reasoning_models():
    """Models that can answer the reasoning items (an imported model has no backend to ask)."""
    return [m for m, spec in config["models"].items() if spec["backend"] != "mir_import"]


def reasoning_set_inputs(wildcards):
    reasoning = config["reasoning"]
    if reasoning["benchmark"] == "muirbench":
        if not reasoning["muirbench_path"]:
            raise ValueError(
                "reasoning.benchmark is muirbench but reasoning.muirbench_path is not set; "
                "download MuirBench elsewhere and point muirbench_path at it, or use embedded"
            )
        return {"source": reasoning["muirbench_path"]}
    return {"spec": reasoning["spec"]}


def reasoning_generate_inputs(wildcards):
    inputs = {"item_list": rules.reasoning_set.output.item_list}
    return {**inputs, **weights_input(wildcards.model)}


def reasoning_model_entry(model):
    """The model's registry entry, asked for a short answer (a letter) on the reasoning items."""
    entry = dict(config["models"][model])
    entry["decoding"] = {
        **entry["decoding"],
        "max_new_tokens": config["reasoning"]["max_new_tokens"],
    }
    return entry


def model_info():
    """Family and size of every model, for leave-one-family-out and the size control."""
    return [
        {"model": name, "family": spec["family"], "params_b": spec["params_b"]}
        for name, spec in config["models"].items()
    ]


def primary_capability():
    """The capability behind the per-group correlations (default: the measured score)."""
    if config["analysis"]["primary_capability"]:
        return config["analysis"]["primary_capability"]
    return measured_capability(reasoning_benchmark_name(config["reasoning"]))


def taxonomy_judge():
    """The judge whose safe answers carry kinds (the first llm judge), else the primary judge."""
    return next(
        (j for j, spec in config["judges"].items() if spec["kind"] == "llm"), primary_judge()
    )


def render_inputs(wildcards):
    judge = primary_judge()
    return {
        "asr": rules.asr.output.asr.format(judge=judge),
        "safe_kinds": rules.asr.output.safe_kinds.format(judge=taxonomy_judge()),
        "capability": rules.capability.output.table,
        "correlation": rules.correlation.output.table.format(judge=judge),
        "manifest": dataset_manifest(),
        "by_condition": rules.asr.output.conditions.format(judge=judge),
        "paired": rules.asr.output.paired.format(judge=judge),
        "audit": rules.judge_vs_people.output[0],
        "power": rules.power.output.table,
        **entropy_render_inputs(judge),
    }


def entropy_models():
    """Models whose answers get an entropy pass: those named in entropy.models, else every
    model with local weights (an API or imported model has none to run)."""
    chosen = config["entropy"]["models"]
    if chosen is None:
        return [
            m for m, spec in config["models"].items() if spec["backend"] in ("transformers", "vllm")
        ]
    unknown = sorted(set(chosen) - set(config["models"]))
    if unknown:
        raise ValueError(f"entropy.models names unregistered model(s): {', '.join(unknown)}")
    return list(chosen)


def entropy_inputs(wildcards):
    inputs = {
        "generations": rules.generate.output.shard.format(condition="multi_image", **wildcards),
        "instances": str(Path(dataset_dir(), "instances.jsonl")),
    }
    return {**inputs, **weights_input(wildcards.model)}


def entropy_outputs():
    return [
        path
        for model in entropy_models()
        for path in expand(rules.entropy.output.entropy, model=model, shard=shard_names(model))
    ]


def entropy_render_inputs(judge):
    return {
        "comparison": rules.entropy_compare.output.comparison.format(judge=judge),
        "layers": rules.entropy_compare.output.layers.format(judge=judge),
    }


def final_outputs():
    """The figures, tables and compiled paper (the study's end products)."""
    if not config["models"] or not config["judges"]:
        return []
    return [*FIGURES.values(), *TABLES.values(), rules.paper.output.pdf]
