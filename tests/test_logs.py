"""A failed rule shows its first problems on the console, not only "check log file(s)"."""

import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from mirsafety.core.logs import rule_entry
from mirsafety.data.hub import HubUnavailable

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"


@pytest.fixture
def rule_process(monkeypatch):
    """Undo what a rule's to_file does to this process (stderr, root logging handlers)."""
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    monkeypatch.setattr(logging.root, "handlers", list(logging.root.handlers))


def failing_rule(error):
    @rule_entry
    def prepare_dataset(smk):
        raise error

    return prepare_dataset


RULE_SCRIPT = """
from types import SimpleNamespace
from mirsafety.core.errors import DataError
from mirsafety.core.logs import rule_entry

@rule_entry
def prepare_dataset(smk):
    raise DataError("12 problem(s) in raw/:",
                    [f"Violence/Analogy/{n}: empty revised_prompt" for n in range(1, 13)])

prepare_dataset(SimpleNamespace(log=[LOG]))
"""


def test_a_data_error_prints_its_first_problems_and_keeps_all_in_the_log(tmp_path):
    """As Snakemake runs a rule's script: a process whose stderr is the console."""
    log = tmp_path / "prepare.log"
    script = tmp_path / "rule.py"
    script.write_text(RULE_SCRIPT.replace("LOG", repr(str(log))))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(SCRIPTS)}, timeout=60)
    problems = [f"Violence/Analogy/{n}: empty revised_prompt" for n in range(1, 13)]
    assert done.returncode == 1
    assert done.stderr == (
        "prepare_dataset failed: 12 problem(s) in raw/:\n"
        + "".join(f"  - {p}\n" for p in problems[:5])
        + f"  ... and 7 more\nThe full error is in {log}\n"
    )
    written = log.read_text()
    assert "Traceback" in written
    assert all(f"  - {p}\n" in written for p in problems)


def test_any_other_error_prints_its_first_lines(tmp_path, capfd, rule_process):
    message = "the hub answered HTTP 500; Retry later.\n" + "\n".join(f"line {n}" for n in range(9))
    log = tmp_path / "download.log"
    with pytest.raises(HubUnavailable):
        failing_rule(HubUnavailable(message))(SimpleNamespace(log=[log]))
    console = capfd.readouterr().err
    assert console.startswith("prepare_dataset failed: HubUnavailable: the hub answered HTTP 500;"
                              " Retry later.\nline 0\n")
    assert "line 6\n  ...\n" in console and "line 7" not in console
    assert console.endswith(f"The full error is in {log}\n")


def test_a_rule_that_succeeds_prints_nothing(tmp_path, capfd, rule_process):
    @rule_entry
    def quiet(smk):
        logging.getLogger("quiet").warning("to the log only")
        return 3

    assert quiet(SimpleNamespace(log=[tmp_path / "quiet.log"])) == 3
    assert capfd.readouterr().err == ""
