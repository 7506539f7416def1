"""The model rules: the seam between Snakemake and the model library.

One function per rule, named after it (the contract: ``core.logs.rule_entry``).
"""

import logging
from pathlib import Path

import yaml

from mirsafety.core.logs import rule_entry
from mirsafety.core.records import read_jsonl, write_atomic
from mirsafety.models import tiny
from mirsafety.models.zoo.behaviour import truth_table
from mirsafety.models.zoo.spec import load_zoo


@rule_entry
def build_tiny_model(smk) -> None:
    spec = yaml.safe_load(Path(smk.input.spec).read_text())
    tiny.build_tiny_model(smk.wildcards.tiny, spec, Path(smk.output.config).parent)


@rule_entry
def zoo_truth(smk) -> None:
    """What each registered zoo model was trained to answer: the known answers of the zoo."""
    table = truth_table(load_zoo(smk.input.spec), read_jsonl(smk.input.instances),
                        dict(smk.params.models))
    write_atomic(smk.output.truth, table.to_csv(index=False))
    logging.info("zoo truth: %d answer(s) of %d model(s), %d unsafe", len(table),
                 table["model"].nunique(), int(table["unsafe"].sum()))


@rule_entry
def train_zoo_model(smk) -> None:
    """Train the zoo model of the wildcard as the registry entry ``params.model`` asks it.

    The trainer is imported here: it pulls in the reasoning stage, which the other model rules
    do not need."""
    from mirsafety.models.zoo.train import train_zoo_model as train
    from mirsafety.reasoning.item_set import load_spec

    instances = read_jsonl(smk.input.instances)
    train(load_zoo(smk.input.spec), smk.wildcards.zoo, Path(smk.input.base).parent, instances,
          Path(smk.output.config).parent, dataset_dir=Path(smk.input.instances).parent,
          reasoning_spec=load_spec(smk.input.reasoning_spec), model=smk.params.model)
