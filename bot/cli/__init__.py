"""`pitcrew` command line: argument parsing and dispatch; each verb is one module of this package
(bot/cli/VERB.py, its `cli_VERB(args) -> exit code`), shared config loading in bot/cli/common.py.

Flags follow kubectl's spelling (-n/--namespace, -o/--output, --context, --kubeconfig).
Exit codes: 0 ok, 1 problems found / check failed, 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse exits 2 on bad usage, which is our contract too; keep its message.
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


EXIT_CODES = "exit codes: 0 ok (healthy), 1 problems found or the action failed, 2 bad usage or input"
CONFIG_HELP = "pitcrew config file (YAML; default: the built-in defaults)"
STORE_CONFIG_HELP = "pitcrew config file (YAML) whose store.path to use (default: ./pitcrew.db)"
NAMESPACE_HELP = "namespace (repeatable; default: the config's cluster.namespaces, i.e. monitoring)"
BUNDLE_NAMESPACE_HELP = NAMESPACE_HELP[:-1] + "; with --snapshot: every namespace in the bundle)"
OUTPUT_HELP = "output format (default: text)"


def _cluster_flags(p: argparse.ArgumentParser, config_help: str = CONFIG_HELP) -> None:
    p.add_argument("--config", "-c", help=config_help)
    p.add_argument(
        "--kubeconfig",
        help="kubeconfig file (default: the config's cluster.kubeconfig; else the service account "
        "inside a pod, else $KUBECONFIG or ~/.kube/config)",
    )
    p.add_argument("--context", help="kubeconfig context (default: its current context)")


def _verb(sub: argparse._SubParsersAction[_Parser], name: str, summary: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=summary, description=summary, epilog=EXIT_CODES)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pitcrew",
        description="Diagnose, remediate and validate a Kubernetes monitoring stack.",
        epilog="`pitcrew VERB --help` shows a verb's options. " + EXIT_CODES,
    )
    from bot.version import version

    parser.add_argument("--version", action="version", version=f"pitcrew {version()}")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    p = _verb(sub, "serve", "run the service (webhook intake, Slack, schedules) until SIGTERM")
    p.add_argument("--config", "-c", required=True, help="pitcrew config file (YAML)")
    p.add_argument(
        "--insecure-no-webhook-auth",
        action="store_true",
        help="accept Alertmanager webhooks without authentication (testing only)",
    )

    p = _verb(sub, "check-config", "validate a config file; prints ok or one line per problem")
    p.add_argument("file", help="pitcrew config file (YAML); the *_env variables it names must be set")
    p.add_argument(
        "--connect",
        action="store_true",
        help="also try the store: connect to store.url (PostgreSQL), or check store.path's folder (SQLite)",
    )

    p = _verb(sub, "store", "the store: migrate its schema, or copy a SQLite store into PostgreSQL")
    store_sub = p.add_subparsers(
        dest="store_verb",
        required=True,
        parser_class=_Parser,
        help="migrate or copy (pitcrew store ACTION --help)",
    )
    q = store_sub.add_parser(
        "migrate", help="bring the configured store to this pitcrew's schema version", epilog=EXIT_CODES
    )
    q.add_argument("--config", "-c", help=STORE_CONFIG_HELP)
    q = store_sub.add_parser(
        "copy", help="copy a SQLite store into an empty PostgreSQL database (ids kept)", epilog=EXIT_CODES
    )
    q.add_argument(
        "--from", dest="source", required=True, metavar="sqlite:PATH", help="the SQLite store file"
    )
    q.add_argument(
        "--to", dest="target", required=True, metavar="postgresql://USER@HOST:PORT/DB", help="the new store"
    )
    q.add_argument(
        "--password-env",
        default="PGPASSWORD",
        metavar="VAR",
        help="environment variable holding the PostgreSQL password (default: PGPASSWORD)",
    )

    p = _verb(sub, "diagnose", "collect evidence and name root causes")
    _cluster_flags(p)
    p.add_argument("--namespace", "-n", action="append", default=[], help=BUNDLE_NAMESPACE_HELP)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--snapshot", metavar="DIR", help="diagnose offline from a diagnostic bundle")
    p.add_argument("--save", metavar="DIR", help="also write a diagnostic bundle of the live cluster to DIR")
    p.add_argument("--output", "-o", choices=("text", "json"), default="text", help=OUTPUT_HELP)

    p = _verb(sub, "remediate", "execute the proposed fix, step by step")
    _cluster_flags(p, STORE_CONFIG_HELP)
    p.add_argument("--namespace", "-n", action="append", default=[], help=BUNDLE_NAMESPACE_HELP)
    p.add_argument(
        "--snapshot",
        metavar="DIR",
        help="plan from the diagnostic bundle DIR, but CHANGE THE LIVE CLUSTER the kubeconfig points at "
        "(each step is confirmed unless --yes; a patch aborts if the live object differs from the bundle)",
    )
    p.add_argument("--finding", metavar="CODE", help="only the plan of this finding code")
    p.add_argument("--dry-run", action="store_true", help="server-side dry run only; print the diff")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before each step")

    p = _verb(sub, "validate", "check the monitoring stack is healthy (exit 1 on any failed check)")
    _cluster_flags(p)
    p.add_argument("--namespace", "-n", action="append", default=[], help=NAMESPACE_HELP)
    p.add_argument("--output", "-o", choices=("text", "json"), default="text", help=OUTPUT_HELP)

    p = _verb(sub, "rollback", "restore a backup, or every backup of an execution or an incident's execution")
    _cluster_flags(p, STORE_CONFIG_HELP)
    p.add_argument("id", help="backup id (b-12), execution id (e-3) or incident id (7)")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before restoring")

    p = _verb(sub, "history", "incidents, plans, approvals and outcomes from the store")
    p.add_argument("--config", "-c", help=STORE_CONFIG_HELP)
    p.add_argument("--limit", type=int, default=20, help="newest incidents to show (default: 20)")
    p.add_argument("--output", "-o", choices=("text", "json"), default="text", help=OUTPUT_HELP)

    p = _verb(sub, "summary", "health summary of the monitoring namespaces")
    _cluster_flags(p, "pitcrew config file (YAML); its store adds incidents and remediations")
    p.add_argument("--namespace", "-n", action="append", default=[], help=NAMESPACE_HELP)
    p.add_argument("--snapshot", metavar="DIR", help="summarize offline from a diagnostic bundle")
    p.add_argument("--output", "-o", choices=("text", "json"), default="text", help=OUTPUT_HELP)

    p = _verb(sub, "completion", "print a shell completion script (bash or zsh) for pitcrew")
    p.add_argument("shell", choices=("bash", "zsh"), help="the shell to complete in")

    p = _verb(sub, "slack", "Slack tools that need no workspace")
    slack_sub = p.add_subparsers(dest="slack_verb", required=True, parser_class=_Parser, help="what to do")
    summary = "print the incident message pitcrew would post (Block Kit JSON) and a Block Kit Builder link"
    pp = slack_sub.add_parser("preview", help=summary, description=summary, epilog=EXIT_CODES)
    pp.add_argument("--snapshot", metavar="DIR", required=True, help="diagnostic bundle to diagnose")
    pp.add_argument("--alert", metavar="FILE", help="Alertmanager webhook body (JSON) the incident is for")
    pp.add_argument("--thread", action="store_true", help="also print the details reply of the thread")
    return parser


# Each verb's module is imported when the verb runs (explicitly, so mypy checks every name): a verb
# pays only for its own imports, and `pitcrew --help` for none.
def _serve(args: argparse.Namespace) -> int:
    from bot.cli.serve import cli_serve

    return cli_serve(args)


def _check_config(args: argparse.Namespace) -> int:
    from bot.cli.check_config import cli_check_config

    return cli_check_config(args)


def _diagnose(args: argparse.Namespace) -> int:
    from bot.cli.diagnose import cli_diagnose

    return cli_diagnose(args)


def _remediate(args: argparse.Namespace) -> int:
    from bot.cli.remediate import cli_remediate

    return cli_remediate(args)


def _validate(args: argparse.Namespace) -> int:
    from bot.cli.validate import cli_validate

    return cli_validate(args)


def _rollback(args: argparse.Namespace) -> int:
    from bot.cli.rollback import cli_rollback

    return cli_rollback(args)


def _history(args: argparse.Namespace) -> int:
    from bot.cli.history import cli_history

    return cli_history(args)


def _summary(args: argparse.Namespace) -> int:
    from bot.cli.summary import cli_summary

    return cli_summary(args)


def _store(args: argparse.Namespace) -> int:
    from bot.cli.store import cli_store

    return cli_store(args)


def _slack(args: argparse.Namespace) -> int:
    from bot.cli.slack import cli_slack

    return cli_slack(args)


def _completion(args: argparse.Namespace) -> int:
    from bot.cli.completion import cli_completion

    return cli_completion(args, build_parser())  # the whole parser, as every verb sees it


# verb -> the function that runs it with the parsed args and returns the exit code.
VERBS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": _serve,
    "check-config": _check_config,
    "diagnose": _diagnose,
    "remediate": _remediate,
    "validate": _validate,
    "rollback": _rollback,
    "history": _history,
    "summary": _summary,
    "slack": _slack,
    "store": _store,
    "completion": _completion,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return VERBS[args.verb](args)
    except BrokenPipeError:
        # The reader stopped early (`pitcrew diagnose | head`): not an error. Point stdout at
        # /dev/null so the interpreter's final flush does not raise again (Python's documented recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
