"""The aiohttp application: routes, and one cleanup context per long-lived resource.

Start-up reads top to bottom in `create_app`'s `cleanup_ctx` list, shutdown bottom to top. Owners of
other resources (cluster, Slack, scheduler) add their context with one line in that list, before
`_workers_ctx` (the workers use every resource above them and must stop first).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, cast

from aiohttp import web

from bot import keys
from bot.alertmanager import (
    REJECTION_REASONS,
    PayloadTooLarge,
    WebhookAuth,
    WebhookRejected,
    parse_webhook,
)
from bot.incidents import WebhookCommitter
from bot.metrics import CONTENT_TYPE, IntakeMetrics, MetricsRegistry, Sample, register_build_info
from bot.model import IncidentStatus, WorkState
from bot.pipeline import cluster_ctx, hosts_ctx, process_incident
from bot.remediation import EXECUTION_OUTCOMES, execution_counter
from bot.store import StoreError, open_store
from bot.version import version
from bot.wiring.leader import leader_ctx
from bot.wiring.schedule import scheduler_ctx
from bot.wiring.slack import SLACK_EVENTS_PATH, handle_slack_events, slack_ctx
from bot.workers import IncidentWorkers, Processor, RetryPolicy

if TYPE_CHECKING:
    from bot.config import Config

_log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/alertmanager"
STORE_ERROR_REASON = "store_error"
READINESS_PROBE_TIMEOUT_SECONDS = 5.0


class InsecureWebhookConfig(Exception):
    """No webhook credential is configured and insecure mode was not asked for."""


def webhook_auth_from_config(config: Config) -> WebhookAuth:
    hook = config.webhook
    # Secrets are revealed only here, into the object that compares them in constant time.
    return WebhookAuth(
        bearer_token=hook.bearer_token.reveal() if hook.bearer_token is not None else None,
        basic_username=hook.basic_username,
        basic_password=hook.basic_password.reveal() if hook.basic_password is not None else None,
    )


def create_app(
    config: Config,
    *,
    processor: Processor | None = None,
    insecure_no_webhook_auth: bool = False,
) -> web.Application:
    """Build the application. `processor` replaces `bot.pipeline.process_incident` (tests, tools).

    Raises InsecureWebhookConfig when no webhook credential is configured, unless
    `insecure_no_webhook_auth` (then every webhook is accepted without a credential).
    """
    auth = webhook_auth_from_config(config)
    if not auth.configured and not insecure_no_webhook_auth:
        raise InsecureWebhookConfig(
            "webhook: no credential configured (set webhook.bearer_token_env or webhook.basic_username "
            "and basic_password_env), or pass --insecure-no-webhook-auth to accept unauthenticated webhooks"
        )
    app = web.Application()
    app[keys.CONFIG] = config
    app[keys.WEBHOOK_AUTH] = auth
    registry = MetricsRegistry()
    app[keys.METRICS] = registry
    app[keys.INTAKE_METRICS] = IntakeMetrics.register(registry, (*REJECTION_REASONS, STORE_ERROR_REASON))
    register_build_info(registry, version())
    # Known label values at 0 from the start, so rates and alerts see 0, not "no data".
    execution_counter(registry).preset(
        *({"namespace": ns, "outcome": o} for ns in config.cluster.namespaces for o in EXECUTION_OUTCOMES)
    )
    app[keys.READINESS_PROBES] = []
    if processor is not None:
        app[keys.PROCESSOR] = processor
    if not auth.configured:
        _log.warning("webhook authentication is disabled (--insecure-no-webhook-auth)")

    app.cleanup_ctx.extend(
        [
            _store_ctx,
            cluster_ctx,  # pipeline: the Kubernetes client (readiness: API server answers)
            hosts_ctx,  # pipeline: SSH hosts for host-command steps
            leader_ctx,  # leader: Lease election with ha.enabled (the scheduler asks who leads)
            slack_ctx,  # slack: Slack client, outbox worker, Socket Mode (needs the store)
            scheduler_ctx,  # schedule: health summaries on cron (needs the store; posts via the outbox)
            _workers_ctx,  # keep last: uses every resource above
        ]
    )
    app.router.add_post(WEBHOOK_PATH, handle_alertmanager_webhook)
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/readyz", handle_readyz)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_post(SLACK_EVENTS_PATH, handle_slack_events)
    return app


def add_readiness_probe(app: web.Application, name: str, probe: keys.ReadinessProbe) -> None:
    """Make /readyz also depend on `probe` (None = ready, else the reason it is not)."""
    app[keys.READINESS_PROBES].append((name, probe))


# ---------------------------------------------------------------------------------------------
# Cleanup contexts (one per resource)
# ---------------------------------------------------------------------------------------------


def ensure_store_folder(path: str) -> None:
    """`serve` creates the SQLite store's folder when it is missing (owner-only: the store holds
    incidents, plans and backups), as `check-config --connect` announces. Raises StoreError saying why
    it cannot."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(folder):
        return
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"store.path: cannot create folder {folder}: {exc.strerror or exc}") from None
    _log.info("created the store's folder %s", folder)


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[keys.CONFIG]
    if config.store.url is None:
        ensure_store_folder(config.store.sqlite_path)
    store = await open_store(config.store)  # PostgreSQL with store.url, else SQLite; migrated
    app[keys.STORE] = store
    committer = WebhookCommitter(store)
    app[keys.WEBHOOK_COMMITTER] = committer

    async def store_open() -> str | None:
        if not store.is_open:
            return "store is closed"
        await store.ping()  # a real round trip to the database
        return None

    async def incidents_by_state() -> list[Sample]:
        counts = await store.count_incidents()
        return [
            ({"status": status.value, "work_state": state.value}, float(counts.get((status, state), 0)))
            for status in IncidentStatus
            for state in WorkState
        ]

    add_readiness_probe(app, "store", store_open)
    app[keys.METRICS].gauge(
        "pitcrew_incidents",
        "Incidents in the store, by alert status and pitcrew work state.",
        ["status", "work_state"],
        collect=incidents_by_state,
    )
    _log.info("store open at %s (schema version %d)", store.path, store.schema_version)
    try:
        yield
    finally:
        await committer.close()
        await store.close()


async def _workers_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[keys.CONFIG]
    processor = app.get(keys.PROCESSOR)
    if processor is None:
        processor = _pipeline_processor(app)
        app[keys.PROCESSOR] = processor
    workers = IncidentWorkers(
        app[keys.STORE],
        processor,
        concurrency=config.workers.concurrency,
        poll_interval_seconds=config.workers.poll_interval_seconds,
        retry=RetryPolicy(
            max_attempts=config.workers.max_attempts, base_delay_seconds=config.workers.retry_delay_seconds
        ),
        metrics=app[keys.INTAKE_METRICS],
    )
    app[keys.WORKERS] = workers
    await workers.start()
    try:
        yield
    finally:
        await workers.stop()


def _pipeline_processor(app: web.Application) -> Processor:
    return cast(Processor, functools.partial(process_incident, app))


# ---------------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------------


async def handle_alertmanager_webhook(request: web.Request) -> web.Response:
    """auth -> size -> parse -> commit -> wake workers -> 200. Nothing is stored on a 4xx; a 5xx only
    when the commit failed (Alertmanager retries it); never a 5xx after the commit."""
    app = request.app
    metrics = app[keys.INTAKE_METRICS]
    started = time.perf_counter()
    metrics.webhooks_received.inc()
    max_bytes = app[keys.CONFIG].server.max_body_bytes
    try:
        auth = app[keys.WEBHOOK_AUTH]
        if auth.configured:
            auth.check(request.headers.get("Authorization"))
        payload = parse_webhook(await _read_body(request, max_bytes), max_bytes)
    except WebhookRejected as exc:
        metrics.webhooks_rejected.inc(reason=exc.metric_reason)
        metrics.webhook_duration.observe(time.perf_counter() - started, outcome="rejected")
        _log.warning(
            "webhook rejected (%d %s): %s", exc.status, exc.metric_reason, exc.reason, extra=_peer(request)
        )
        return web.json_response({"error": exc.reason}, status=exc.status)

    try:
        result = await app[keys.WEBHOOK_COMMITTER].commit(payload)
    except Exception:
        metrics.webhooks_rejected.inc(reason=STORE_ERROR_REASON)
        metrics.webhook_duration.observe(time.perf_counter() - started, outcome="error")
        _log.exception("webhook for group %s not stored; Alertmanager will retry", payload.group_key)
        return web.json_response({"error": "not stored, retry later"}, status=503)

    # Committed: from here on, nothing may turn this into an error reply.
    try:
        if result.pending:
            app[keys.WORKERS].wake()
        if result.created or result.changed:
            _log.info(
                "incident %d %s: group %s, %d alert(s), status %s",
                result.incident_id,
                "created" if result.created else "updated",
                payload.group_key,
                len(payload.alerts),
                payload.status,
            )
        metrics.webhook_duration.observe(time.perf_counter() - started, outcome="stored")
    except Exception:
        _log.exception("after storing incident %d", result.incident_id)
    return web.json_response(
        {"incident_id": result.incident_id, "created": result.created, "changed": result.changed}
    )


async def _read_body(request: web.Request, max_bytes: int) -> bytes:
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"body is {request.content_length} bytes, limit is {max_bytes}")
    # Chunked bodies have no length up front: stop reading as soon as the limit is passed.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"body is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _peer(request: web.Request) -> dict[str, str]:
    return {"peer": request.remote or ""}


async def handle_healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def handle_readyz(request: web.Request) -> web.Response:
    probes = request.app[keys.READINESS_PROBES]
    results = await asyncio.gather(*(_run_probe(probe) for _, probe in probes))
    checks = {name: (reason or "ok") for (name, _), reason in zip(probes, results, strict=True)}
    ready = bool(probes) and all(reason is None for reason in results)
    body: dict[str, object] = {"ready": ready, "checks": checks}
    elector = request.app.get(keys.LEADER)
    if elector is not None:  # ha.enabled: a follower is ready too (it serves webhooks and Slack)
        status = elector.status()
        body["role"] = "leader" if status.is_leader else "follower"
        body["leader"] = status.holder
        body["identity"] = status.identity
    return web.json_response(body, status=200 if ready else 503)


async def _run_probe(probe: keys.ReadinessProbe) -> str | None:
    try:
        return await asyncio.wait_for(probe(), timeout=READINESS_PROBE_TIMEOUT_SECONDS)
    except TimeoutError:
        return f"no answer within {READINESS_PROBE_TIMEOUT_SECONDS:.0f} s"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


async def handle_metrics(request: web.Request) -> web.Response:
    text = await request.app[keys.METRICS].render()
    return web.Response(body=text.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE})
