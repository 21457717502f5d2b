"""`pitcrew validate`: run the validation checks against the live cluster and print them."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.cli.common import load_cli_config, reachable_cluster, report_config_error
from bot.config import ConfigError
from bot.model import CheckResult
from bot.validate import render_json, render_text, validate, worst


def cli_validate(args: argparse.Namespace) -> int:
    """`pitcrew validate`: 0 all pass or warn, 1 any fail, 2 bad config / cluster unreachable."""
    from bot.cluster import ClusterError

    try:
        config = load_cli_config(args)
    except ConfigError as exc:
        return report_config_error("validate", exc)

    async def run() -> list[CheckResult]:
        async with reachable_cluster(config) as cluster:
            return await validate(
                args.namespace or config.cluster.namespaces, cluster=cluster, config=config, since=None
            )

    try:
        results = asyncio.run(run())
    except ClusterError as exc:
        print(f"pitcrew validate: {exc}", file=sys.stderr)
        return 2
    print(render_json(results) if args.output == "json" else render_text(results), end="")
    return 1 if worst(results) == "fail" else 0
