"""A local stand-in for Slack: a recording Web API server, a Socket Mode WebSocket server, and request
signing, so pitcrew's real Slack code (Bolt, slack_sdk, the outbox) runs against loopback only.

The Web API server checks on every call what real Slack would refuse — the bearer token, the method,
the channel, `thread_ts` (must be an existing parent), the `ts` of an update, and Block Kit limits —
and records each violation in `problems`; the `slack_api` fixture fails the test if any were seen.
It can be told to answer 429 with `Retry-After`, or 500, a given number of times.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from bot.model import (
    Alert,
    Finding,
    Incident,
    IncidentStatus,
    JsonPatchOp,
    ObjectRef,
    PatchStep,
    Plan,
    RestartPodStep,
    Severity,
    WaitReadyStep,
    WorkState,
)
from bot.slack import limits

BOT_TOKEN = "xoxb-test-bot-token-0000"
APP_TOKEN = "xapp-test-app-token-0000"
SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
TEAM_ID = "T0PITCREW"

KNOWN_METHODS = {
    "auth.test",
    "chat.postMessage",
    "chat.update",
    "chat.postEphemeral",
    "views.open",
    "usergroups.users.list",
    "apps.connections.open",
    "files.getUploadURLExternal",
    "files.completeUploadExternal",
}
MESSAGE_METHODS = {"chat.postMessage", "chat.update", "chat.postEphemeral"}


async def serve_on_loopback(app: web.Application) -> tuple[web.AppRunner, int]:
    """Start `app` on 127.0.0.1 on a free port; returns the runner (to clean up) and the port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    return runner, server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@dataclass
class ApiCall:
    method: str
    args: dict[str, Any]
    status: int
    response: dict[str, Any]
    at: float

    @property
    def channel(self) -> str | None:
        value = self.args.get("channel")
        return value if isinstance(value, str) else None

    @property
    def thread_ts(self) -> str | None:
        value = self.args.get("thread_ts")
        return value if isinstance(value, str) else None

    @property
    def text(self) -> str:
        """Fallback text plus every text in the blocks, for assertions on content."""
        parts = [str(self.args.get("text", ""))]
        blocks = self.args.get("blocks") or []
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        parts.append(json.dumps(blocks, ensure_ascii=False))
        return "\n".join(parts)

    def action_ids(self) -> list[str]:
        blocks = self.args.get("blocks") or []
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        return [
            el["action_id"]
            for b in blocks
            if b.get("type") == "actions"
            for el in b.get("elements", [])
            if "action_id" in el
        ]


@dataclass
class Upload:
    """A file as files_upload_v2 sends it: URL asked for (name, declared length), bytes posted to
    that URL, then completed into a channel (and thread)."""

    file_id: str
    filename: str
    length: int
    data: bytes | None = None
    title: str | None = None
    channel: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None


@dataclass
class _PlannedFailure:
    status: int
    retry_after: int | None
    remaining: int
    text: str | None = None


@dataclass
class SlackApiServer:
    """Recording Slack Web API (and response_url) server. Start with `await server.start()`."""

    channels: set[str] = field(default_factory=lambda: {"C-ALERTS", "C-CRIT", "C-OPS"})
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    token: str = BOT_TOKEN
    app_token: str = APP_TOKEN
    socket_url: str | None = None  # what apps.connections.open answers
    calls: list[ApiCall] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)  # bodies posted to response URLs
    problems: list[str] = field(default_factory=list)
    expect_auth_failures: bool = False  # set by tests that send a wrong token on purpose
    uploads: dict[str, Upload] = field(default_factory=dict)  # by file id
    _failures: dict[str, list[_PlannedFailure]] = field(default_factory=dict)
    _messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _ts: Any = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    _port: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/response/{name}", self._handle_response_url)
        app.router.add_post("/upload/{file_id}", self._handle_upload)
        self._runner, self._port = await serve_on_loopback(app)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/api/"

    def response_url(self, name: str = "r1") -> str:
        return f"http://127.0.0.1:{self._port}/response/{name}"

    # --- behaviour control -------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        status: int,
        times: int = 1,
        retry_after: int | None = None,
        text: str | None = None,
    ) -> None:
        """Answer the next `times` calls of `method` (whose `text` equals `text`, if given) with
        `status` (429 adds `Retry-After`)."""
        self._failures.setdefault(method, []).append(_PlannedFailure(status, retry_after, times, text))

    # --- queries -----------------------------------------------------------------------------

    def ok_calls(self, method: str | None = None) -> list[ApiCall]:
        return [
            c for c in self.calls if c.status == 200 and c.response.get("ok") and (method in (None, c.method))
        ]

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        return self._messages[(channel, ts)]

    async def wait_for(
        self, predicate: Callable[[SlackApiServer], bool], *, within: float = 15.0, what: str = "condition"
    ) -> None:
        """Wait (bounded) until `predicate(self)` holds; re-checked on every recorded call."""
        deadline = time.monotonic() + within
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                summary = [f"{c.method} {c.status} {c.response.get('error', '')}" for c in self.calls[-15:]]
                raise AssertionError(f"timed out waiting for {what}; last calls: {summary}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.2))

    # --- handlers ----------------------------------------------------------------------------

    async def _args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            raw = await request.read()
            if request.content_type == "application/json":
                args.update(json.loads(raw or b"{}"))
            elif raw:
                args.update(dict(urllib.parse.parse_qsl(raw.decode())))
        for key in ("blocks", "view"):
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        return args

    def _record(self, method: str, args: dict[str, Any], status: int, body: dict[str, Any]) -> None:
        self.calls.append(ApiCall(method, args, status, body, time.monotonic()))
        self._changed.set()

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await self._args(request)
        expected = self.app_token if method == "apps.connections.open" else self.token
        auth = request.headers.get("Authorization", "")
        if not hmac.compare_digest(auth, f"Bearer {expected}"):
            if not self.expect_auth_failures:
                self.problems.append(f"{method}: wrong or missing bearer token")
            body = {"ok": False, "error": "invalid_auth"}
            self._record(method, args, 200, body)
            return web.json_response(body)
        if method not in KNOWN_METHODS:
            self.problems.append(f"unexpected method {method}")
            body = {"ok": False, "error": "unknown_method"}
            self._record(method, args, 200, body)
            return web.json_response(body)

        planned = [f for f in self._failures.get(method, []) if f.text in (None, args.get("text"))]
        if planned:
            failure = planned[0]
            failure.remaining -= 1
            if failure.remaining <= 0:
                self._failures[method].remove(failure)
            if failure.status == 429:
                body = {"ok": False, "error": "ratelimited"}
                self._record(method, args, 429, body)
                return web.json_response(
                    body, status=429, headers={"Retry-After": str(failure.retry_after or 1)}
                )
            body = {"ok": False, "error": f"http_{failure.status}"}
            self._record(method, args, failure.status, body)
            return web.Response(status=failure.status, text="upstream trouble", content_type="text/plain")

        body = self._answer(method, args)
        self._record(method, args, 200, body)
        return web.json_response(body)

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {"ok": True, "team_id": TEAM_ID, "user_id": "UBOT", "bot_id": "BBOT", "team": "pitcrew"}
        if method == "apps.connections.open":
            if self.socket_url is None:
                self.problems.append("apps.connections.open called but no socket server configured")
                return {"ok": False, "error": "not_allowed"}
            return {"ok": True, "url": self.socket_url}
        if method == "usergroups.users.list":
            group = args.get("usergroup", "")
            if group not in self.usergroups:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": self.usergroups[group]}
        if method == "files.getUploadURLExternal":
            return self._upload_url(args)
        if method == "files.completeUploadExternal":
            return self._complete_upload(args)
        if method == "views.open":
            problems = [] if args.get("trigger_id") else ["views.open without trigger_id"]
            problems += limits.check_view(args.get("view") or {})
            if problems:
                self.problems.extend(f"views.open: {p}" for p in problems)
                return {"ok": False, "error": "invalid_arguments"}
            return {"ok": True, "view": {"id": "V1", **args["view"]}}

        channel = args.get("channel")
        if not isinstance(channel, str) or not channel:
            self.problems.append(f"{method}: no channel")
            return {"ok": False, "error": "channel_not_found"}
        if channel not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        problems = limits.check_message(args)
        if problems:
            self.problems.extend(f"{method}: {p}" for p in problems)
            return {"ok": False, "error": "invalid_blocks"}
        thread_ts = args.get("thread_ts")
        if thread_ts is not None and (channel, thread_ts) not in self._messages:
            self.problems.append(f"{method}: thread_ts {thread_ts} is not a message in {channel}")
            return {"ok": False, "error": "thread_not_found"}
        if method == "chat.update":
            ts = args.get("ts")
            if (channel, ts) not in self._messages:
                self.problems.append(f"chat.update of unknown message {channel}/{ts}")
                return {"ok": False, "error": "message_not_found"}
            self._messages[(channel, ts)] = args
            return {"ok": True, "channel": channel, "ts": ts}
        if method == "chat.postEphemeral":
            if not args.get("user"):
                self.problems.append("chat.postEphemeral without user")
            return {"ok": True, "message_ts": f"{time.time():.6f}"}
        ts = f"1700000000.{next(self._ts):06d}"
        self._messages[(channel, ts)] = args
        return {"ok": True, "channel": channel, "ts": ts, "message": {"ts": ts, "text": args.get("text", "")}}

    def completed_uploads(self) -> list[Upload]:
        return [u for u in self.uploads.values() if u.channel is not None]

    def _upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        filename, length = args.get("filename"), str(args.get("length", ""))
        if not isinstance(filename, str) or not filename or not length.isdigit() or int(length) <= 0:
            self.problems.append(f"files.getUploadURLExternal: bad filename/length {filename!r} {length!r}")
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{len(self.uploads) + 1:04d}"
        self.uploads[file_id] = Upload(file_id, filename, int(length))
        return {
            "ok": True,
            "file_id": file_id,
            "upload_url": f"http://127.0.0.1:{self._port}/upload/{file_id}",
        }

    async def _handle_upload(self, request: web.Request) -> web.Response:
        upload = self.uploads.get(request.match_info["file_id"])
        data = await request.read()
        if upload is None:
            self.problems.append("upload to a URL that was never handed out")
            return web.Response(status=404, text="no such upload")
        if request.headers.get("Authorization"):
            self.problems.append("the upload URL got the bot token (it is pre-signed; Slack refuses)")
        if len(data) != upload.length:
            self.problems.append(f"upload {upload.file_id}: {len(data)} bytes, {upload.length} declared")
        upload.data = data
        self._changed.set()
        return web.Response(text=f"OK - {len(data)}")

    def _complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        raw = args.get("files")
        files = json.loads(raw) if isinstance(raw, str) else raw
        channel, thread_ts = args.get("channel_id"), args.get("thread_ts")
        problems = []
        if not isinstance(files, list) or not files:
            problems.append("no files")
            files = []
        for f in files:
            upload = self.uploads.get(str(f.get("id")))
            if upload is None or upload.data is None:
                problems.append(f"file {f.get('id')} was not uploaded")
        if channel not in self.channels:
            problems.append(f"channel_id {channel!r} is not a channel")
        elif thread_ts is not None and (channel, thread_ts) not in self._messages:
            problems.append(f"thread_ts {thread_ts} is not a message in {channel}")
        if problems:
            self.problems.extend(f"files.completeUploadExternal: {p}" for p in problems)
            return {"ok": False, "error": "invalid_arguments"}
        for f in files:
            upload = self.uploads[str(f["id"])]
            upload.title, upload.channel, upload.thread_ts = f.get("title"), channel, thread_ts
            upload.initial_comment = args.get("initial_comment")
        return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in files]}

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        body = await request.json()
        problems = limits.check_message(body)
        if problems:
            self.problems.extend(f"response_url: {p}" for p in problems)
            return web.Response(status=400, text="invalid_blocks")
        self.responses.append(body)
        self._changed.set()
        return web.Response(text="ok")


# ---------------------------------------------------------------------------------------------
# Socket Mode: Slack's WebSocket side (hello, envelopes, acks).
# ---------------------------------------------------------------------------------------------


@dataclass
class SocketModeServer:
    """Speaks Socket Mode's envelope protocol: `hello` on connect, envelopes out, acks in."""

    acks: dict[str, dict[str, Any]] = field(default_factory=dict)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    _ws: web.WebSocketResponse | None = None
    _runner: web.AppRunner | None = None
    _port: int = 0
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _acked: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/link", self._handle)
        self._runner, self._port = await serve_on_loopback(app)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/link?ticket=test"

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        await ws.send_json(
            {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"}, "debug_info": {}}
        )
        self.connected.set()
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                data = json.loads(msg.data)
                if "envelope_id" in data:
                    self.acks[data["envelope_id"]] = data
                    self._acked.set()
        return ws

    async def send_envelope(self, kind: str, payload: Mapping[str, Any]) -> str:
        assert self._ws is not None, "no Socket Mode client connected"
        envelope_id = f"env-{next(self._ids)}"
        await self._ws.send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": dict(payload),
                "accepts_response_payload": kind != "events_api",
                "retry_attempt": 0,
                "retry_reason": "",
            }
        )
        return envelope_id

    async def wait_ack(self, envelope_id: str, within: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while envelope_id not in self.acks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no ack for {envelope_id}")
            self._acked.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acked.wait(), min(remaining, 0.2))
        return self.acks[envelope_id]


# ---------------------------------------------------------------------------------------------
# Signed requests as Slack sends them.
# ---------------------------------------------------------------------------------------------


def sign(body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 signature: HMAC-SHA256 of `v0:{ts}:{body}` with the signing secret."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def slash_command_payload(
    text: str,
    *,
    user_id: str = "UALICE",
    channel_id: str = "C-OPS",
    response_url: str,
    command: str = "/pitcrew",
) -> dict[str, str]:
    return {
        "token": "legacy-verification-token",
        "team_id": TEAM_ID,
        "team_domain": "pitcrew",
        "channel_id": channel_id,
        "channel_name": "ops",
        "user_id": user_id,
        "user_name": user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": "A1",
        "response_url": response_url,
        "trigger_id": "trigger-1",
    }


def slash_command_body(text: str, **kwargs: Any) -> str:
    return urllib.parse.urlencode(slash_command_payload(text, **kwargs))


def block_actions_payload(
    action_id: str,
    value: str,
    *,
    user_id: str = "UALICE",
    channel_id: str = "C-ALERTS",
    message_ts: str = "1700000000.000001",
    response_url: str,
) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": {"id": TEAM_ID, "domain": "pitcrew"},
        "user": {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": TEAM_ID},
        "api_app_id": "A1",
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel_id},
        "trigger_id": f"trigger-{action_id}-{user_id}",
        "channel": {"id": channel_id, "name": "alerts"},
        "message": {"ts": message_ts, "text": "incident"},
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "incident",
                "value": value,
                "text": {"type": "plain_text", "text": action_id},
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def block_actions_body(action_id: str, value: str, **kwargs: Any) -> str:
    payload = block_actions_payload(action_id, value, **kwargs)
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


def view_submission_body(
    callback_id: str, private_metadata: str, values: Mapping[str, Any], *, user_id: str = "UALICE"
) -> str:
    payload = {
        "type": "view_submission",
        "team": {"id": TEAM_ID, "domain": "pitcrew"},
        "user": {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": TEAM_ID},
        "api_app_id": "A1",
        "token": "legacy-verification-token",
        "trigger_id": "trigger-view",
        "view": {
            "id": "V1",
            "team_id": TEAM_ID,
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": private_metadata,
            "state": {"values": dict(values)},
            "hash": "h",
            "title": {"type": "plain_text", "text": "Reject"},
            "blocks": [],
        },
        "response_urls": [],
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


# ---------------------------------------------------------------------------------------------
# Sample incidents for rendering and workflow tests.
# ---------------------------------------------------------------------------------------------


def sample_findings(*, severity: Severity = Severity.CRITICAL, with_plan: bool = True) -> tuple[Finding, ...]:
    sts = ObjectRef("StatefulSet", "prometheus", "monitoring")
    pod = ObjectRef("Pod", "prometheus-0", "monitoring")
    plan = Plan(
        steps=(
            PatchStep(
                target=sts,
                ops=(
                    JsonPatchOp("test", "/spec/template/spec/securityContext", {}),
                    JsonPatchOp("add", "/spec/template/spec/securityContext/runAsUser", 65534),
                ),
                description="set securityContext runAsUser/fsGroup 65534 on StatefulSet prometheus",
                resource_version="1234",
            ),
            RestartPodStep(target=pod, description="restart pod prometheus-0"),
            WaitReadyStep(target=pod, description="wait for prometheus-0 Ready", timeout_seconds=60),
        ),
        validation=("prometheus-ready",),
    )
    storage = Finding(
        code="prometheus-storage-permission",
        severity=severity,
        summary="Prometheus cannot open its TSDB lock: /prometheus is not writable by its user",
        objects=(sts, pod),
        evidence=(
            'err="opening storage failed: lock DB directory: open /prometheus/lock: permission denied"',
            "container prometheus: CrashLoopBackOff, 9 restarts, last exit code 1",
        ),
        plan=plan if with_plan else None,
    )
    endpoints = Finding(
        code="service-no-endpoints",
        severity=Severity.WARNING,
        summary="Service prometheus has no ready endpoints",
        objects=(ObjectRef("Service", "prometheus", "monitoring"),),
        evidence=("endpoints monitoring/prometheus: 0 ready addresses",),
        caused_by=("prometheus-storage-permission",),
    )
    return (storage, endpoints)


def sample_incident(
    *,
    incident_id: int = 7,
    work_state: WorkState = WorkState.DIAGNOSED,
    status: IncidentStatus = IncidentStatus.FIRING,
    findings: tuple[Finding, ...] | None = None,
    dry_run_diff: str | None = "--- a\n+++ b\n+    runAsUser: 65534\n",
    severity: str = "critical",
    now: float = 1_700_000_000.0,
) -> Incident:
    labels = {"alertname": "KubePodCrashLooping", "namespace": "monitoring", "severity": severity}
    alert = Alert(
        fingerprint="abc123",
        status="firing" if status is IncidentStatus.FIRING else "resolved",
        labels={**labels, "pod": "prometheus-0"},
        annotations={"summary": "prometheus-0 is crash looping"},
        starts_at="2026-11-25T08:00:00Z",
        ends_at=None,
    )
    return Incident(
        id=incident_id,
        group_key='{}:{alertname="KubePodCrashLooping"}',
        status=status,
        work_state=work_state,
        receiver="pitcrew",
        group_labels={"alertname": "KubePodCrashLooping"},
        common_labels=labels,
        common_annotations={"summary": "prometheus-0 is crash looping"},
        external_url="http://alertmanager.example:9093",
        alerts=(alert,),
        created_at=now,
        updated_at=now,
        findings=sample_findings() if findings is None else findings,
        dry_run_diff=dry_run_diff,
    )


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture
async def slack_api() -> AsyncIterator[SlackApiServer]:
    """The recording Slack Web API; the test fails if any call broke Slack's rules."""
    server = SlackApiServer()
    await server.start()
    try:
        yield server
    finally:
        await server.close()
    assert not server.problems, f"calls Slack would refuse: {server.problems}"


@pytest.fixture
async def socket_mode_server() -> AsyncIterator[SocketModeServer]:
    server = SocketModeServer()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


# ---------------------------------------------------------------------------------------------
# An executor for Slack-level tests: it keeps the store's execution protocol exactly as
# bot.remediation does (start_execution -> EXECUTING -> backups -> events -> finish -> final state), so
# "one execution per incident" is still the store's real SQL guarantee, but touches no cluster.
# The end-to-end test uses the real bot.remediation against the emulated cluster instead.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScriptedResult:
    execution_id: int | None
    outcome: str
    detail: str
    backups: tuple[str, ...] = ()
    checks: tuple[Any, ...] = ()


@dataclass
class ScriptedExecutor:
    store: Any
    outcome: str = "succeeded"
    hold: asyncio.Event | None = None  # when set, each execution waits for it (a long remediation)
    started: list[int] = field(default_factory=list)
    rollbacks: list[Any] = field(default_factory=list)

    async def execute(self, findings: Any, *, incident_id: int, actor: str, on_event: Any) -> ScriptedResult:
        from bot.model import StepEvent as Event
        from bot.model import WorkState as State
        from bot.model import plan_to_json
        from bot.store import ExecutionConflict

        steps = [s for f in findings if f.plan is not None for s in f.plan.steps]
        targets = [str(s.target) for s in steps]
        plan = Plan(steps=tuple(steps))
        try:
            execution = await self.store.start_execution(
                incident_id, actor, targets, json.dumps(plan_to_json(plan))
            )
        except ExecutionConflict as exc:
            return ScriptedResult(exc.execution_id, "refused", exc.reason)
        self.started.append(execution.id)
        await self.store.set_work_state(incident_id, State.EXECUTING)
        backup = await self.store.save_backup(execution.id, targets[0], "object", "{}")
        for i, step in enumerate(steps):
            await on_event(
                Event(execution.id, i, step.action, "started", f"{step.target}: {step.description}")
            )
            if i == 0 and self.hold is not None:
                await self.hold.wait()
            await on_event(
                Event(
                    execution.id,
                    i,
                    step.action,
                    "done",
                    step.description,
                    backup_id=backup if i == 0 else None,
                )
            )
        await on_event(Event(execution.id, -1, "validate", "done", "1 checks passed (0 with warnings)"))
        detail = (
            "all steps done and validation passed" if self.outcome == "succeeded" else "validation failed"
        )
        await self.store.finish_execution(execution.id, self.outcome, detail)
        await self.store.set_work_state(
            incident_id, State.SUCCEEDED if self.outcome == "succeeded" else State.FAILED
        )
        await on_event(Event(execution.id, -1, "execution", "done", f"{self.outcome}: {detail}"))
        from bot.model import CheckResult

        checks = (CheckResult("prometheus-ready", "pass", "prometheus-0 Ready"),)
        return ScriptedResult(execution.id, self.outcome, detail, (backup,), checks)

    async def rollback(self, ref: Any, *, actor: str, on_event: Any) -> ScriptedResult:
        from bot.model import StepEvent as Event
        from bot.model import WorkState as State

        self.rollbacks.append(ref)
        original = await self.store.get_execution(int(ref))
        await on_event(Event(original.id, -1, "rollback", "rolled-back", "restored b-1"))
        await self.store.finish_execution(original.id, "rolled-back", "rolled back")
        if original.incident_id is not None:
            await self.store.set_work_state(original.incident_id, State.ROLLED_BACK)
        return ScriptedResult(original.id, "rolled-back", "restored b-1", ())


async def seed_incident(
    store: Any,
    *,
    group: str = "g1",
    severity: str = "critical",
    namespace: str = "monitoring",
    findings: tuple[Finding, ...] | None = None,
    dry_run_diff: str | None = "--- a\n+++ b\n+    runAsUser: 65534\n",
    status: str = "firing",
    generator_url: str = "",
) -> int:
    """An incident through the store's real intake and diagnosis calls; returns its id."""
    from bot.alertmanager import WebhookPayload

    labels = {"alertname": "KubePodCrashLooping", "namespace": namespace, "severity": severity}
    alert = Alert(
        fingerprint=f"fp-{group}",
        status="firing" if status == "firing" else "resolved",
        labels={**labels, "pod": "prometheus-0"},
        annotations={"summary": "prometheus-0 is crash looping"},
        starts_at="2026-11-25T08:00:00Z",
        ends_at=None if status == "firing" else "2026-11-25T09:00:00Z",
        generator_url=generator_url,
    )
    payload = WebhookPayload(
        version="4",
        receiver="pitcrew",
        status="firing" if status == "firing" else "resolved",
        alerts=(alert,),
        group_labels={"alertname": "KubePodCrashLooping"},
        common_labels=labels,
        common_annotations={"summary": "prometheus-0 is crash looping"},
        external_url="http://alertmanager.example:9093",
        group_key=f'{{}}:{{alertname="KubePodCrashLooping",group="{group}"}}',
    )
    result = await store.record_webhook(payload)
    chosen = sample_findings(severity=Severity(severity)) if findings is None else findings
    await store.save_diagnosis(result.incident_id, chosen, dry_run_diff=dry_run_diff, error=None)
    return int(result.incident_id)


def resolved_payload_for(group: str = "g1", severity: str = "critical") -> Any:
    from bot.alertmanager import WebhookPayload

    labels = {"alertname": "KubePodCrashLooping", "namespace": "monitoring", "severity": severity}
    alert = Alert(
        fingerprint=f"fp-{group}",
        status="resolved",
        labels={**labels, "pod": "prometheus-0"},
        annotations={"summary": "prometheus-0 is crash looping"},
        starts_at="2026-11-25T08:00:00Z",
        ends_at="2026-11-25T09:00:00Z",
    )
    return WebhookPayload(
        version="4",
        receiver="pitcrew",
        status="resolved",
        alerts=(alert,),
        group_labels={"alertname": "KubePodCrashLooping"},
        common_labels=labels,
        common_annotations={"summary": "prometheus-0 is crash looping"},
        external_url="http://alertmanager.example:9093",
        group_key=f'{{}}:{{alertname="KubePodCrashLooping",group="{group}"}}',
    )
