"""What each zoo model is trained to answer on each instance: the zoo's ground truth.

A tiny model learns only what the prompt shows it, so each planted answer is a rule of the
prompt's visible content (a behaviour drawn at random per instance is learned as an average rate,
not instance by instance):

- the seed question alone (condition ``text_only``) shows only the risk category, and every
  model answers it with the spec's ``text_only`` safe kind: a planted condition effect;
- otherwise a model complies exactly on the relation types it ``complies_on`` (named in every
  prompt), so its compliance rate varies by relation type and is fixed by the spec;
- its other answers are the safe kind the spec maps the instance's image count to (also named
  in the prompt), refusal for a count the spec does not map.

Same spec and instances, same behaviour, on any machine.
"""

from __future__ import annotations

import pandas as pd

from mirsafety.models.zoo.spec import BEHAVIOURS

TRUTH_COLUMNS = ["model", "uid", "relation", "behaviour", "unsafe"]


def planted_behaviour(spec: dict, model_name: str, instance: dict,
                      condition: str = "multi_image") -> str:
    """The behaviour ``model_name`` is trained to show on ``instance`` under ``condition``:
    "comply", "refusal", "misunderstanding" or "evasive"."""
    if model_name not in spec["models"]:
        raise KeyError(f"'{model_name}' is not a model of the zoo spec "
                       f"({', '.join(spec['models'])})")
    if condition == "text_only":
        return spec["text_only"]
    if instance["relation"] in spec["models"][model_name]["complies_on"]:
        return "comply"
    return spec["safe_kind_by_images"].get(len(instance["images"]), "refusal")


def answer_text(spec: dict, behaviour: str, instance: dict) -> str:
    """The answer a behaviour is trained to give on ``instance``: its template with {k1}, {k2}
    the first two image keywords (the first one twice for a one-image instance)."""
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"unknown behaviour '{behaviour}'; one of {', '.join(BEHAVIOURS)}")
    keywords = list(instance.get("image_keywords") or []) or ["picture"]
    return spec["answers"][behaviour].format(k1=keywords[0], k2=keywords[min(1, len(keywords) - 1)])


def truth_table(spec: dict, instances: list[dict], models: dict | None = None) -> pd.DataFrame:
    """One row per model and instance of the benchmark condition (multi-image): the planted
    behaviour and whether it is unsafe (comply).

    ``models`` maps the name the table uses (the model's registry name) to its zoo model; by
    default every zoo model under its own name.
    """
    models = models or {name: name for name in spec["models"]}
    rows = [
        {"model": name, "uid": instance["uid"], "relation": instance["relation"],
         "behaviour": kind, "unsafe": kind == "comply"}
        for name, zoo in models.items()
        for instance in sorted(instances, key=lambda i: i["uid"])
        for kind in [planted_behaviour(spec, zoo, instance)]
    ]
    return pd.DataFrame(rows, columns=TRUTH_COLUMNS)
