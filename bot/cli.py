"""`pitcrew` command line: argument parsing only; each verb is implemented by the module that owns it.

Flags follow kubectl's spelling (-n/--namespace, -o/--output, --context, --kubeconfig).
Exit codes: 0 ok, 1 problems found / check failed, 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

# verb -> "module:function"; the function takes the parsed args and returns the exit code.
VERBS: dict[str, str] = {
    "serve": "bot.service:cli_serve",
    "check-config": "bot.service:cli_check_config",
    "diagnose": "bot.diagnose:cli_diagnose",
    "remediate": "bot.remediate:cli_remediate",
    "validate": "bot.validate:cli_validate",
    "rollback": "bot.remediate:cli_rollback",
    "history": "bot.history:cli_history",
    "summary": "bot.summary:cli_summary",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse exits 2 on bad usage, which is our contract too; keep its message.
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _cluster_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="pitcrew config file (YAML)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pitcrew", description="Diagnose, remediate and validate a Kubernetes monitoring stack."
    )
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    p = sub.add_parser("serve", help="run the service (webhook intake, Slack, schedules)")
    p.add_argument("--config", "-c", required=True, help="pitcrew config file (YAML)")
    p.add_argument(
        "--insecure-no-webhook-auth",
        action="store_true",
        help="accept Alertmanager webhooks without authentication (testing only)",
    )

    p = sub.add_parser("check-config", help="validate a config file; prints ok or one line per problem")
    p.add_argument("file")

    p = sub.add_parser("diagnose", help="collect evidence and name root causes")
    _cluster_flags(p)
    p.add_argument(
        "--namespace", "-n", action="append", default=[], help="namespace to diagnose (repeatable)"
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--snapshot", metavar="DIR", help="diagnose offline from a diagnostic bundle")
    p.add_argument("--save", metavar="DIR", help="also write a diagnostic bundle of the live cluster to DIR")
    p.add_argument("--output", "-o", choices=("text", "json"), default="text")

    p = sub.add_parser("remediate", help="execute the proposed fix, step by step")
    _cluster_flags(p)
    p.add_argument("--namespace", "-n", action="append", default=[])
    p.add_argument("--snapshot", metavar="DIR", help="plan from a bundle (the live cluster is still changed)")
    p.add_argument("--finding", metavar="CODE", help="only the plan of this finding code")
    p.add_argument("--dry-run", action="store_true", help="server-side dry run only; print the diff")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before each step")

    p = sub.add_parser("validate", help="check the monitoring stack is healthy (exit 1 on any fail)")
    _cluster_flags(p)
    p.add_argument("--namespace", "-n", action="append", default=[])
    p.add_argument("--output", "-o", choices=("text", "json"), default="text")

    p = sub.add_parser("rollback", help="restore a backup, or every backup of an incident's execution")
    _cluster_flags(p)
    p.add_argument("id", help="backup id (b-12), execution id (e-3) or incident id (7)")
    p.add_argument("--yes", "-y", action="store_true")

    p = sub.add_parser("history", help="incidents, plans, approvals and outcomes from the store")
    p.add_argument("--config", "-c", help="pitcrew config file (YAML)")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--output", "-o", choices=("text", "json"), default="text")

    p = sub.add_parser("summary", help="health summary of the monitoring namespaces")
    _cluster_flags(p)
    p.add_argument("--namespace", "-n", action="append", default=[])
    p.add_argument("--snapshot", metavar="DIR", help="summarize offline from a diagnostic bundle")
    p.add_argument("--output", "-o", choices=("text", "json"), default="text")
    return parser


def _resolve(spec: str) -> Callable[[argparse.Namespace], int]:
    module_name, func_name = spec.split(":")
    func: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module_name), func_name)
    return func


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _resolve(VERBS[args.verb])(args)
    except BrokenPipeError:
        # The reader stopped early (`pitcrew diagnose | head`): not an error. Point stdout at
        # /dev/null so the interpreter's final flush does not raise again (Python's documented recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
