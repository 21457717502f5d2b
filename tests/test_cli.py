"""The `pitcrew` entry point itself: usage errors and output piped into a reader that stops early."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import VERBS, build_parser, main

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


def test_no_kubeconfig_says_which_file_is_missing(tmp_path: Path) -> None:
    # A fresh machine: no ~/.kube/config, no $KUBECONFIG, not in a pod.
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "diagnose"],
        cwd=REPO,
        env={**env, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "pitcrew diagnose: cannot load kubeconfig ~/.kube/config"
        " (the default; set cluster.kubeconfig or $KUBECONFIG): no such file"
    )


def test_missing_kubeconfig_given_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "kubeconfig"
    assert main(["validate", "--kubeconfig", str(missing)]) == 2
    assert (
        capsys.readouterr().err.strip() == f"pitcrew validate: cannot load kubeconfig {missing}: no such file"
    )


def test_every_option_of_every_verb_explains_itself() -> None:
    parser = build_parser()
    (verbs,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(verbs.choices) == set(VERBS)
    for verb, sub in verbs.choices.items():
        assert "exit codes: 0" in sub.format_help(), verb
        for action in sub._actions:
            assert action.help, f"pitcrew {verb} {action.option_strings or action.dest}: no help text"


@pytest.mark.parametrize(
    "argv",
    [["diagnose"], ["remediate"], ["validate"], ["rollback", "b-1"], ["history"], ["summary"]],
    ids=lambda argv: argv[0],
)
def test_every_verb_reports_a_bad_config_the_same_way(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "pitcrew.yaml"
    config.write_text("server:\n  colour: blue\nworkers:\n  concurrency: 0\n")
    assert main([*argv, "--config", str(config)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 2 and captured.out == ""
    assert lines[0].startswith(f"pitcrew {argv[0]}: bad config: server.colour: ")
    assert lines[1].startswith(f"pitcrew {argv[0]}: bad config: workers.concurrency: ")


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.metadata

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"pitcrew {importlib.metadata.version('pitcrew')}\n"


def test_remediate_help_says_a_snapshot_plan_changes_the_live_cluster(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["remediate", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "plan from the diagnostic bundle DIR, but CHANGE THE LIVE CLUSTER the kubeconfig points at" in text
