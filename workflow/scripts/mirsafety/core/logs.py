"""Logging for rule scripts: everything, progress bars included, goes to the rule's log file."""

import logging
import sys


def to_file(path) -> None:
    """Send logging and stderr (where tqdm draws) to ``path`` for the rest of the script."""
    stream = open(path, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives until exit
    sys.stderr = stream
    logging.basicConfig(
        stream=stream, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
