"""`pitcrew rollback ID`: restore a backup ("b-12"), or every backup of an execution ("e-3") or of an
incident's execution ("7")."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from typing import Literal

from bot.cli.common import load_cli_config, reachable_cluster, report_config_error, store_must_exist
from bot.cli.remediate import ask, interactive_allowed, print_event
from bot.cluster import ClusterError
from bot.config import Config, ConfigError
from bot.hosts import Hosts
from bot.remediation import rollback
from bot.store import open_store

RollbackTarget = tuple[Literal["backup", "incident", "execution"], str]


def parse_rollback_id(text: str) -> RollbackTarget | None:
    """ "b-12" a backup, "7" an incident, "e-3" an execution; None if it is none of them."""
    text = text.strip()
    if re.fullmatch(r"b-\d+", text):
        return ("backup", text)
    if re.fullmatch(r"e-\d+", text):
        return ("execution", text[2:])
    if re.fullmatch(r"\d+", text):
        return ("incident", text)
    return None


def cli_rollback(args: argparse.Namespace) -> int:
    """`pitcrew rollback ID`: ID is a backup id ("b-12"), an incident id ("7") or an execution id
    ("e-3"); restores that backup, or every backup of the execution. Exit 0 when restored, 1 if not,
    2 on bad input."""

    target = parse_rollback_id(args.id)
    if target is None:
        print(
            f"pitcrew rollback: {args.id!r} is not a backup id (b-12), an incident id (7) "
            "or an execution id (e-3)",
            file=sys.stderr,
        )
        return 2
    try:
        config = load_cli_config(args)
    except ConfigError as exc:
        return report_config_error("rollback", exc)
    if not store_must_exist("rollback", config, configured=bool(getattr(args, "config", None))):
        return 2  # nothing was ever backed up here: there is nothing to restore
    if not interactive_allowed(args, "rollback"):
        return 2
    try:
        return asyncio.run(_rollback_cli(args, config, target))
    except ClusterError as exc:
        print(f"pitcrew rollback: {exc}; nothing changed", file=sys.stderr)
        return 2


async def _rollback_cli(args: argparse.Namespace, config: Config, target: RollbackTarget) -> int:

    kind, value = target
    store = await open_store(config.store)
    try:
        what: int | str
        if kind == "backup":
            backup = await store.get_backup(value)
            if backup is None:
                print(f"pitcrew rollback: backup {value} does not exist", file=sys.stderr)
                return 2
            what, description = backup.id, f"backup {backup.id} of {backup.target}"
        else:
            if kind == "incident":
                executions = [
                    e for e in await store.list_executions(int(value)) if e.incident_id == int(value)
                ]
                if not executions:
                    print(
                        f"pitcrew rollback: incident {value} has no execution to roll back", file=sys.stderr
                    )
                    return 2
                what = executions[0].id
            else:
                what = int(value)
                if await store.get_execution(what) is None:
                    print(f"pitcrew rollback: execution e-{what} does not exist", file=sys.stderr)
                    return 2
            backups = await store.list_backups(what)
            if not backups:
                print(f"pitcrew rollback: execution e-{what} has no backups to restore", file=sys.stderr)
                return 2
            description = f"every backup of execution e-{what}: " + ", ".join(b.id for b in backups)
        print(f"restoring {description}")
        if not args.yes and not await ask("proceed? [y/N] "):
            print("nothing changed")
            return 1
        async with reachable_cluster(config) as cluster:
            try:
                result = await rollback(
                    what,
                    actor="cli",
                    cluster=cluster,
                    hosts=Hosts(config.hosts) if config.hosts else None,
                    store=store,
                    on_event=print_event,
                    config=config,
                )
            except LookupError as exc:
                print(f"pitcrew rollback: {exc}", file=sys.stderr)
                return 2
    finally:
        await store.close()
    print(f"{result.outcome}: {result.detail}")
    return 0 if result.outcome == "rolled-back" else 1
