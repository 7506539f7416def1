"""The answer/thinking split, in the MIR code's order."""

import pytest

from mirsafety.core.thinking import split_thinking

CASES = [
    ("plain answer", "Sure, here it is.", "Sure, here it is.", None),
    ("answer tags", "<think>plan</think><answer>the answer</answer>", "the answer", "plan"),
    ("unclosed answer runs to the end", "<think>x</think><answer>to the end", "to the end", "x"),
    ("answer wins over think", "<think>a</think> mid <answer>b</answer>", "b", "a mid"),
    ("after the last </think>", "<think>one</think><think>two</think> final", "final",
     "onetwo"),
    ("kimi tags", "◁think▷hmm◁/think▷The reply.", "The reply.", "hmm"),
    ("think wins over kimi", "◁think▷k◁/think▷ x </think> y", "y", "k x"),
    ("empty thinking is None", "<think></think>Answer", "Answer", None),
    ("cut at the last </answer>, as the authors' code",
     "<answer>part one</answer> and <answer>part two</answer>", "part one and part two", None),
]


@pytest.mark.parametrize("text, answer, thinking", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_auto_order(text, answer, thinking):
    assert split_thinking(text) == (answer, thinking)


def test_format_none_keeps_everything():
    assert split_thinking("<think>a</think>b", "none") == ("<think>a</think>b", None)


def test_explicit_format_applies_only_its_rule():
    assert split_thinking("<answer>x</answer>", "think") == ("<answer>x</answer>", None)
    assert split_thinking("a◁/think▷b", "kimi") == ("b", "a")
