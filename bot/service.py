"""`pitcrew serve` and `pitcrew check-config`.

`serve` loads the config, configures logging (with every configured secret redacted), builds the app
and runs it until SIGTERM or SIGINT; shutdown (in-flight requests, workers, store) is bounded by
`server.shutdown_timeout_seconds`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from aiohttp import web

from bot.app import InsecureWebhookConfig, create_app
from bot.config import Config, ConfigError, load_config
from bot.logging import configure_logging, secrets_in
from bot.store import StoreError

_log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def cli_check_config(args: argparse.Namespace) -> int:
    config = _load(args.file)
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
    from bot import pg

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
        return f"store.path: folder {folder} does not exist"
    elif not os.access(folder, os.W_OK):
        return f"store.path: folder {folder} is not writable by this user (the store cannot be created)"
    else:
        print(f"store: SQLite file {path} (created on first start)")
    return None


def cli_serve(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_BAD_INPUT
    configure_logging(format=config.logging.format, level=config.logging.level, secrets=secrets_in(config))
    try:
        app = create_app(config, insecure_no_webhook_auth=args.insecure_no_webhook_auth)
    except InsecureWebhookConfig as exc:
        print(f"pitcrew serve: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return asyncio.run(serve(app, config))


def _load(path: str) -> Config | None:
    """The config, or None after printing why not (one line per problem, on stdout like `ok`)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        return None
    except OSError as exc:
        print(f"{path}: cannot read config file: {exc.strerror or exc}")
        return None


async def serve(app: web.Application, config: Config) -> int:
    """Run `app` on the configured address until SIGTERM/SIGINT; returns the exit code."""
    server = config.server
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=server.shutdown_timeout_seconds)
    try:
        await runner.setup()  # runs every cleanup context's start-up half
    except StoreError as exc:  # says what is wrong (path, schema); a traceback would only bury it
        _log.error("start-up failed: %s", exc)
        await runner.cleanup()
        return EXIT_FAILED
    except Exception:
        _log.exception("start-up failed")
        await runner.cleanup()
        return EXIT_FAILED
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, server.listen_host, server.listen_port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:  # e.g. the port is taken: the reason is all there is to say
            _log.error(
                "cannot listen on %s:%s: %s", server.listen_host, server.listen_port, exc.strerror or exc
            )
            return await _shutdown(runner, server.shutdown_timeout_seconds, EXIT_FAILED)
        for address in runner.addresses:
            _log.info("listening on http://%s:%s", *address[:2])
        await stop.wait()
        _log.info("shutting down (timeout %.0f s)", server.shutdown_timeout_seconds)
    except Exception:
        _log.exception("server failed")
        return await _shutdown(runner, server.shutdown_timeout_seconds, EXIT_FAILED)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return await _shutdown(runner, server.shutdown_timeout_seconds, EXIT_OK)


async def _shutdown(runner: web.AppRunner, grace_seconds: float, code: int) -> int:
    # aiohttp gives in-flight requests `shutdown_timeout`; the margin covers the cleanup contexts.
    try:
        await asyncio.wait_for(runner.cleanup(), timeout=grace_seconds + 5.0)
    except TimeoutError:
        _log.error("shutdown did not finish within %.0f s; exiting anyway", grace_seconds + 5.0)
        return EXIT_FAILED
    _log.info("stopped")
    return code
