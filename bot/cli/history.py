"""`pitcrew history`: incidents, plans, approvals and outcomes from the store, as text or JSON."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from bot.cli.common import report_config_error
from bot.config import Config, ConfigError, load_config
from bot.history import History, load_history, render_json, render_text
from bot.store import StoreError, open_store


def cli_history(args: argparse.Namespace) -> int:
    """`pitcrew history`: 0 always when the store can be read, 2 on bad config / unreadable store."""
    if args.limit < 1:
        print("pitcrew history: --limit must be at least 1", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config) if args.config else Config()
    except ConfigError as exc:
        return report_config_error("history", exc)

    if config.store.url is None and not os.path.exists(config.store.sqlite_path):
        # Opening would create an empty store and report "nothing recorded" about the wrong file.
        where = "" if args.config else " (the default; --config names the service's config)"
        print(
            f"pitcrew history: cannot read the store {config.store.sqlite_path}: no such file{where}",
            file=sys.stderr,
        )
        return 2

    async def run() -> History:
        store = await open_store(config.store)
        try:
            return await load_history(store, limit=args.limit)
        finally:
            await store.close()

    try:
        history = asyncio.run(run())
    except (StoreError, OSError) as exc:
        where = config.store.url or config.store.sqlite_path
        print(f"pitcrew history: cannot read the store {where}: {exc}", file=sys.stderr)
        return 2
    print(render_json(history) if args.output == "json" else render_text(history), end="")
    return 0
