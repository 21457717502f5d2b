"""`pitcrew check-config FILE [--connect]`: prints ok, or one line per problem (exit 2); with
--connect also tries the store (exit 1 when it is unusable)."""

from __future__ import annotations

import argparse
import asyncio
import os

from bot.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, load_config_file
from bot.config import Config


def cli_check_config(args: argparse.Namespace) -> int:
    config = load_config_file(args.file)
    if config is None:
        return EXIT_BAD_INPUT
    if getattr(args, "connect", False):
        problem = asyncio.run(_check_store(config))
        if problem is not None:
            print(problem)
            return EXIT_FAILED
    print("ok")
    return EXIT_OK


async def _check_store(config: Config) -> str | None:
    """Try the configured store without changing it; None if usable, else one line saying why not."""
    store = config.store
    if store.url is None:
        return _check_sqlite(store.sqlite_path)
    from bot.store import postgres as pg

    try:
        info = await pg.server_info(store)
    except pg.PostgresUnavailable as exc:
        return f"store.url: {exc}"
    print(f"store: PostgreSQL {info.version}, database {info.database} as {info.user}")
    return None


def _check_sqlite(path: str) -> str | None:
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(path):
        if not os.access(path, os.R_OK | os.W_OK):
            return f"store.path: {path} is not readable and writable by this user"
        print(f"store: SQLite file {path}")
    elif not os.path.isdir(folder):
        # `serve` creates the missing folders (bot.app.ensure_store_folder): say whether it can.
        existing = folder
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            return f"store.path: folder {folder} cannot be created ({existing} is not a folder)"
        if not os.access(existing, os.W_OK):
            return (
                f"store.path: folder {folder} does not exist and cannot be created "
                f"({existing} is not writable by this user)"
            )
        print(f"store: SQLite file {path} (serve creates folder {folder} and the file on first start)")
    elif not os.access(folder, os.W_OK):
        return f"store.path: folder {folder} is not writable by this user (the store cannot be created)"
    else:
        print(f"store: SQLite file {path} (created on first start)")
    return None
