"""`pitcrew completion bash|zsh`: scripts generated from the real parser by shtab. The bash one is
sourced in a real bash and asked to complete, as a shell asks it on <Tab>."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import VERBS, build_parser, main

REPO = Path(__file__).resolve().parent.parent


def _script(shell: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["completion", shell]) == 0
    return capsys.readouterr().out


def _complete(script: Path, *words: str) -> list[str]:
    """What bash offers for the last of `words` (the word being typed)."""
    quoted = " ".join(f"'{w}'" for w in ("pitcrew", *words))
    program = (
        f"source {script}; COMP_WORDS=({quoted}); COMP_CWORD={len(words)}; "
        'COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}; _shtab_pitcrew; '
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    proc = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30, check=True)
    return [line for line in proc.stdout.splitlines() if line]


def test_bash_completes_verbs_flags_and_choices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "completion.bash"
    script.write_text(_script("bash", capsys))
    work = tmp_path / "work"
    work.mkdir()
    assert subprocess.run(["bash", "-n", str(script)], timeout=30).returncode == 0
    assert set(_complete(script, "")) >= set(VERBS) - {"completion"} | {"completion"}
    assert _complete(script, "dia") == ["diagnose"]
    assert "--output" in _complete(script, "diagnose", "--out")
    assert _complete(script, "history", "-o", "") == ["text", "json"]
    assert _complete(script, "completion", "") == ["bash", "zsh"]
    # Path arguments complete as paths (a file in the current folder is offered).
    (work / "pitcrew.yaml").write_text("{}")
    offered = subprocess.run(
        [
            "bash",
            "-c",
            f"cd {work}; source {script}; COMP_WORDS=(pitcrew diagnose --config pit); COMP_CWORD=3;"
            ' COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}; _shtab_pitcrew; echo "${COMPREPLY[@]}"',
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    assert offered == ["pitcrew.yaml"]


def test_zsh_script_defines_the_completion_for_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    script = _script("zsh", capsys)
    assert script.startswith("#compdef pitcrew\n")
    for verb in VERBS:
        assert f"    {verb}:'" in script, verb
    assert "--kubeconfig" in script and "--namespace" in script


def test_the_script_follows_the_parser_not_a_copy(capsys: pytest.CaptureFixture[str]) -> None:
    # Every flag of every verb, as argparse knows it, is in the generated script.
    script = _script("bash", capsys)
    sub = next(a for a in build_parser()._actions if a.dest == "verb")
    for name, parser in sub.choices.items():  # type: ignore[union-attr]
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in script, (name, flag)


def test_an_unknown_shell_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "completion", "fish"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "invalid choice: 'fish'" in proc.stderr
