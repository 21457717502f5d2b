"""The `pitcrew` entry point itself: usage errors and output piped into a reader that stops early."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main

REPO = Path(__file__).resolve().parent.parent


def test_unknown_verb_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["frobnicate"])
    assert exit_.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_reader_closing_the_pipe_early_is_not_a_crash() -> None:
    # `pitcrew diagnose --snapshot ... | head -1`: the reader is gone by the time pitcrew writes.
    # Closing our end at once (pitcrew needs far longer to import and diagnose) makes that certain.
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "diagnose", "--snapshot", "examples/seed-incident"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr
