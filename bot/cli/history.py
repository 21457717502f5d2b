"""`pitcrew history`: incidents, plans, approvals and outcomes from the store, as text or JSON."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.cli.common import report_config_error, store_must_exist
from bot.config import Config, ConfigError, load_config
from bot.history import History, load_history, render_json, render_text
from bot.store import StoreError, open_store


def cli_history(args: argparse.Namespace) -> int:
    """`pitcrew history`: 0 always when the store can be read, 2 on bad config / unreadable store."""
    if args.limit < 1:
        print("pitcrew history: --limit must be at least 1", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config, secrets_required=False) if args.config else Config()
    except ConfigError as exc:
        return report_config_error("history", exc)

    if not store_must_exist("history", config, configured=bool(args.config)):
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
