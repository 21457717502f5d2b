"""The summary scheduler in pitcrew's aiohttp application: its cleanup context, and what a summary
reads from the running app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from bot import keys
from bot.schedule import SummaryScheduler, config_line
from bot.summary import SummaryDeps

_log = logging.getLogger(__name__)


def deps_from_app(app: web.Application) -> SummaryDeps:
    """What a summary reads, from the running application. Without the app's cluster client (its
    kubeconfig could not be loaded), each summary tries to connect for its own run."""
    cluster = app.get(keys.CLUSTER)

    def wake_outbox() -> None:
        service = app.get(keys.SLACK)
        if service is not None:
            service.outbox.wake()

    return SummaryDeps(
        config=app[keys.CONFIG], store=app[keys.STORE], cluster=cluster, on_enqueued=wake_outbox
    )


async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx entry: start the summary scheduler (after the store and Slack), stop it on exit."""
    config = app[keys.CONFIG]
    if not config.schedules:
        yield
        return
    if not config.slack.enabled:
        _log.warning("schedules configured but slack is disabled: no health summaries will be posted")
        yield
        return
    elector = app.get(keys.LEADER)  # ha.enabled: only the leader runs schedules
    scheduler = SummaryScheduler(
        deps_from_app(app),
        config.schedules,
        is_leader=None if elector is None else (lambda: elector.is_leader),
    )
    app[keys.SCHEDULER] = scheduler
    await scheduler.start()
    _log.info("health summaries scheduled: %s", ", ".join(config_line(s) for s in config.schedules))
    try:
        yield
    finally:
        await scheduler.stop()
