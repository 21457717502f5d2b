"""`pitcrew diagnose`: collect evidence (live, or from a bundle with --snapshot), name root causes,
print them (exit 0: nothing warning or worse; 1: such findings; 2: bad usage or unreadable input)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from bot.cli.common import load_cli_config, report_config_error
from bot.config import ConfigError
from bot.diagnose import (
    Diagnosis,
    collect_and_diagnose,
    diagnose,
    render_json,
    render_text,
    settings_from_config,
)
from bot.evidence import Evidence, Scope

if TYPE_CHECKING:
    from bot.cluster import Cluster
    from bot.hosts import Hosts
    from handlers.base import Settings


def _fail(message: str) -> int:
    print(f"pitcrew diagnose: {message}", file=sys.stderr)
    return 2


def cli_diagnose(args: argparse.Namespace) -> int:
    from bot.snapshot import BundleError, read_bundle, write_bundle

    try:
        config = load_cli_config(args)  # --config (defaults without), --kubeconfig / --context applied
    except ConfigError as exc:
        return report_config_error("diagnose", exc)
    except OSError as exc:
        return _fail(f"cannot read config {args.config}: {exc}")
    settings = settings_from_config(config)
    namespaces: list[str] = list(args.namespace or [])

    if args.snapshot and args.save:
        return _fail("--save writes a bundle of the live cluster; it cannot be combined with --snapshot")
    if args.snapshot:
        try:
            evidence = read_bundle(args.snapshot, namespaces=namespaces)
        except BundleError as exc:
            return _fail(str(exc))
        namespaced = (
            evidence.pods,
            evidence.events,
            evidence.services,
            evidence.workloads,
            evidence.pvcs,
            evidence.jobs,
            evidence.cronjobs,
            evidence.ingresses,
            evidence.hpas,
            evidence.pdbs,
        )
        if namespaces and not any(namespaced):
            # A mistyped -n would otherwise read as "no problems found".
            return _fail(f"{args.snapshot}: the bundle holds no objects in namespace {', '.join(namespaces)}")
        diagnosis = diagnose(evidence, settings=settings)
    else:
        from bot.cluster import Cluster, ClusterError
        from bot.hosts import Hosts

        namespaces = namespaces or list(config.cluster.namespaces)
        try:
            cluster = Cluster.from_config(config.cluster)
        except ClusterError as exc:
            return _fail(str(exc))
        try:
            evidence, diagnosis = asyncio.run(
                _live(
                    cluster,
                    Scope(tuple(namespaces)),
                    settings,
                    hosts=Hosts(config.hosts) if config.hosts else None,
                    keep_raw=bool(args.save),
                )
            )
        except ClusterError as exc:
            return _fail(str(exc))
        if args.save:
            try:
                path = write_bundle(evidence, args.save, analysis=render_text(diagnosis))
            except (BundleError, OSError) as exc:
                return _fail(f"cannot write bundle: {exc}")
            print(f"bundle written to {path}", file=sys.stderr)

    print(render_json(diagnosis) if args.output == "json" else render_text(diagnosis))
    return 1 if diagnosis.has_problems else 0


async def _live(
    cluster: Cluster, scope: Scope, settings: Settings, *, hosts: Hosts | None, keep_raw: bool = False
) -> tuple[Evidence, Diagnosis]:
    async with cluster:
        await cluster.require_reachable()  # an unreachable cluster is an error, not an empty one
        return await collect_and_diagnose(cluster, scope, settings=settings, hosts=hosts, keep_raw=keep_raw)
