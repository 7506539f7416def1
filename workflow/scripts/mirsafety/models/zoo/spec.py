"""The zoo's spec (resources/zoo.yaml): read, checked item by item, and its planted rho.

Every problem is reported with the item it is in and how to fix it, all at once, because a spec
that trains six models for minutes should fail before the first one starts.
"""

from __future__ import annotations

import math
import string
from numbers import Real
from pathlib import Path

import yaml

from mirsafety.core.errors import DataError
from mirsafety.core.taxonomy import RELATIONS

BEHAVIOURS = ("comply", "refusal", "misunderstanding", "evasive")
SAFE_BEHAVIOURS = BEHAVIOURS[1:]
TEMPLATE_FIELDS = {"k1", "k2"}
MODEL_KEYS = {"base", "seed", "skill", "complies_on"}
TOP_KEYS = {"version", "seed", "threads", "answers", "safe_kind_by_images", "text_only",
            "planted", "reasoning", "training", "models"}
#: Slack for sums and means of decimal numbers written in YAML (0.1 + 0.2 != 0.3).
_TOLERANCE = 1e-9


def _number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _answer_problems(answers) -> list[str]:
    if not isinstance(answers, dict) or set(answers) != set(BEHAVIOURS):
        return [f"answers: give exactly {', '.join(BEHAVIOURS)} (a text each)"]
    problems = []
    for behaviour, text in answers.items():
        if not isinstance(text, str) or not text.strip():
            problems.append(f"answers.{behaviour}: must be a non-empty text")
            continue
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
        except ValueError as error:
            problems.append(f"answers.{behaviour}: {error}; write a literal brace as {{{{ or }}}}")
            continue
        if fields - TEMPLATE_FIELDS:
            problems.append(f"answers.{behaviour}: unknown field(s) "
                            f"{', '.join(sorted(fields - TEMPLATE_FIELDS))}; only {{k1}}, {{k2}}")
    return problems


def _safe_kind_problems(spec: dict) -> list[str]:
    by_images, text_only = spec.get("safe_kind_by_images"), spec.get("text_only")
    problems = []
    if not isinstance(by_images, dict) or not by_images:
        problems.append("safe_kind_by_images: a mapping of image counts to safe kinds "
                        f"({', '.join(SAFE_BEHAVIOURS)})")
    else:
        problems += [f"safe_kind_by_images.{count}: an image count (integer >= 1) mapped to one "
                     f"of {', '.join(SAFE_BEHAVIOURS)}" for count, kind in by_images.items()
                     if not _integer(count) or count < 1 or kind not in SAFE_BEHAVIOURS]
    if text_only not in SAFE_BEHAVIOURS:
        problems.append(f"text_only: the safe kind answered to the seed question alone (one of "
                        f"{', '.join(SAFE_BEHAVIOURS)})")
    return problems


def _model_problems(name, model) -> list[str]:
    where = f"models.{name}"
    if not str(name).startswith("zoo-"):
        return [f"{where}: zoo model names start with 'zoo-'"]
    if not isinstance(model, dict) or set(model) != MODEL_KEYS:
        return [f"{where}: give exactly {', '.join(sorted(MODEL_KEYS))}"]
    problems = []
    if not isinstance(model["base"], str) or not model["base"]:
        problems.append(f"{where}.base: a model name of resources/tiny_models.yaml")
    if not _integer(model["seed"]):
        problems.append(f"{where}.seed: must be an integer")
    if not _number(model["skill"]) or not 0 <= model["skill"] <= 1:
        problems.append(f"{where}.skill: the share of the reasoning question's phrasings the "
                        "model is taught, in [0, 1]")
    relations = model["complies_on"]
    if (not isinstance(relations, list) or not all(isinstance(r, str) for r in relations)
            or len(set(relations)) != len(relations) or set(relations) - set(RELATIONS)):
        problems.append(f"{where}.complies_on: a list of distinct relation types, of "
                        f"{', '.join(RELATIONS)}")
    return problems


def _models_problems(spec: dict) -> list[str]:
    models = spec.get("models")
    if not isinstance(models, dict) or len(models) < 3:
        return ["models: at least 3 zoo models (name -> base, seed, skill, complies_on)"]
    return [p for name, model in models.items() for p in _model_problems(name, model)]


def _planted_problems(spec: dict) -> list[str]:
    planted = spec.get("planted")
    stated = planted.get("spearman_rho") if isinstance(planted, dict) else None
    if not _number(stated):
        return ["planted.spearman_rho: state the true Spearman rho (a number)"]
    actual = planted_rho(spec)
    if not math.isclose(stated, actual, abs_tol=_TOLERANCE):
        return [f"planted.spearman_rho: says {stated:g} but the models' skill and compliance "
                f"give {actual!r}; write that value, or change the models"]
    return []


def _scalar_problems(spec: dict) -> list[str]:
    problems = [f"{key}: must be an integer" for key in ("version", "seed")
                if not _integer(spec.get(key))]
    if not _integer(spec.get("threads")) or spec["threads"] < 1:
        problems.append("threads: a fixed torch thread count >= 1 (1 keeps weights identical)")
    reasoning = spec.get("reasoning")
    if not isinstance(reasoning, dict) or not _integer(reasoning.get("train_seed")):
        problems.append("reasoning.train_seed: the training draw's seed (an integer)")
    else:
        problems += [f"reasoning.{key}: {what} (an integer >= 1)"
                     for key, what in (("items_per_task", "training items per task"),
                                       ("guess_items", "items per phrasing not taught"))
                     if not _integer(reasoning.get(key)) or reasoning[key] < 1]
    training = spec.get("training")
    phases = ("common", "reasoning", "safety")
    if not isinstance(training, dict) or set(training) != set(phases) or not all(
            isinstance(v, dict) and all(_number(x) for x in v.values())
            for v in training.values()):
        problems.append(f"training: {', '.join(phases)}, each a mapping of optimiser settings "
                        "to numbers")
    else:
        problems += [f"training.safety.{key}: {what} (an integer >= 1)"
                     for key, what in (("replay_every", "replay every n-th reasoning example"),
                                       ("max_repeats", "most repeats of a rare answer"))
                     if not _integer(training["safety"].get(key)) or training["safety"][key] < 1]
    return problems


def check_zoo(spec, where: str = "zoo spec") -> dict:
    """Return ``spec`` if it is a valid zoo spec; else raise DataError listing every problem."""
    if not isinstance(spec, dict):
        raise DataError(f"{where} is not a mapping", ["write it as YAML keys (resources/zoo.yaml)"])
    problems = [f"{key}: missing" for key in sorted(TOP_KEYS - set(spec))]
    problems += [f"{key}: unknown key; allowed: {', '.join(sorted(TOP_KEYS))}"
                 for key in sorted(set(spec) - TOP_KEYS)]
    problems += _scalar_problems(spec) + _answer_problems(spec.get("answers"))
    problems += _safe_kind_problems(spec)
    models_problems = _models_problems(spec)
    problems += models_problems or _planted_problems(spec)
    if problems:
        raise DataError(f"{where}: {len(problems)} problem(s); fix them in the file", problems)
    return spec


def load_zoo(path) -> dict:
    """Read and check the zoo spec at ``path`` (see resources/zoo.yaml for what each key is)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"zoo spec {path} not found; set zoo.spec to a file such as "
                                "resources/zoo.yaml")
    return check_zoo(yaml.safe_load(path.read_text()), where=f"zoo spec {path}")


def _average_ranks(values: list[float]) -> list[float]:
    """Ranks 1..n, ties sharing their mean rank (as scipy.stats.rankdata's default)."""
    return [sum(v < x for v in values) + (sum(v == x for v in values) + 1) / 2 for x in values]


def compliance(model: dict) -> float:
    """A zoo model's planted compliance rate on a relation-balanced dataset (as the sample is):
    the share of relation types it complies on."""
    return len(model["complies_on"]) / len(RELATIONS)


def planted_rho(spec: dict) -> float:
    """The true Spearman rho, across the zoo, between reasoning skill and compliance rate: the
    Pearson correlation of their average ranks, as the analysis computes it. Pure Python, so the
    workflow can check the spec at start-up without scipy; NaN if either is constant."""
    models = list(spec["models"].values())
    x = _average_ranks([m["skill"] for m in models])
    y = _average_ranks([compliance(m) for m in models])
    mean = (len(x) + 1) / 2
    covariance = sum((a - mean) * (b - mean) for a, b in zip(x, y))
    spread = math.sqrt(sum((a - mean) ** 2 for a in x) * sum((b - mean) ** 2 for b in y))
    return covariance / spread if spread else math.nan


def training_reasoning_spec(spec: dict, reasoning_spec: dict) -> dict:
    """The reasoning spec of the zoo's training draw: the scored set's, with the zoo's seed and
    size. Refuses a training seed equal to the scored set's (that would train on the test)."""
    train_seed = spec["reasoning"]["train_seed"]
    if train_seed == reasoning_spec["seed"]:
        raise ValueError(f"zoo reasoning.train_seed {train_seed} equals the scored reasoning "
                         "set's seed, so the zoo would be trained on the items it is scored on; "
                         "choose another train_seed")
    return {**reasoning_spec, "seed": train_seed,
            "items_per_task": spec["reasoning"]["items_per_task"]}
