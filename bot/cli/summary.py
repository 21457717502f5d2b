"""`pitcrew summary`: the health summary of the monitoring namespaces, live or from a bundle, as text or
JSON (exit 0 all healthy, 1 problems or the cluster could not be read, 2 bad input)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys

from bot.cli.common import load_cli_config, reachable_cluster, report_config_error
from bot.cluster import ClusterError
from bot.config import Config, ConfigError
from bot.store import StoreBackend, open_store
from bot.summary import HealthSummary, SummaryDeps, build_summary, render_text, summary_to_json


async def _cli_summary(args: argparse.Namespace, config: Config) -> HealthSummary:
    if getattr(args, "snapshot", None) is None:
        # Asked first, like diagnose and validate: "cannot reach the Kubernetes API at URL: REASON"
        # is the whole answer, not a summary of a cluster nothing could be read from.
        async with reachable_cluster(config):
            pass
    store: StoreBackend | None = None
    missing_store = False
    if getattr(args, "config", None):
        # Only with a config file: its store holds incidents, remediations and the previous summary.
        # A store that is not there is said so, never created (an empty one would read "0 incidents").
        missing_store = config.store.url is None and not await asyncio.to_thread(
            os.path.exists, config.store.sqlite_path
        )
        if not missing_store:
            store = await open_store(config.store)
    try:
        deps = SummaryDeps(config=config, store=store, snapshot_dir=getattr(args, "snapshot", None))
        summary = await build_summary(deps, namespaces=args.namespace or None)
        if missing_store:
            summary = dataclasses.replace(
                summary, store_note=f"no pitcrew store at {config.store.sqlite_path}"
            )
        return summary
    finally:
        if store is not None:
            await store.close()


def cli_summary(args: argparse.Namespace) -> int:
    """`pitcrew summary`: exit 0 all healthy, 1 problems (or the cluster could not be read), 2 bad input."""
    try:
        config = load_cli_config(args)  # --config (defaults without), --kubeconfig / --context applied
    except ConfigError as exc:
        return report_config_error("summary", exc)
    snapshot = getattr(args, "snapshot", None)
    if snapshot is not None and not os.path.isdir(snapshot):
        print(f"pitcrew summary: --snapshot {snapshot}: not a directory", file=sys.stderr)
        return 2
    try:
        summary = asyncio.run(_cli_summary(args, config))
    except ClusterError as exc:  # no kubeconfig, or the API server is down or refusing: one line
        print(f"pitcrew summary: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the store file could not be opened
        print(f"pitcrew summary: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if args.output == "json":
        print(json.dumps(summary_to_json(summary), indent=2, sort_keys=True, allow_nan=False))
    else:
        sys.stdout.write(render_text(summary))
    if (
        snapshot is not None
        and summary.collection_error is not None
        and summary.source.startswith("snapshot")
    ):
        return 2  # an unreadable bundle is bad input
    return 0 if not summary.problems else 1
