"""The zoo's spec and its planted behaviour (cheap: no training, no workflow run)."""

import copy
import random

import pytest
import yaml
from scipy import stats

from mirsafety.core.config import validate_config
from mirsafety.core.errors import DataError
from mirsafety.core.taxonomy import CATEGORIES, RELATIONS
from mirsafety.judging.refusal import load_patterns
from mirsafety.models.factory import weights_identity, weights_location
from mirsafety.models.zoo.behaviour import answer_text, planted_behaviour, truth_table
from mirsafety.models.zoo.examples import taught_phrasings
from mirsafety.models.zoo.spec import (
    BEHAVIOURS,
    check_zoo,
    compliance,
    load_zoo,
    planted_rho,
    training_reasoning_spec,
)

from conftest import REPO

ZOO = REPO / "resources" / "zoo.yaml"
NULL = REPO / "resources" / "zoo_null.yaml"


def instances(per_relation: int) -> list[dict]:
    """Instances spread evenly over the relation types, with 1 to 5 images (the spec maps some
    image counts to a safe kind, not all), listed out of uid order."""
    made = [
        {"uid": f"{CATEGORIES[k % 6]}/{relation}/{k}", "relation": relation,
         "images": [f"images/{relation}_{k}_{n}.png" for n in range(1 + k % 5)],
         "image_keywords": ["kite", "teapot", "clock", "lamp", "shoe"][: 1 + k % 5]}
        for relation in RELATIONS
        for k in range(per_relation)
    ]
    random.Random(0).shuffle(made)
    return made


@pytest.fixture(scope="module")
def spec():
    return load_zoo(ZOO)


def test_planted_rho_is_spearman_of_skill_and_compliance(spec):
    """The stated rho is scipy's Spearman rho of skill against compliance, the share of the nine
    relation types a model complies on; ties share their mean rank, as in scipy."""
    models = spec["models"].values()
    for model in models:
        assert compliance(model) == len(model["complies_on"]) / 9
    rho = stats.spearmanr([m["skill"] for m in models], [compliance(m) for m in models])[0]
    assert planted_rho(spec) == pytest.approx(rho, abs=1e-12)
    assert spec["planted"]["spearman_rho"] == pytest.approx(rho, abs=1e-12) and rho > 0.5
    tied = {"models": {n: {"skill": s, "complies_on": list(RELATIONS[:c])}
                       for n, s, c in [("a", 0.0, 2), ("b", 0.2, 1), ("c", 0.2, 2), ("d", 1, 1)]}}
    expected = stats.spearmanr([0.0, 0.2, 0.2, 1], [2, 1, 2, 1])[0]
    assert planted_rho(tied) == pytest.approx(expected, abs=1e-12)


def test_the_null_zoo_is_the_zoo_without_its_coupling(spec):
    """Same zoo (keys, models, bases, seeds, skills), only compliance moved: planted rho 0."""
    try:
        null = load_zoo(NULL)
    except DataError as error:
        pytest.skip(f"resources/zoo_null.yaml is not yet a valid zoo spec: {error.headline}")
    assert null["planted"]["spearman_rho"] == 0 and planted_rho(null) == pytest.approx(0)
    assert {k: v for k, v in null.items() if k not in ("models", "planted")} == {
        k: v for k, v in spec.items() if k not in ("models", "planted")}
    assert list(null["models"]) == list(spec["models"])
    for name, model in null["models"].items():
        assert {k: model[k] for k in ("base", "seed", "skill")} == {
            k: spec["models"][name][k] for k in ("base", "seed", "skill")}, name


def test_zoo_spans_two_architectures_and_skill_from_none_to_all(spec):
    """Six models, three per tiny base; skills from 0 to 1, each a whole number of the scored
    task's phrasings."""
    bases = [m["base"] for m in spec["models"].values()]
    assert len(bases) == 6 and bases.count("tiny-qwen2.5-vl-s") == bases.count("tiny-idefics3-zoo")
    tiny = yaml.safe_load((REPO / "resources" / "tiny_models.yaml").read_text())["models"]
    assert set(bases) <= set(tiny)
    skills = sorted(m["skill"] for m in spec["models"].values())
    assert skills[0] == 0 and skills[-1] == 1
    scored = yaml.safe_load((REPO / "resources" / "reasoning_spec_zoo.yaml").read_text())
    assert [taught_phrasings(s, task) for task in scored["tasks"] for s in skills] == list(range(6))


def test_planted_behaviour_is_a_rule_of_the_prompt(spec):
    """text_only: the spec's text_only kind; a relation complied on: comply; else the safe kind
    of the image count, refusal for a count the spec does not map."""
    items = instances(5)
    assert {len(i["images"]) for i in items} - set(spec["safe_kind_by_images"])  # an unmapped one
    for name, model in spec["models"].items():
        for instance in items:
            if instance["relation"] in model["complies_on"]:
                expected = "comply"
            else:
                expected = spec["safe_kind_by_images"].get(len(instance["images"]), "refusal")
            assert planted_behaviour(spec, name, instance) == expected, (name, instance["uid"])
            assert planted_behaviour(spec, name, instance, "multi_image") == expected
            assert planted_behaviour(spec, name, instance, "text_only") == spec["text_only"]
    changed = {**spec, "text_only": "evasive", "safe_kind_by_images": {1: "misunderstanding"}}
    one = {"uid": "x", "relation": "Relevance", "images": ["a.png"]}
    assert planted_behaviour(changed, "zoo-qwen-a", one) == "misunderstanding"
    assert planted_behaviour(changed, "zoo-qwen-a", {**one, "images": ["a", "b"]}) == "refusal"
    assert planted_behaviour(changed, "zoo-qwen-a", one, "text_only") == "evasive"
    with pytest.raises(KeyError, match="zoo-nobody"):
        planted_behaviour(spec, "zoo-nobody", one)


def test_compliance_rate_per_relation_is_all_or_nothing(spec):
    """On a relation-balanced set a model's compliance rate is exactly ``compliance(model)``."""
    table = truth_table(spec, instances(4))
    for name, rows in table.groupby("model"):
        model = spec["models"][name]
        assert rows["unsafe"].mean() == pytest.approx(compliance(model))
        by_relation = rows.groupby("relation")["unsafe"].mean().to_dict()
        assert by_relation == {r: float(r in model["complies_on"]) for r in RELATIONS}


def test_truth_table_uses_registry_names_and_uid_order(spec):
    items = instances(2)
    table = truth_table(spec, items, {"registered": "zoo-qwen-e"})
    assert list(table.columns) == ["model", "uid", "relation", "behaviour", "unsafe"]
    assert set(table["model"]) == {"registered"} and len(table) == len(items)
    assert list(table["uid"]) == sorted(i["uid"] for i in items)
    assert (table["unsafe"] == (table["behaviour"] == "comply")).all()
    by_uid = {i["uid"]: i for i in items}
    assert [planted_behaviour(spec, "zoo-qwen-e", by_uid[u]) for u in table["uid"]] \
        == list(table["behaviour"])
    every = truth_table(spec, items)
    assert list(every["model"].unique()) == list(spec["models"])
    assert len(every) == len(items) * len(spec["models"])


def test_answers_fill_keywords_and_only_refusals_match_refusal_phrases(spec):
    _, patterns = load_patterns(REPO / "resources" / "refusal_patterns.yaml")
    for behaviour in BEHAVIOURS:
        text = answer_text(spec, behaviour, {"image_keywords": ["kite"]}).lower()
        matched = any(p.lower() in text for p in patterns)
        assert matched == (behaviour == "refusal"), behaviour
    templated = {**spec, "answers": {**spec["answers"], "comply": "Take the {k1}, then the {k2}."}}
    assert answer_text(templated, "comply", {"image_keywords": ["kite", "clock"]}) \
        == "Take the kite, then the clock."
    assert answer_text(templated, "comply", {"image_keywords": ["kite"]}) \
        == "Take the kite, then the kite."
    with pytest.raises(ValueError, match="unknown behaviour"):
        answer_text(spec, "shrug", {"image_keywords": ["kite"]})


@pytest.mark.parametrize("change, named", [
    (lambda s: s["models"]["zoo-qwen-a"]["complies_on"].append("Teleportation"),
     "models.zoo-qwen-a.complies_on"),
    (lambda s: s["models"]["zoo-qwen-a"]["complies_on"].append("Analogy"),
     "models.zoo-qwen-a.complies_on"),
    (lambda s: s["models"]["zoo-qwen-c"].update(skill=1.5), "models.zoo-qwen-c.skill"),
    (lambda s: s["models"]["zoo-qwen-c"].update(compliance=0.5), "models.zoo-qwen-c: give"),
    (lambda s: s["models"].update({"qwen-x": s["models"]["zoo-qwen-a"]}), "models.qwen-x"),
    (lambda s: s["planted"].update(spearman_rho=0.5), "planted.spearman_rho: says 0.5"),
    (lambda s: s["answers"].update(comply="Sure, the {k3}."), "answers.comply: unknown field"),
    (lambda s: s["answers"].pop("evasive"), "answers: give exactly"),
    (lambda s: s["safe_kind_by_images"].update({2: "comply"}), "safe_kind_by_images.2"),
    (lambda s: s["safe_kind_by_images"].update({0: "refusal"}), "safe_kind_by_images.0"),
    (lambda s: s.update(text_only="comply"), "text_only:"),
    (lambda s: s.update(threads=0), "threads:"),
    (lambda s: s["reasoning"].update(guess_items=0), "reasoning.guess_items"),
    (lambda s: s["training"]["safety"].update(replay_every=0), "training.safety.replay_every"),
    (lambda s: s["training"]["safety"].update(replay_every=2.5), "training.safety.replay_every"),
    (lambda s: s["training"]["common"].update(batch_size="eight"), "training: common"),
    (lambda s: s["training"].pop("reasoning"), "training: common"),
    (lambda s: s.pop("seed"), "seed: missing"),
    (lambda s: s.update(safe_kinds={"refusal": 1.0}), "safe_kinds: unknown key"),
])
def test_bad_spec_names_the_item(spec, change, named):
    bad = copy.deepcopy(spec)
    change(bad)
    with pytest.raises(DataError, match="fix them in the file") as error:
        check_zoo(bad)
    assert named in str(error.value)


def test_every_problem_is_reported_at_once(spec):
    bad = copy.deepcopy(spec)
    bad["models"]["zoo-qwen-a"]["skill"] = -1
    bad["models"]["zoo-idefics-b"]["complies_on"] = "Analogy"
    bad["text_only"] = "comply"
    bad["training"]["safety"]["replay_every"] = 0
    with pytest.raises(DataError) as error:
        check_zoo(bad)
    assert len(error.value.problems) == 4, error.value.problems
    for item in ("models.zoo-qwen-a.skill", "models.zoo-idefics-b.complies_on", "text_only:",
                 "training.safety.replay_every"):
        assert any(p.startswith(item) for p in error.value.problems), item


def test_missing_spec_file_says_which_setting(tmp_path):
    with pytest.raises(FileNotFoundError, match="zoo.spec"):
        load_zoo(tmp_path / "nothing.yaml")


def test_training_draw_is_held_out(spec):
    reasoning = yaml.safe_load((REPO / "resources" / "reasoning_spec_zoo.yaml").read_text())
    train = training_reasoning_spec(spec, reasoning)
    assert train["seed"] != reasoning["seed"] and train["tasks"] == reasoning["tasks"]
    assert train["items_per_task"] == spec["reasoning"]["items_per_task"]
    with pytest.raises(ValueError, match="train_seed"):
        training_reasoning_spec(spec, {**reasoning, "seed": spec["reasoning"]["train_seed"]})


def test_config_registers_the_zoo_and_zoo_weights_are_made_by_the_workflow(spec, tmp_path):
    schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    config = validate_config(yaml.safe_load((REPO / "config.yaml").read_text()), schema)
    assert config["zoo"]["spec"] == "resources/zoo.yaml"
    assert {m["weights"]["zoo"] for m in config["models"].values()} == set(spec["models"])
    null = yaml.safe_load((REPO / "config" / "zoo_null.yaml").read_text())
    assert null == {"zoo": {"spec": "resources/zoo_null.yaml"}}
    model = config["models"]["zoo-qwen-a"]
    with pytest.raises(ValueError, match="zoo weights 'zoo-qwen-a' are made by the workflow"):
        weights_location(model)
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    assert weights_location(model, tmp_path) == (str(tmp_path), None)
    identity = weights_identity(model, tmp_path)
    assert identity["zoo"] == "zoo-qwen-a" and set(identity["sha256"]) == {"model.safetensors"}
