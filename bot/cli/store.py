"""`pitcrew store migrate` and `pitcrew store copy`: the store's schema and moving to PostgreSQL.

migrate: bring the configured store (--config) to this pitcrew's schema version and say where it is;
`pitcrew serve` does the same at start (PostgreSQL: under an advisory lock), this runs it on its own,
e.g. before rolling out a new version to several replicas.

copy: `--from sqlite:PATH --to postgresql://USER@HOST:PORT/DB` copies a single replica's SQLite store
into an empty PostgreSQL database, ids kept. The password comes from the environment variable named by
--password-env (default PGPASSWORD), never from the URL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from bot.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, load_cli_config, report_config_error
from bot.config import ConfigError, Secret, StoreConfig, postgres_url_problems
from bot.store import StoreError, open_store


def cli_store(args: argparse.Namespace) -> int:
    if args.store_verb == "migrate":
        return _migrate(args)
    return _copy(args)


def _migrate(args: argparse.Namespace) -> int:
    try:
        config = load_cli_config(args)
    except ConfigError as exc:
        return report_config_error("store migrate", exc)

    async def run() -> str:
        store = await open_store(config.store)  # opening migrates (PostgreSQL: under the advisory lock)
        try:
            return f"store {store.path}: schema version {store.schema_version}"
        finally:
            await store.close()

    try:
        print(asyncio.run(run()))
    except StoreError as exc:
        print(f"pitcrew store migrate: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _copy(args: argparse.Namespace) -> int:
    source: str = args.source
    if not source.startswith("sqlite:") or not source.removeprefix("sqlite:"):
        print(f"pitcrew store copy: --from must be sqlite:PATH, got {source!r}", file=sys.stderr)
        return EXIT_BAD_INPUT
    path = source.removeprefix("sqlite:")
    problems = postgres_url_problems(args.target)
    if problems:
        for problem in problems:
            print(f"pitcrew store copy: --to: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not os.path.isfile(path):
        print(f"pitcrew store copy: {path}: no such file", file=sys.stderr)
        return EXIT_BAD_INPUT
    password = os.environ.get(args.password_env)
    target = StoreConfig(url=args.target, password=Secret(password) if password else None)

    from bot.store.copy import copy_sqlite_to_postgres

    try:
        result = asyncio.run(copy_sqlite_to_postgres(path, target))
    except StoreError as exc:
        print(f"pitcrew store copy: {exc}", file=sys.stderr)
        return EXIT_FAILED
    copied = ", ".join(f"{n} {table}" for table, n in result.rows.items() if n)
    print(f"copied {path} to {args.target}: {copied or 'nothing (the SQLite store is empty)'}")
    return EXIT_OK
