"""`pitcrew completion bash|zsh`: a shell completion script generated from the argparse parser by
shtab, so completion always knows exactly the verbs and flags `pitcrew --help` shows (nothing
hand-written to drift). Install: `pitcrew completion bash > /etc/bash_completion.d/pitcrew`, or for
zsh `pitcrew completion zsh > "${fpath[1]}/_pitcrew"`."""

from __future__ import annotations

import argparse

import shtab

# Arguments whose values are paths: completed as files or folders rather than left to the user.
_FILE_DESTS = frozenset({"config", "kubeconfig", "file", "alert"})
_DIR_METAVARS = frozenset({"DIR"})


def _mark_paths(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _mark_paths(sub)
        elif action.metavar in _DIR_METAVARS:
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
        elif action.dest in _FILE_DESTS:
            action.complete = shtab.FILE  # type: ignore[attr-defined]


def cli_completion(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    _mark_paths(parser)
    print(shtab.complete(parser, shell=args.shell), end="")
    return 0
