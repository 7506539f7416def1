"""Run one benchmark measurement in a new spawned process, so its peak memory is its own."""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor


def fresh(function, *args):
    """Call ``function`` in a new spawned process and return its result."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as executor:
        return executor.submit(function, *args).result()
