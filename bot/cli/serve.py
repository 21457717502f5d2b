"""`pitcrew serve`.

`serve` loads the config, configures logging (with every configured secret redacted), builds the app
and runs it until SIGTERM or SIGINT; shutdown (in-flight requests, workers, store) is bounded by
`server.shutdown_timeout_seconds`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from aiohttp import web

from bot.app import InsecureWebhookConfig, create_app
from bot.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, load_config_file
from bot.config import Config
from bot.leader import LeaderElectionUnavailable
from bot.logging import configure_logging, secrets_in
from bot.store import StoreError

_log = logging.getLogger(__name__)


def cli_serve(args: argparse.Namespace) -> int:
    config = load_config_file(args.config)
    if config is None:
        return EXIT_BAD_INPUT
    configure_logging(format=config.logging.format, level=config.logging.level, secrets=secrets_in(config))
    try:
        app = create_app(config, insecure_no_webhook_auth=args.insecure_no_webhook_auth)
    except InsecureWebhookConfig as exc:
        print(f"pitcrew serve: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return asyncio.run(serve(app, config))


async def serve(app: web.Application, config: Config) -> int:
    """Run `app` on the configured address until SIGTERM/SIGINT; returns the exit code."""
    server = config.server
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=server.shutdown_timeout_seconds)
    try:
        await runner.setup()  # runs every cleanup context's start-up half
    except (StoreError, LeaderElectionUnavailable) as exc:  # says what is wrong; a traceback would bury it
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
