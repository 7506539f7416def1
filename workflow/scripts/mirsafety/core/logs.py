"""Logging for rule scripts: everything, progress bars included, goes to the rule's log file.

Only a failure also reaches the console: Snakemake says no more than "check log file(s)", so
the rule prints the first problems itself, on the stderr it started with.
"""

import functools
import logging
import sys

from mirsafety.core.errors import DataError

CONSOLE_PROBLEMS = 5  # problems of a DataError shown on the console; the log holds them all
CONSOLE_LINES = 8  # lines of any other error's message shown on the console


def to_file(path) -> None:
    """Send logging and stderr (where tqdm draws) to ``path`` for the rest of the script."""
    stream = open(path, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives until exit
    sys.stderr = stream
    logging.basicConfig(
        stream=stream, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def console_summary(rule_name: str, error: Exception, log_path) -> str:
    """The start of a rule's error, for the console: a DataError's headline and first problems,
    or the first lines of any other error, then where the full text is."""
    if isinstance(error, DataError):
        text = error.listing(CONSOLE_PROBLEMS)
    else:
        lines = f"{type(error).__name__}: {error}".splitlines()
        if len(lines) > CONSOLE_LINES:
            lines = lines[:CONSOLE_LINES] + ["  ..."]
        text = "\n".join(lines)
    return f"{rule_name} failed: {text}\nThe full error is in {log_path}\n"


def rule_entry(rule):
    """Mark a function of a stage's ``rules.py`` as the body of one rule.

    Such a function is named after its rule and takes the ``snakemake`` object the rule's script
    is given; it reads the rule's input, output, params, wildcards and threads and calls library
    functions that take plain arguments, so the library stays testable without Snakemake. The
    wrapper sends logging to the rule's log file before it runs, so no rule can forget to, and
    prints the start of any error to the console (the traceback still goes to the log).
    """

    @functools.wraps(rule)
    def entry(smk):
        to_file(smk.log[0])
        try:
            return rule(smk)
        except Exception as error:
            sys.__stderr__.write(console_summary(rule.__name__, error, smk.log[0]))
            sys.__stderr__.flush()
            raise

    return entry
