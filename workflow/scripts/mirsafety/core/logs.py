"""Logging for rule scripts: everything, progress bars included, goes to the rule's log file."""

import functools
import logging
import sys


def to_file(path) -> None:
    """Send logging and stderr (where tqdm draws) to ``path`` for the rest of the script."""
    stream = open(path, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives until exit
    sys.stderr = stream
    logging.basicConfig(
        stream=stream, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def rule_entry(rule):
    """Mark a function of a stage's ``rules.py`` as the body of one rule.

    Such a function is named after its rule and takes the ``snakemake`` object the rule's script
    is given; it reads the rule's input, output, params, wildcards and threads and calls library
    functions that take plain arguments, so the library stays testable without Snakemake. The
    wrapper sends logging to the rule's log file before it runs, so no rule can forget to.
    """

    @functools.wraps(rule)
    def entry(smk):
        to_file(smk.log[0])
        return rule(smk)

    return entry
