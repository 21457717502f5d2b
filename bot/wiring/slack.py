"""How the Slack app (bot/slack/) plugs into pitcrew's aiohttp application.

- `slack_ctx`: the cleanup context (one line in `bot/app.py`'s list, after the store): builds the
  `SlackService` when `slack.enabled`, starts the outbox worker, the message sync and (socket mode)
  the Socket Mode connection; stops and awaits them all at shutdown.
- `handle_slack_events`: `POST /slack/events` (HTTP mode), handed to Bolt.
- `post_incident(app, incident_id)`: what the pipeline calls after a diagnosis is stored.

The cluster and hosts adapters are the application's own when it has them (`keys.CLUSTER`,
`keys.HOSTS`), else opened from config for the one operation and closed after it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot import keys
from bot.model import CheckResult, Finding
from bot.slack.service import CommandTools, SlackMetrics, SlackService
from bot.slack.settings import settings_from_config
from bot.slack.workflow import EventSink, RemediateExecutor, ResultLike

if TYPE_CHECKING:
    from bot.config import Config

_log = logging.getLogger(__name__)

SLACK_EVENTS_PATH = "/slack/events"


def _app_resource(app: web.Application, name: str) -> Any:
    """An optional resource another owner's cleanup context put in the app (None if absent)."""
    key = getattr(keys, name, None)
    return app.get(key) if key is not None else None


@contextlib.asynccontextmanager
async def _cluster(app: web.Application) -> AsyncIterator[Any]:
    existing = _app_resource(app, "CLUSTER")
    if existing is not None:
        yield existing
        return
    from bot.cluster import Cluster

    settings: Any = app[keys.CONFIG].cluster  # ClusterConfig satisfies Cluster's settings protocol
    cluster = Cluster.from_config(settings)
    try:
        yield cluster
    finally:
        await cluster.close()


def _hosts(app: web.Application) -> Any:
    existing = _app_resource(app, "HOSTS")
    if existing is not None:
        return existing
    config = app[keys.CONFIG]
    if not config.hosts:
        return None
    from bot.hosts import Hosts

    return Hosts(config.hosts)


class AppExecutor:
    """`Executor` for the running app: `bot.remediation` with the app's cluster and hosts."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def _bound(self, cluster: Any) -> RemediateExecutor:
        app = self._app
        return RemediateExecutor(
            cluster=cluster,
            hosts=_hosts(app),
            store=app[keys.STORE],
            config=app[keys.CONFIG],
            metrics=app[keys.METRICS],
        )

    async def execute(
        self, findings: Sequence[Finding], *, incident_id: int, actor: str, on_event: EventSink
    ) -> ResultLike:
        async with _cluster(self._app) as cluster:
            return await self._bound(cluster).execute(
                findings, incident_id=incident_id, actor=actor, on_event=on_event
            )

    async def rollback(self, ref: int | str, *, actor: str, on_event: EventSink) -> ResultLike:
        async with _cluster(self._app) as cluster:
            return await self._bound(cluster).rollback(ref, actor=actor, on_event=on_event)


def _tools(app: web.Application, config: Config) -> CommandTools:
    async def validate(namespace: str | None) -> Sequence[CheckResult]:
        from bot.validate import validate as run_validation

        namespaces = [namespace] if namespace else list(config.cluster.namespaces)
        async with _cluster(app) as cluster:
            return await run_validation(namespaces, cluster=cluster, config=config, since=None)

    async def summary(channel: str) -> None:
        from bot.schedule import POST_METHOD, summary_payload
        from bot.summary import build_summary
        from bot.wiring.schedule import deps_from_app

        result = await build_summary(deps_from_app(app))
        target = channel or config.slack.default_channel or ""
        payload = summary_payload(result, target)
        await app[keys.STORE].enqueue_outbox("summary:on-demand", POST_METHOD, payload)
        service = app.get(keys.SLACK)
        if service is not None:
            service.outbox.wake()

    def wake_workers() -> None:
        workers = app.get(keys.WORKERS)
        if workers is not None:
            workers.wake()

    return CommandTools(validate=validate, summary=summary, wake_workers=wake_workers)


async def slack_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[keys.CONFIG]
    if not config.slack.enabled:
        yield
        return
    settings = settings_from_config(config)
    store = app[keys.STORE]
    alertmanager = None
    if config.alertmanager.url:
        from bot.alertmanager_api import AlertmanagerApi

        alertmanager = AlertmanagerApi(config.alertmanager.url)
    service = SlackService(
        settings,
        store,
        executor=AppExecutor(app),
        tools=_tools(app, config),
        metrics=SlackMetrics.register(app[keys.METRICS], store),
        alertmanager=alertmanager,
    )
    app[keys.SLACK] = service
    await service.start()
    _log.info("slack enabled (%s mode, command %s)", settings.mode, settings.command)
    try:
        yield
    finally:
        await service.stop()
        if alertmanager is not None:
            await alertmanager.close()


async def handle_slack_events(request: web.Request) -> web.Response:
    service = request.app.get(keys.SLACK)
    if service is None or service.settings.mode != "http":
        return web.json_response({"error": "slack is not enabled in http mode"}, status=404)
    return await service.handle_http(request)


async def post_incident(app: web.Application, incident_id: int) -> bool:
    """Post (or update) the incident's Slack message. False when Slack is disabled. Safe to call on
    every change: the first call posts, later ones update the same message."""
    service = app.get(keys.SLACK)
    if service is None:
        return False
    await service.post_incident(incident_id)
    return True
