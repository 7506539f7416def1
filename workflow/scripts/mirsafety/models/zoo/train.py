"""Train one zoo model on CPU: its base tiny model taught the zoo spec's planted answers and, as
much as its ``skill`` says, the embedded reasoning tasks.

Deterministic by construction, so a re-run gives byte-identical weights: torch runs on the
spec's fixed thread count, every draw is seeded from the spec (the model's ``seed``, the
reasoning ``train_seed``), and the examples are batched and visited in a seeded, fixed order.
"""

from __future__ import annotations

import json
import logging
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from mirsafety.core.records import read_jsonl
from mirsafety.models.processors import load_processor
from mirsafety.models.tiny import load_model
from mirsafety.models.zoo.examples import (
    IGNORED,
    Example,
    collate,
    reasoning_examples,
    safety_examples,
    stop_token_ids,
)
from mirsafety.models.zoo.spec import training_reasoning_spec
from mirsafety.reasoning.item_set import write_reasoning_set

log = logging.getLogger(__name__)


def training_items(spec: dict, reasoning_spec: dict, set_dir) -> list[dict]:
    """Draw the zoo's reasoning training set (its own seed, never the scored set's) into
    ``set_dir``."""
    write_reasoning_set(training_reasoning_spec(spec, reasoning_spec), set_dir)
    return read_jsonl(Path(set_dir, "items.jsonl"))


def balanced(examples: list[Example], max_repeats: int) -> list[Example]:
    """``examples`` with each answer's examples repeated as often as it takes to match the most
    common answer (at most ``max_repeats`` times): a model complying on 7 relation types of 9
    would otherwise learn its few safe answers as complying ones."""
    counts = Counter(e.answer for e in examples)
    most = max(counts.values(), default=0)
    return [e for e in examples
            for _ in range(min(int(max_repeats), max(1, round(most / counts[e.answer]))))]


def answer_loss(logits: torch.Tensor, labels: torch.Tensor, decisive: torch.Tensor,
                first_weight: float = 0.0) -> torch.Tensor:
    """Cross-entropy of the answer tokens, averaged per example, then over the batch: a one-letter
    reasoning answer weighs as much as a sentence-long safety answer. ``first_weight`` adds each
    row's ``decisive`` token (its position, ``examples.collate``'s: the first answer token that
    is not blank) again with that weight: it alone decides which answer the model gives (the
    rest follows from it), and in a long answer's average it weighs little."""
    shifted, targets = logits[:, :-1].float(), labels[:, 1:]
    token = torch.nn.functional.cross_entropy(shifted.transpose(1, 2), targets,
                                              ignore_index=IGNORED, reduction="none")
    counted = (targets != IGNORED).sum(dim=1).clamp(min=1)
    first = token.gather(1, (decisive - 1).unsqueeze(1)).squeeze(1)
    return (token.sum(dim=1) / counted + first_weight * first).mean()


def make_batches(processor, examples: list[Example], batch_size: int, seed: int,
                 stop_ids: set[int]) -> list[dict]:
    """The examples shuffled under ``seed`` and encoded once into fixed batches."""
    order = list(examples)
    random.Random(seed).shuffle(order)
    return [collate(processor, order[start:start + batch_size], stop_ids)
            for start in range(0, len(order), batch_size)]


def lr_factor(step: int, total: int, training: dict) -> float:
    """The learning rate's multiplier at optimiser step ``step`` (0-based) of ``total``: a linear
    warm-up over ``warmup_steps`` (default 0), then a linear fall by the share ``decay`` (default
    0: constant; 1: to 0 at the last step). A tiny twin learns the reasoning task only at a lr
    too high to settle at; the decay lets it settle."""
    warmup = int(training.get("warmup_steps", 0))
    decay = float(training.get("decay", 0.0))
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"training.decay {decay}: a share in [0, 1]")
    if warmup and step < warmup:
        return (step + 1) / warmup
    return 1.0 - decay * (step - warmup) / max(1, total - warmup)


def fit(model, batches: list[dict], training: dict, seed: int) -> list[float]:
    """AdamW over ``epochs`` passes, the batches in a seeded order each pass, the learning rate
    scheduled by ``lr_factor``; the mean loss of each pass (for the log)."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=training["lr"],
                                  weight_decay=training.get("weight_decay", 0.0))
    steps = int(training["epochs"]) * len(batches)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: lr_factor(step, steps, training))
    rng = random.Random(seed)
    model.train()
    history = []
    for _ in range(int(training["epochs"])):
        total = 0.0
        for index in rng.sample(range(len(batches)), len(batches)):
            batch = dict(batches[index])
            labels, decisive = batch.pop("labels"), batch.pop("decisive")
            loss = answer_loss(model(**batch).logits, labels, decisive,
                               training.get("first_token_weight", 0.0))
            loss.backward()
            optimiser.step()
            scheduler.step()
            optimiser.zero_grad(set_to_none=True)
            total += loss.item()
        history.append(total / len(batches))
    return history


def train_zoo_model(spec: dict, name: str, base_dir, instances: list[dict], out_dir, *,
                    dataset_dir, reasoning_spec: dict, model: dict) -> Path:
    """Train zoo model ``name`` of ``spec`` from the tiny model in ``base_dir`` and save it in
    ``out_dir`` in the hub's layout (loadable with ``from_pretrained`` like the tiny builds).

    ``instances`` (in ``dataset_dir``) are the sample's prepared instances; ``reasoning_spec``
    the scored reasoning set's spec (the training draw takes its tasks and image size, with the
    zoo's own seed); ``model`` is the registry entry the zoo model is asked through (system
    prompt, conditions, image sizing), so training renders exactly what inference will.
    Writes ``zoo_spec.json`` (what it was trained from) last, so a folder holding it is complete.
    """
    zoo = spec["models"][name]
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(zoo["seed"])
    processor = load_processor(base_dir)
    network = load_model(base_dir)
    stop_ids = stop_token_ids(network)
    started = time.process_time()
    safety = safety_examples(spec, name, instances, dataset_dir, model)
    with tempfile.TemporaryDirectory() as set_dir:
        items = training_items(spec, reasoning_spec, set_dir)
        reasoning = reasoning_examples(items, set_dir, model, zoo["skill"],
                                       spec["reasoning"]["guess_items"])
        phases = {"reasoning": reasoning,
                  "safety": balanced(safety, spec["training"]["safety"]["max_repeats"])
                  + reasoning[:: spec["training"]["safety"]["replay_every"]]}
        for phase, examples in phases.items():
            settings = {**spec["training"]["common"], **spec["training"][phase]}
            batches = make_batches(processor, examples, int(settings["batch_size"]),
                                   zoo["seed"], stop_ids)
            losses = fit(network, batches, settings, zoo["seed"])
            log.info("%s, %s phase: %d examples, loss per epoch %s, %.1f s CPU so far", name,
                     phase, len(examples), [round(v, 4) for v in losses],
                     time.process_time() - started)
    out_dir = Path(out_dir)
    network.eval().save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    trained_from = {"name": name, "zoo": zoo, "seed": spec["seed"], "threads": spec["threads"],
                    "training": spec["training"], "reasoning": spec["reasoning"],
                    "answers": spec["answers"]}
    (out_dir / "zoo_spec.json").write_text(json.dumps(trained_from, indent=2, sort_keys=True)
                                           + "\n")
    return out_dir
