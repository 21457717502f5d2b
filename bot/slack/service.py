"""pitcrew's Slack app: Bolt listeners, HTTP and Socket Mode front doors, background work.

Listeners `ack()` first (Slack's 3-second limit) and run everything else in tracked background tasks,
cancelled and awaited at shutdown. HTTP requests reach Bolt through its aiohttp adapter inside
pitcrew's own app (`POST /slack/events`), where Bolt verifies the signature (bad or stale -> 401,
counted in /metrics); Socket Mode uses slack_sdk's aiohttp Socket Mode client. Same listeners in both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.alertmanager import WebhookPayload
from bot.alertmanager_api import AlertmanagerApi, AlertmanagerApiError, silence_for
from bot.evidence import SCOPE_LABELS
from bot.model import Alert, CheckResult, IncidentStatus, WorkState
from bot.prometheus import PrometheusApi
from bot.slack import blocks as B
from bot.slack import commands as C
from bot.slack import details as D
from bot.slack.graphs import GraphPoster
from bot.slack.messages import IncidentMessages, channel_key
from bot.slack.outbox import OutboxWorker
from bot.slack.settings import SlackSettings
from bot.slack.workflow import Actor, Executor, Workflow

if TYPE_CHECKING:
    from bot.metrics import Counter, MetricsRegistry
    from bot.store import StoreBackend

_log = logging.getLogger(__name__)

SIGNATURE_MAX_AGE_SECONDS = 300  # Bolt's own limit; used here only to label the metric
MANUAL_ALERTNAME = "PitcrewManualDiagnosis"
MANUAL_GROUP_PREFIX = "pitcrew:manual:"
# `/pitcrew diagnose` is open to everyone who can run the command: it only reads (the cluster reads are
# pitcrew's RBAC, the output is redacted) and the plan it posts still needs an approver. What it costs
# (cluster reads, a message) is bounded instead: a few queued at a time, whoever asks.
MAX_QUEUED_MANUAL_DIAGNOSES = 5
SYNC_TASK = "slack-sync"
_TIMESTAMP = re.compile(r"[0-9]{1,15}", re.ASCII)
SOCKET_CONNECT_TASK = "slack-socket-connect"


@dataclass(frozen=True)
class CommandTools:
    """What slash commands reach beyond the store; each is optional (absent -> a clear answer)."""

    validate: Callable[[str | None], Awaitable[Sequence[CheckResult]]] | None = None
    summary: Callable[[str], Awaitable[None]] | None = None  # post a health summary to a channel
    wake_workers: Callable[[], None] | None = None  # a manual diagnosis was queued


class GroupCache:
    """Slack user group membership (`usergroups.users.list`), cached briefly. Fails closed: a
    group that cannot be read has no members."""

    def __init__(
        self, client: AsyncWebClient, ttl_seconds: float, clock: Callable[[], float] = time.monotonic
    ):
        self._client = client
        self._ttl = ttl_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    async def members(self, group_id: str) -> frozenset[str]:
        cached = self._cache.get(group_id)
        if cached is not None and self._clock() - cached[0] < self._ttl:
            return cached[1]
        try:
            response = await self._client.usergroups_users_list(usergroup=group_id)
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else "unknown"
            _log.warning("cannot read user group %s: %s; treating it as empty", group_id, error)
            return frozenset()
        users = frozenset(str(u) for u in response.get("users") or ())
        self._cache[group_id] = (self._clock(), users)
        return users

    async def groups_of(self, user_id: str, candidates: frozenset[str]) -> frozenset[str]:
        found = [g for g in sorted(candidates) if user_id in await self.members(g)]
        return frozenset(found)


@dataclass
class SlackMetrics:
    rejected: Counter
    deliveries: Counter

    @classmethod
    def register(cls, registry: MetricsRegistry, store: StoreBackend) -> SlackMetrics:
        rejected = registry.counter(
            "pitcrew_slack_requests_rejected_total",
            "Slack requests refused by signature verification, by reason (stale timestamp or bad signature).",
            ["reason"],
        )
        rejected.preset({"reason": "stale"}, {"reason": "invalid_signature"})
        deliveries = registry.counter(
            "pitcrew_slack_outbox_deliveries_total",
            "Slack Web API calls from the outbox, by outcome (sent, retry, failed).",
            ["outcome"],
        )
        deliveries.preset({"outcome": "sent"}, {"outcome": "retry"}, {"outcome": "failed"})

        async def backlog() -> list[tuple[dict[str, str], float]]:
            return [({}, float(await store.outbox_backlog()))]

        if registry.get("pitcrew_slack_outbox_backlog") is None:
            registry.gauge(
                "pitcrew_slack_outbox_backlog", "Slack calls waiting in the outbox.", collect=backlog
            )
        return cls(rejected=rejected, deliveries=deliveries)


def _actor(body: dict[str, Any]) -> Actor:
    user = body.get("user") or {}
    user_id = str(user.get("id") or body.get("user_id") or "")
    name = str(user.get("username") or user.get("name") or body.get("user_name") or user_id)
    return Actor(user_id=user_id, user_name=name)


def _button_id(body: dict[str, Any]) -> int | None:
    actions = body.get("actions") or []
    value = str(actions[0].get("value", "")) if actions else ""
    return int(value) if value.isdigit() else None


class SlackService:
    def __init__(
        self,
        settings: SlackSettings,
        store: StoreBackend,
        *,
        executor: Executor,
        tools: CommandTools | None = None,
        metrics: SlackMetrics | None = None,
        alertmanager: AlertmanagerApi | None = None,
        sync_interval_seconds: float = 1.0,
        socket_ping_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.tools = tools or CommandTools()
        self.metrics = metrics
        self.alertmanager = alertmanager
        self._clock = clock
        self._sync_interval = sync_interval_seconds
        self._socket_ping = socket_ping_seconds  # also slack_sdk's pause between connection attempts
        self._tasks: set[asyncio.Task[None]] = set()
        self._socket: AsyncSocketModeHandler | None = None
        self.client = AsyncWebClient(token=settings.bot_token, base_url=settings.api_base_url)
        self.bolt = AsyncApp(
            client=self.client,
            signing_secret=settings.signing_secret or "socket-mode-has-no-signing-secret",
            request_verification_enabled=settings.mode == "http",
            raise_error_for_unhandled_request=False,
        )
        self.outbox = OutboxWorker(store, self.client, deliveries=metrics.deliveries if metrics else None)
        self.messages = IncidentMessages(store, settings, wake=self.outbox.wake, clock=clock)
        self.groups = GroupCache(self.client, settings.group_cache_seconds)
        self.prometheus: PrometheusApi | None = None
        self.graphs: GraphPoster | None = None
        if settings.prometheus_url:
            self.prometheus = PrometheusApi(settings.prometheus_url)
            self.graphs = GraphPoster(store, self.prometheus, self.client, clock=clock)
        self.workflow = Workflow(
            store,
            settings,
            self.messages,
            self.groups,
            executor,
            self.spawn,
            clock=clock,
            on_fixed=self._fixed,
        )
        self._register()

    # -- lifecycle ------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run `coro` in the background, tracked (cancelled at shutdown, failures logged)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("slack background task %s failed", task.get_name(), exc_info=task.exception())

    async def start(self) -> None:
        self.outbox.start()
        self.spawn(self._sync_loop(), SYNC_TASK)
        if self.settings.mode == "socket":
            assert self.settings.app_token
            self._socket = AsyncSocketModeHandler(
                self.bolt,
                app_token=self.settings.app_token,
                web_client=self.client,
                ping_interval=self._socket_ping,
            )
            # In the background: slack_sdk retries until it connects (or is closed), and a Slack outage
            # must not hold up pitcrew's start-up (webhooks, probes), nor crash it.
            self.spawn(self._socket.connect_async(), SOCKET_CONNECT_TASK)  # type: ignore[no-untyped-call]

    async def stop(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(Exception):
                await self._socket.close_async()  # type: ignore[no-untyped-call]
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.outbox.stop()
        if self.prometheus is not None:
            await self.prometheus.close()

    async def drain(self, within: float = 10.0) -> None:
        """Wait (bounded) for background work to finish (tests, shutdown): clicks, commands,
        executions; not the sync loop or the Socket Mode connection, which run until stopped."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            busy = [t for t in self._tasks if t.get_name() not in (SYNC_TASK, SOCKET_CONNECT_TASK)]
            if not busy:
                return
            await asyncio.wait(busy, timeout=max(0.0, deadline - time.monotonic()))

    async def _sync_loop(self) -> None:
        cursor = self._clock()
        try:
            await self.messages.restore_offers()
        except Exception:
            _log.exception("restoring the approval expiry schedule failed")
        while True:
            await asyncio.sleep(self._sync_interval)
            try:
                cursor = await self.messages.sync(cursor)
            except Exception:
                _log.exception("Slack message sync failed")

    # -- the pipeline's entry point -------------------------------------------------------------

    async def post_incident(self, incident_id: int) -> None:
        """Post (or update) the incident's message. Safe to call on every change."""
        await self.messages.post(incident_id)
        if self.graphs is not None and await self.graphs.claim(incident_id, "alert"):
            self.spawn(self._graph(incident_id, None), f"graph-{incident_id}")

    def _fixed(self, incident_id: int, at: float) -> None:
        if self.graphs is not None:
            self.spawn(self._graph(incident_id, at), f"graph-recovery-{incident_id}")

    async def _graph(self, incident_id: int, fixed_at: float | None) -> None:
        assert self.graphs is not None
        kind = "alert" if fixed_at is None else "recovery"
        if fixed_at is not None and not await self.graphs.claim(incident_id, kind):
            return
        await self.graphs.post(incident_id, fixed_at=fixed_at)

    # -- HTTP front door ------------------------------------------------------------------------

    async def handle_http(self, request: web.Request) -> web.Response:
        if not _TIMESTAMP.fullmatch(request.headers.get("X-Slack-Request-Timestamp", "")):
            # Slack sends whole seconds; anything else (empty, a float, hex, spaces) makes slack_sdk's
            # verifier raise ValueError inside Bolt (a 500). Such a request cannot be signed by Slack.
            return self._refused(request)
        try:
            bolt_request = await to_bolt_request(request)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # Bolt parses the body before checking the signature, so a body it cannot parse (e.g. a
            # `payload=` that is not a JSON object) never reaches its verification: check the signature
            # here, so a forged request is refused (401, counted) whatever its body, and only a
            # correctly signed one learns that its body is malformed.
            if not self._signature_valid(await request.text(), request):
                return self._refused(request)
            _log.warning("malformed Slack request refused: %s", type(exc).__name__)
            return web.json_response({"error": "malformed Slack request body"}, status=400)
        bolt_response = await self.bolt.async_dispatch(bolt_request)
        if bolt_response.status == 401:
            self._count_rejected(request)
        return await to_aiohttp_response(bolt_response)

    def _signature_valid(self, body: str, request: web.Request) -> bool:
        # The same check (and real clock) as Bolt's own verification.
        return SignatureVerifier(self.settings.signing_secret).is_valid_request(body, dict(request.headers))

    def _refused(self, request: web.Request) -> web.Response:
        """What Bolt answers a request whose signature is bad or stale, counted the same way."""
        self._count_rejected(request)
        return web.json_response({"error": "invalid request"}, status=401)

    def _count_rejected(self, request: web.Request) -> None:
        if self.metrics is not None:
            self.metrics.rejected.inc(reason=self._rejection_reason(request))

    def _rejection_reason(self, request: web.Request) -> str:
        raw = request.headers.get("X-Slack-Request-Timestamp", "")
        if not _TIMESTAMP.fullmatch(raw):
            return "invalid_signature"  # malformed is not "stale"
        stale = abs(self._clock() - int(raw)) > SIGNATURE_MAX_AGE_SECONDS
        return "stale" if stale else "invalid_signature"

    # -- listeners ------------------------------------------------------------------------------

    def _register(self) -> None:
        app = self.bolt
        app.command(self.settings.command)(self._on_command)
        app.action(B.ACTION_APPROVE)(self._on_approve)
        app.action(B.ACTION_REJECT)(self._on_reject)
        app.action(B.ACTION_DETAILS)(self._on_details)
        app.action(B.ACTION_ROLLBACK)(self._on_rollback)
        app.action(B.ACTION_SILENCE)(self._on_link)
        app.view(B.REJECT_MODAL)(self._on_reject_submitted)

    async def _reply(self, respond: Any, work: Awaitable[str]) -> None:
        text = await work
        await respond(text=B.truncate(text, 3000), response_type="ephemeral", replace_original=False)

    async def _on_approve(self, ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        incident_id = _button_id(body)
        if incident_id is None:
            self.spawn(self._reply(respond, _const("This button carries no incident id.")), "approve-bad")
            return
        self.spawn(
            self._reply(respond, self.workflow.approve(incident_id, _actor(body))), f"approve-{incident_id}"
        )

    async def _on_rollback(self, ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        execution_id = _button_id(body)
        if execution_id is None:
            self.spawn(self._reply(respond, _const("This button carries no execution id.")), "rollback-bad")
            return
        self.spawn(
            self._reply(respond, self.workflow.rollback(execution_id, _actor(body))),
            f"rollback-{execution_id}",
        )

    async def _on_link(self, ack: Any) -> None:
        # A link button (Silence opens Alertmanager's form in the browser): Slack still sends the
        # click, and expects it acknowledged.
        await ack()

    async def _on_details(self, ack: Any, body: dict[str, Any], client: AsyncWebClient, respond: Any) -> None:
        await ack()
        incident_id = _button_id(body)
        trigger_id = str(body.get("trigger_id", ""))

        async def details() -> None:
            incident = await self.store.get_incident(incident_id) if incident_id is not None else None
            if incident is None:
                await respond(
                    text="That incident no longer exists.", response_type="ephemeral", replace_original=False
                )
                return
            # The trigger id is valid for 3 seconds: the modal opens right away, off the ack path.
            await client.views_open(trigger_id=trigger_id, view=D.details_modal(incident))

        self.spawn(details(), f"details-{incident_id}")

    async def _on_reject(self, ack: Any, body: dict[str, Any], client: AsyncWebClient, respond: Any) -> None:
        await ack()
        incident_id = _button_id(body)
        channel = (
            (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id") or ""
        )
        if incident_id is None:
            return
        view = {
            "type": "modal",
            "callback_id": B.REJECT_MODAL,
            "private_metadata": json.dumps({"incident_id": incident_id, "channel": channel}),
            "title": {"type": "plain_text", "text": "Reject the plan"},
            "submit": {"type": "plain_text", "text": "Reject"},
            "close": {"type": "plain_text", "text": "Cancel"},
            "blocks": [
                {
                    "type": "section",
                    "text": {
                        "type": "mrkdwn",
                        "text": f"Reject the proposed fix of incident #{incident_id}?",
                    },
                },
                {
                    "type": "input",
                    "block_id": B.REJECT_REASON_BLOCK,
                    "optional": True,
                    "label": {"type": "plain_text", "text": "Reason (optional)"},
                    "element": {
                        "type": "plain_text_input",
                        "action_id": B.REJECT_REASON_INPUT,
                        "multiline": True,
                        "max_length": 500,
                    },
                },
            ],
        }
        trigger_id = str(body.get("trigger_id", ""))

        async def open_modal() -> None:
            # Someone who may not reject is told so now (and audited), not after typing a reason.
            refusal = await self.workflow.refuse_reject(incident_id, _actor(body))
            if refusal is not None:
                await respond(text=refusal, response_type="ephemeral", replace_original=False)
                return
            await client.views_open(trigger_id=trigger_id, view=view)

        # The trigger id is valid for 3 s: open the modal right away, still off the ack path.
        self.spawn(open_modal(), f"reject-modal-{incident_id}")

    async def _on_reject_submitted(self, ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        await ack()
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
            incident_id = int(meta["incident_id"])
        except (ValueError, KeyError, TypeError):
            _log.warning("reject modal without a usable incident id")
            return
        channel = str(meta.get("channel") or "")
        state = ((view.get("state") or {}).get("values") or {}).get(B.REJECT_REASON_BLOCK) or {}
        reason = (state.get(B.REJECT_REASON_INPUT) or {}).get("value")
        actor = _actor(body)

        async def reject() -> None:
            text = await self.workflow.reject(incident_id, actor, reason)
            if channel:
                with contextlib.suppress(SlackApiError):
                    await self.client.chat_postEphemeral(channel=channel, user=actor.user_id, text=text)

        self.spawn(reject(), f"reject-{incident_id}")

    # -- /pitcrew -------------------------------------------------------------------------------

    async def _on_command(self, ack: Any, command: dict[str, Any], respond: Any) -> None:
        try:
            parsed = C.parse(str(command.get("text") or ""))
        except C.CommandError as exc:
            await ack(text=f"{exc}\n\n{C.usage(self.settings.command)}")
            return
        if isinstance(parsed, C.Help):
            await ack(text=C.usage(self.settings.command))
            return
        await ack()
        actor = Actor(str(command.get("user_id", "")), str(command.get("user_name", "")))
        channel = str(command.get("channel_id", ""))
        self.spawn(
            self._run_command(parsed, actor, channel, respond), f"command-{type(parsed).__name__.lower()}"
        )

    async def _run_command(self, parsed: C.Command, actor: Actor, channel: str, respond: Any) -> None:
        try:
            message = await self._command_message(parsed, actor, channel)
        except Exception as exc:
            _log.exception("/pitcrew %s failed", type(parsed).__name__.lower())
            message = B.render_note(f"❌ {type(parsed).__name__.lower()} failed: {type(exc).__name__}: {exc}")
        if message is not None:
            await respond(text=message.text, blocks=list(message.blocks), response_type="ephemeral")

    async def _command_message(self, parsed: C.Command, actor: Actor, channel: str) -> B.Message | None:
        match parsed:
            case C.Status():
                incidents = await self.store.list_incidents(status=IncidentStatus.FIRING, limit=30)
                lines = [
                    f"#{i.id} {i.alertname or i.group_key} · {i.severity or '-'} · {i.namespace or '-'} · "
                    f"{i.work_state.value} · {len(i.findings)} finding(s)"
                    for i in incidents
                ]
                return B.render_lines(f"Open incidents ({len(incidents)})", lines)
            case C.History(limit=limit):
                executions = await self.store.list_executions(limit=limit)
                lines = [
                    B.escape(
                        B.redact(f"execution e-{e.id} · incident {_ref(e.incident_id)} · {e.status} · by ")
                    )
                    + (B.actor_mentions(e.actor) if _slack_actor(e.actor) else B.escape(e.actor))
                    + B.escape(B.redact(f" · {B.when(e.started_at)} · {e.detail}"))
                    for e in executions
                ]
                return B.render_lines(f"Last {len(executions)} execution(s)", lines, mrkdwn_lines=True)
            case C.Rollback(ref=ref):
                return B.render_note(await self._rollback(ref, actor))
            case C.Silence():
                return B.render_note(await self._silence(parsed, actor))
            case C.Validate(namespace=namespace):
                if self.tools.validate is None:
                    return B.render_note(
                        "Validation is not available in this pitcrew (no cluster configured)."
                    )
                checks = await self.tools.validate(namespace)
                return B.render_checks(f"Validation of {namespace or 'the monitoring namespaces'}", checks)
            case C.Summary():
                if self.tools.summary is None:
                    return B.render_note("Health summaries are not available in this pitcrew.")
                await self.tools.summary(channel)
                return B.render_note("Health summary posted.")
            case C.Diagnose():
                return B.render_note(await self._diagnose(parsed, actor, channel))
        return B.render_note(C.usage(self.settings.command))

    async def _silence(self, parsed: C.Silence, actor: Actor) -> str:
        if self.alertmanager is None:
            return "Silences need `alertmanager.url` in pitcrew's config."
        incident = await self.store.get_incident(parsed.incident_id)
        if incident is None:
            return f"Incident #{parsed.incident_id} does not exist."
        # A silence hides the incident's alerts from everyone: only its namespace's approvers may set one
        # (the plan's finding rules do not apply: nothing is changed in the cluster).
        verdict = await self.workflow.authorise(actor, incident.namespace, ())
        if not verdict.allowed:
            await self.store.audit(
                actor.audit_name, "silence denied", incident_id=incident.id, detail=verdict.reason
            )
            return f"Not done: {verdict.reason}."
        request = silence_for(
            incident,
            duration_seconds=parsed.duration_seconds,
            created_by=f"slack:{actor.user_name or actor.user_id}",
            now=self._clock(),
        )
        try:
            silence_id = await self.alertmanager.create_silence(request)
        except AlertmanagerApiError as exc:
            return f"Could not create the silence: {exc}" + (" (try again)" if exc.temporary else "")
        await self.store.audit(
            f"slack:{actor.user_id}",
            "silenced",
            incident_id=incident.id,
            detail=f"{silence_id} for {parsed.duration_text}",
        )
        matchers = ", ".join(f"{m.name}={m.value}" for m in request.matchers)
        if await self.messages.is_posted(incident.id):
            await self.messages.reply(
                incident.id,
                B.render_note(
                    f"🔕 Silenced for {parsed.duration_text} by <@{actor.user_id}> (silence {silence_id})"
                ),
            )
        link = self.alertmanager.silence_url(silence_id)
        return f"Silenced incident #{incident.id} for {parsed.duration_text} ({matchers}): {link}"

    async def _rollback(self, ref: str, actor: Actor) -> str:
        """The same ids as `pitcrew rollback`: a bare number is an incident (as the messages number
        them), `e-N` an execution, `b-N` one backup."""
        if ref.startswith("b-"):
            return await self.workflow.rollback(ref, actor)
        if ref.startswith("e-"):
            return await self.workflow.rollback(int(ref.removeprefix("e-")), actor)
        executions = await self.store.list_executions(int(ref), limit=1)
        if not executions:
            return f"Incident #{ref} has no execution to roll back."
        return await self.workflow.rollback(executions[0].id, actor)

    async def _diagnose(self, parsed: C.Diagnose, actor: Actor, channel: str) -> str:
        """Queue a diagnosis as an incident of its own, so the normal pipeline diagnoses it and posts
        the result (with buttons) in the channel the command came from."""
        scope = str(parsed.target) if parsed.target else (parsed.namespace or "the configured namespaces")
        pending = await self.store.list_incidents(work_states=[WorkState.PENDING], limit=200)
        queued = sum(1 for i in pending if i.group_key.startswith(MANUAL_GROUP_PREFIX))
        if queued >= MAX_QUEUED_MANUAL_DIAGNOSES:
            return f"{queued} diagnoses are already queued; try again when they are posted."
        labels = {"alertname": MANUAL_ALERTNAME, "severity": "info"}
        if parsed.namespace:
            labels["namespace"] = parsed.namespace
        if parsed.target:
            # The label an alert would carry for this object (e.g. statefulset=prometheus), so the
            # diagnosis ranks findings about it first, as it does for a real alert.
            label = next(
                (k for k, kind in SCOPE_LABELS.items() if kind.lower() == parsed.target.kind.lower()), None
            )
            labels[label or "pitcrew_target"] = parsed.target.name if label else str(parsed.target)
        now = datetime.fromtimestamp(self._clock(), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        key = uuid.uuid4().hex[:12]
        annotations = {
            "summary": f"Diagnosis of {scope} requested by {actor.user_name or actor.user_id} in Slack"
        }
        payload = WebhookPayload(
            version="4",
            receiver="pitcrew-slack",
            status="firing",
            alerts=(Alert(f"manual-{key}", "firing", labels, annotations, now, None),),
            group_labels={"alertname": MANUAL_ALERTNAME},
            common_labels=labels,
            common_annotations=annotations,
            external_url=self.settings.alertmanager_url,
            group_key=f"{MANUAL_GROUP_PREFIX}{key}",
        )
        result = await self.store.record_webhook(payload)
        if channel:
            await self.store.set_kv(channel_key(result.incident_id), channel)
        await self.store.audit(
            f"slack:{actor.user_id}", "diagnose requested", incident_id=result.incident_id, detail=scope
        )
        if self.tools.wake_workers is not None:
            self.tools.wake_workers()
        return f"Diagnosing {scope} (incident #{result.incident_id}); the result will be posted here."


def _slack_actor(actor: str) -> bool:
    """An actor that is Slack user ids (`slack:UALICE,UBOB`), shown as mentions."""
    ids = actor.removeprefix("slack:").split(",")
    return actor.startswith("slack:") and all(i.strip().isalnum() for i in ids)


def _ref(incident_id: int | None) -> str:
    return f"#{incident_id}" if incident_id else "-"


async def _const(text: str) -> str:
    return text
