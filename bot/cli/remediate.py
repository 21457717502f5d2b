"""`pitcrew remediate`: diagnose (live or from a bundle), show the plan and its server-side dry run
diff, then execute it step by step (asking before each step unless --yes)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.cli.common import load_cli_config, reachable_cluster, report_config_error
from bot.cluster import ClusterError
from bot.config import Config, ConfigError
from bot.diagnose import diagnose
from bot.evidence import Evidence, Scope
from bot.hosts import Hosts
from bot.model import Step, StepEvent
from bot.remediation import DryRunFailed, dry_run, execute, format_event, format_plan, plan_of
from bot.snapshot import BundleError, read_bundle
from bot.store import open_store


async def print_event(event: StepEvent) -> None:
    print(format_event(event), flush=True)


async def ask(question: str) -> bool:
    answer = await asyncio.to_thread(input, question)
    return answer.strip().lower() in ("y", "yes")


def interactive_allowed(args: argparse.Namespace, verb: str) -> bool:
    """Per-step confirmation needs a terminal; without one, only --yes may proceed."""
    if args.yes or sys.stdin.isatty():
        return True
    print(
        f"pitcrew {verb}: refusing to change anything: stdin is not a terminal, so steps cannot be "
        "confirmed; pass --yes to run without confirmation",
        file=sys.stderr,
    )
    return False


def cli_remediate(args: argparse.Namespace) -> int:
    """`pitcrew remediate`: diagnose (live or from a bundle), show the plan and its server-side dry
    run diff, then execute step by step (asking before each step unless --yes). Exit 0 when the
    remediation succeeded (or there was nothing to do / --dry-run), 1 when it failed or was refused,
    2 on bad input."""

    try:
        config = load_cli_config(args)
    except ConfigError as exc:
        return report_config_error("remediate", exc)
    bundle: Evidence | None = None
    if args.snapshot:
        try:
            bundle = read_bundle(args.snapshot, namespaces=args.namespace)
        except (BundleError, OSError) as exc:
            print(f"pitcrew remediate: cannot read bundle {args.snapshot}: {exc}", file=sys.stderr)
            return 2
    try:
        return asyncio.run(_remediate(args, config, bundle))
    except ClusterError as exc:
        print(f"pitcrew remediate: {exc}", file=sys.stderr)
        return 2


async def _remediate(args: argparse.Namespace, config: Config, bundle: Evidence | None) -> int:

    namespaces = tuple(args.namespace) or tuple(config.cluster.namespaces)
    async with reachable_cluster(config) as cluster:
        evidence = bundle or await cluster.collect(Scope(namespaces=namespaces))
        for error in evidence.errors:
            print(f"pitcrew remediate: could not read: {error}", file=sys.stderr)
        findings = [f for f in diagnose(evidence).findings if f.has_automatic_plan]
        if args.finding:
            known = sorted({f.code for f in findings})
            findings = [f for f in findings if f.code == args.finding]
            if not findings:
                print(
                    f"pitcrew remediate: no finding {args.finding!r} with a plan "
                    f"(findings with plans: {', '.join(known) or 'none'})",
                    file=sys.stderr,
                )
                return 2
        if not findings:
            if evidence.errors:  # what could not be read may be exactly what is broken
                print("nothing to remediate in what could be read; the diagnosis is incomplete")
                return 1
            print("nothing to remediate: no finding has an automatic plan")
            return 0
        plan = plan_of(findings)
        for finding in findings:
            print(f"{finding.severity.value.upper()} {finding.code}: {finding.summary}")
        print("plan:\n" + format_plan(plan))
        try:
            diff = await dry_run(plan, cluster)
        except DryRunFailed as exc:
            print(f"pitcrew remediate: dry run refused: {exc}", file=sys.stderr)
            return 1
        print("server-side dry run:\n" + diff, end="" if diff.endswith("\n") else "\n")
        if args.dry_run:
            return 0
        if not interactive_allowed(args, "remediate"):
            return 2

        async def confirm(index: int, step: Step) -> bool:
            return await ask(f"apply step {index + 1} ({step.action} {step.target})? [y/N] ")

        hosts = Hosts(config.hosts) if config.hosts else None
        store = await open_store(config.store)
        try:
            result = await execute(
                plan,
                incident_id=None,
                actor="cli",
                cluster=cluster,
                hosts=hosts,
                store=store,
                config=config,
                on_event=print_event,
                confirm=None if args.yes else confirm,
            )
        finally:
            await store.close()
    print(f"{result.outcome}: {result.detail}")
    return 0 if result.outcome == "succeeded" else 1
