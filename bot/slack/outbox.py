"""Delivery of Slack Web API calls through the store's outbox.

Every call about an incident is first committed to the outbox, then sent by `OutboxWorker`: in order
per thread key (the store hands out only the oldest pending item of each thread), retried with
exponential backoff on transient errors (5xx, network), after `Retry-After` on 429, and marked failed
on permanent errors (`channel_not_found`, `invalid_auth`, ...). A Slack outage or a restart loses no
update: what is not yet sent is still in the store.

An item's payload says what role the call plays, so the parent message's `ts` (known only once the
first post is answered) is resolved at delivery time:
- `parent`: the incident's message. Posted once (its channel/ts saved with `set_slack_message`);
  every later `parent` item becomes `chat.update` of that same message, never a second post.
- `reply`: a thread reply; `thread_ts` and channel come from the incident's message.
- `living`: a thread reply that is posted once and then edited in place (an execution's status):
  the first item posts it and saves its `ts` under the payload's `key`; later items of the same key
  become `chat.update` of it.
- `plain`: sent as is (also any item whose payload is just the Web API arguments, like the
  scheduled health summaries the schedule module queues).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError

if TYPE_CHECKING:
    from bot.metrics import Counter
    from bot.store import OutboxItem, OutboxRepository, StoreBackend

_log = logging.getLogger(__name__)

Role = Literal["parent", "reply", "living", "plain"]

# Slack error codes worth retrying; anything else in an `ok: false` answer is permanent.
TRANSIENT_ERRORS = frozenset(
    {
        "ratelimited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
    }
)


class WebApi(Protocol):
    """What the worker needs from slack_sdk's AsyncWebClient."""

    async def api_call(self, api_method: str, *, json: dict[str, Any] | None = None) -> Any: ...


@dataclass(frozen=True)
class OutboxPayload:
    role: Role
    args: Mapping[str, Any]
    incident_id: int | None = None
    key: str | None = None  # a `living` message's name, e.g. "7:execution:12"

    def dumps(self) -> str:
        data: dict[str, Any] = {"role": self.role, "args": dict(self.args), "incident_id": self.incident_id}
        if self.key is not None:
            data["key"] = self.key
        return json.dumps(data)

    @classmethod
    def loads(cls, text: str) -> OutboxPayload:
        """An item written by `dumps`, or (from other writers, e.g. scheduled summaries) the bare
        Web API arguments, which are sent as they are."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("outbox payload is not a JSON object")
        if "role" not in data or "args" not in data:
            return cls(role="plain", args=data)
        if data["role"] not in ("parent", "reply", "living", "plain") or not isinstance(data["args"], dict):
            raise ValueError(f"outbox payload has an unknown role {data['role']!r}")
        key = data.get("key")
        if data["role"] == "living" and not isinstance(key, str):
            raise ValueError("a living outbox payload needs a key")
        return cls(role=data["role"], args=data["args"], incident_id=data.get("incident_id"), key=key)


def living_key(key: str) -> str:
    """Where a living message's `ts` is kept (the store's kv table)."""
    return f"slack.living.{key}"


def incident_thread(incident_id: int) -> str:
    return f"incident:{incident_id}"


async def enqueue(store: OutboxRepository, thread_key: str, method: str, payload: OutboxPayload) -> int:
    return await store.enqueue_outbox(thread_key, method, payload.dumps())


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 1.0
    max_seconds: float = 300.0
    max_attempts: int = 60  # with the cap, about four hours of outage before giving up

    def backoff(self, attempts: int) -> float:
        """Delay before attempt `attempts + 1`: exponential with jitter, capped."""
        delay = min(self.max_seconds, self.base_seconds * (2 ** min(attempts, 20)))
        return float(delay * (0.5 + random.random() / 2))


class _Permanent(Exception):
    pass


class _Transient(Exception):
    def __init__(self, error: str, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.retry_after = retry_after


class OutboxWorker:
    """Sends due outbox items until stopped. One per process (the store serialises the rest)."""

    def __init__(
        self,
        store: StoreBackend,  # the outbox, and kv for where a living message is
        client: WebApi,
        *,
        deliveries: Counter | None = None,
        retry: RetryPolicy | None = None,
        batch: int = 20,
        idle_seconds: float = 0.5,
        keep_done_seconds: float = 7 * 86400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._client = client
        self._deliveries = deliveries
        self._retry = retry or RetryPolicy()
        self._batch = batch
        self._idle = idle_seconds
        self._clock = clock
        self._keep_done = keep_done_seconds
        self._pruned_at: float | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Something was enqueued: look now rather than at the next idle tick."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="slack-outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def prune(self) -> int:
        """Drop delivered items older than the retention, at most once an hour, so the outbox table
        does not grow with every message pitcrew ever sent."""
        now = self._clock()
        if self._pruned_at is not None and now - self._pruned_at < 3600:
            return 0
        self._pruned_at = now
        return await self._store.prune_outbox(now - self._keep_done)

    async def _run(self) -> None:
        while True:
            try:
                await self.prune()
                sent = await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("outbox pass failed; retrying")
                sent = 0
            if sent == 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle)

    async def deliver_due(self) -> int:
        """One pass: send the head item of every thread that is due (threads in parallel). Returns
        how many items were handled."""
        items = await self._store.due_outbox(self._clock(), self._batch)
        if items:
            await asyncio.gather(*(self._deliver(item) for item in items))
        return len(items)

    async def _deliver(self, item: OutboxItem) -> None:
        try:
            payload = OutboxPayload.loads(item.payload_json)
            method, args = await self._resolve(item.method, payload)
            response = await self._call(method, args)
            if payload.role == "parent" and method == "chat.postMessage" and payload.incident_id is not None:
                await self._store.set_slack_message(
                    payload.incident_id, str(response["channel"]), str(response["ts"])
                )
            if payload.role == "living" and method == "chat.postMessage" and payload.key is not None:
                await self._store.set_kv(living_key(payload.key), str(response["ts"]))
            await self._store.mark_outbox_sent(item.id, json.dumps(_small(response)))
            self._count("sent")
        except _Transient as exc:
            attempts = item.attempts + 1
            if attempts >= self._retry.max_attempts:
                await self._fail(item, f"gave up after {attempts} attempts: {exc}")
                return
            delay = exc.retry_after if exc.retry_after is not None else self._retry.backoff(item.attempts)
            _log.warning(
                "slack %s for %s: %s; retry %d in %.1f s", item.method, item.thread_key, exc, attempts, delay
            )
            await self._store.mark_outbox_retry(item.id, self._clock() + delay, str(exc))
            self._count("retry")
        except (_Permanent, ValueError, KeyError, TypeError) as exc:
            await self._fail(item, str(exc) or type(exc).__name__)

    async def _fail(self, item: OutboxItem, error: str) -> None:
        # The error text comes from Slack's answer or our own checks, never from the request headers,
        # so the token cannot end up in the log.
        _log.error("slack %s for %s failed permanently: %s", item.method, item.thread_key, error)
        await self._store.mark_outbox_failed(item.id, error)
        self._count("failed")

    def _count(self, outcome: str) -> None:
        if self._deliveries is not None:
            self._deliveries.inc(outcome=outcome)

    async def _resolve(self, method: str, payload: OutboxPayload) -> tuple[str, dict[str, Any]]:
        args = dict(payload.args)
        if payload.role == "plain":
            return method, args
        if payload.incident_id is None:
            raise _Permanent(f"{payload.role} item without an incident id")
        message = await self._store.get_slack_message(payload.incident_id)
        if payload.role == "parent":
            if message is None:
                return "chat.postMessage", args
            channel, ts = message
            args.update(channel=channel, ts=ts)
            return "chat.update", args
        if message is None:
            raise _Permanent(f"incident {payload.incident_id} has no Slack message to reply to")
        channel, ts = message
        if payload.role == "living" and payload.key is not None:
            posted = await self._store.get_kv(living_key(payload.key))
            if posted:
                args.update(channel=channel, ts=posted)
                return "chat.update", args
        args.update(channel=channel, thread_ts=ts)
        return method, args

    async def _call(self, method: str, args: dict[str, Any]) -> Mapping[str, Any]:
        try:
            response = await self._client.api_call(method, json=args)
        except SlackApiError as exc:
            raise _classify(exc) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _Transient(f"network: {type(exc).__name__}: {exc}") from None
        data = response.data if hasattr(response, "data") else response
        if not isinstance(data, Mapping):
            raise _Transient("unexpected answer from Slack")
        return data


def _classify(exc: SlackApiError) -> Exception:
    response = exc.response
    status = int(getattr(response, "status_code", 0) or 0)
    data = getattr(response, "data", None)
    error = str(data.get("error")) if isinstance(data, Mapping) and data.get("error") else f"http {status}"
    if status == 429 or error == "ratelimited":
        headers = getattr(response, "headers", {}) or {}
        retry_after = _retry_after(headers.get("Retry-After") or headers.get("retry-after"))
        return _Transient("ratelimited", retry_after if retry_after is not None else 1.0)
    if status >= 500 or error in TRANSIENT_ERRORS:
        return _Transient(error)
    return _Permanent(error)


def _retry_after(value: Any) -> float | None:
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None


def _small(response: Mapping[str, Any]) -> dict[str, Any]:
    """What is worth keeping of an answer (not the echoed message)."""
    return {k: response[k] for k in ("ok", "channel", "ts") if k in response}
