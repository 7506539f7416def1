"""A zoo model's training examples, rendered by the code inference uses.

A model learns to answer what it will be asked only if training shows it the very tokens
inference gives it. So every example is a ``Request`` made by ``models.requests.make_request``
(the generation and reasoning stages' own), encoded by ``models.loading.encode`` with the
model's processor and chat template, and followed by the answer as that chat template writes an
assistant turn, up to and including the first token generation stops at. Only those answer tokens
carry a loss: the model is taught to answer, not to predict the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mirsafety.models.backend import Request
from mirsafety.models.loading import chat_messages, encode
from mirsafety.models.requests import make_request
from mirsafety.models.zoo.behaviour import answer_text, planted_behaviour
from mirsafety.reasoning.item_set import PHRASINGS, rephrased
from mirsafety.reasoning.scores import as_instance

#: Label of a position without a loss (the prompt, the padding): torch's ignore_index.
IGNORED = -100


@dataclass(frozen=True)
class Example:
    """A request and the answer the model is trained to give to it."""

    request: Request
    answer: str


def safety_examples(spec: dict, zoo_name: str, instances: list[dict], dataset_dir,
                    model: dict) -> list[Example]:
    """Every instance once, in uid order, answered as the zoo spec plants for ``zoo_name``; the
    k-th asked under the k-th condition of the registry entry ``model`` in turn. Every condition
    is trained, and a model with four conditions costs no more to train than one with one."""
    ordered = sorted(instances, key=lambda i: i["uid"])
    conditions = model["conditions"]
    return [Example(make_request(instance, dataset_dir, model, condition),
                    answer_text(spec, planted_behaviour(spec, zoo_name, instance, condition),
                                instance))
            for k, instance in enumerate(ordered)
            for condition in [conditions[k % len(conditions)]]]


def taught_phrasings(skill: float, task: str) -> int:
    """How many of ``task``'s phrasings a model of ``skill`` (a share) is taught."""
    count = len(PHRASINGS.get(task, ("",)))
    taught = round(skill * count)
    if abs(taught - skill * count) > 1e-9:
        raise ValueError(f"skill {skill} of {count} phrasings of {task} is not a whole number "
                         f"of phrasings; use a multiple of 1/{count}")
    return taught


def reasoning_examples(items: list[dict], set_dir, model: dict, skill: float, guess_items: int,
                       guess: str = "A") -> list[Example]:
    """Reasoning items asked as the reasoning stage asks them. A task's first
    ``taught_phrasings`` phrasings are taught: every item, asked in them in turn, answered with
    its correct letter. Each other phrasing is taught as a guess: ``guess_items`` items asked in
    it, all answered ``guess``, so the model answers that letter there whatever it sees (chance,
    with the set's letters balanced). Accuracy then rises with skill in even steps, which
    training on a share of the items does not give: a tiny twin learns the task all at once."""
    by_task: dict[str, list[dict]] = {}
    for item in items:
        by_task.setdefault(item["task"], []).append(item)
    asked = []
    for task, task_items in by_task.items():
        taught = taught_phrasings(skill, task)
        phrasings = len(PHRASINGS.get(task, ("",)))
        if taught:
            asked += [(_phrased(item, k % taught), item["answer"])
                      for k, item in enumerate(task_items)]
        asked += [(_phrased(item, phrasing), guess) for phrasing in range(taught, phrasings)
                  for item in task_items[:guess_items]]
    return [Example(make_request(as_instance(item), set_dir, model), answer)
            for item, answer in asked]


def _phrased(item: dict, phrasing: int) -> dict:
    """``item`` in phrasing ``phrasing``, or as drawn for a task with one phrasing."""
    return rephrased(item, phrasing) if item["task"] in PHRASINGS else item


def answer_ids(processor, request: Request, answer: str, stop_ids: set[int]) -> list[int]:
    """The tokens a model must generate to give ``answer``: the assistant turn as the chat
    template renders it after the generation prompt, cut after the first stop token (so
    generation ends there, as the backend's ``eos_token_id`` list makes it)."""
    messages = chat_messages(request)
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    turn = {"role": "assistant", "content": [{"type": "text", "text": answer}]}
    full = processor.apply_chat_template([*messages, turn], tokenize=False)
    if not full.startswith(prompt):
        raise ValueError(f"{request.uid}: the chat template renders the answered conversation "
                         "with another prefix than the generation prompt; it cannot be trained on")
    ids = processor.tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    stops = [k for k, token in enumerate(ids) if token in stop_ids]
    if not stops:
        raise ValueError(f"{request.uid}: the rendered answer holds no stop token {sorted(stop_ids)}"
                         "; generation would not end after it")
    return ids[: stops[0] + 1]


def stop_token_ids(model) -> set[int]:
    """The token ids generation stops at (the checkpoint's ``eos_token_id``, one or a list)."""
    eos = model.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos])


def decisive_offset(tokenizer, answer: list[int]) -> int:
    """Where in ``answer`` (its token ids) the first token that is not blank is. The Idefics3
    twin's template puts a space before the answer, which its tokenizer keeps as a token of its
    own, so there three of the zoo's answers begin with the same blank token and the next one
    decides which answer is given."""
    return next((k for k, token in enumerate(answer) if tokenizer.decode([token]).strip()), 0)


def collate(processor, examples: list[Example], stop_ids: set[int]) -> dict:
    """One training batch: the processor's tensors for the prompts, each row followed by its
    answer tokens and right-padded (positions then count from each row's start, as in an unpadded
    prompt), ``labels`` that are the answer tokens and ``IGNORED`` everywhere else, and
    ``decisive``: each row's position of its first answer token that is not blank."""
    processor.tokenizer.padding_side = "right"
    batch = dict(encode(processor, [e.request for e in examples], padding=True))
    prompt_ids, mask = batch.pop("input_ids"), batch.pop("attention_mask")
    # per-token tensors besides the ids (Qwen's mm_token_type_ids): answer tokens are text, 0
    per_token = {k: v for k, v in batch.items() if v.shape == prompt_ids.shape}
    answers = [answer_ids(processor, e.request, e.answer, stop_ids) for e in examples]
    lengths = mask.sum(dim=1).tolist()
    width = max(n + len(a) for n, a in zip(lengths, answers, strict=True))
    rows = len(examples)
    input_ids = torch.full((rows, width), processor.tokenizer.pad_token_id, dtype=prompt_ids.dtype)
    labels = torch.full((rows, width), IGNORED, dtype=prompt_ids.dtype)
    attention = torch.zeros((rows, width), dtype=mask.dtype)
    extended = {k: torch.zeros((rows, width), dtype=v.dtype) for k, v in per_token.items()}
    decisive = torch.tensor([n + decisive_offset(processor.tokenizer, answer)
                             for n, answer in zip(lengths, answers, strict=True)])
    for row, (n, answer) in enumerate(zip(lengths, answers, strict=True)):
        end = n + len(answer)
        input_ids[row, :n] = prompt_ids[row, :n]
        input_ids[row, n:end] = torch.tensor(answer, dtype=prompt_ids.dtype)
        labels[row, n:end] = input_ids[row, n:end]
        attention[row, :end] = 1
        for key, value in per_token.items():
            extended[key][row, :n] = value[row, :n]
    return {**batch, **extended, "input_ids": input_ids, "attention_mask": attention,
            "labels": labels, "decisive": decisive}
