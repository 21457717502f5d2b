"""Outbox delivery to the recording Slack Web API: order per thread, retries with backoff on 5xx,
Retry-After on 429, permanent errors, and thread replies resolved to the parent's ts."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.metrics import MetricsRegistry
from bot.slack.outbox import OutboxPayload, OutboxWorker, RetryPolicy, enqueue, incident_thread
from bot.store import Store
from tests.support.slack import BOT_TOKEN, SlackApiServer, seed_incident

pytestmark = pytest.mark.integration


class StepClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(str(tmp_path / "outbox.db"), clock=lambda: 1_800_000_000.0)
    try:
        yield s
    finally:
        await s.close()


def worker_for(store: Store, api: SlackApiServer, clock: StepClock, token: str = BOT_TOKEN) -> OutboxWorker:
    client = AsyncWebClient(token=token, base_url=api.base_url)
    registry = MetricsRegistry()
    deliveries = registry.counter("pitcrew_slack_outbox_deliveries_total", "x", ["outcome"])
    return OutboxWorker(
        store, client, deliveries=deliveries, retry=RetryPolicy(base_seconds=2, max_seconds=60), clock=clock
    )


def plain(channel: str, text: str) -> OutboxPayload:
    return OutboxPayload("plain", {"channel": channel, "text": text})


async def test_429_honours_retry_after(store: Store, slack_api: SlackApiServer) -> None:
    clock = StepClock()
    worker = worker_for(store, slack_api, clock)
    slack_api.fail_next("chat.postMessage", status=429, retry_after=7)
    await enqueue(store, "t1", "chat.postMessage", plain("C-OPS", "hello"))

    assert await worker.deliver_due() == 1
    assert [c.status for c in slack_api.calls] == [429]
    clock.now += 6.5  # before Retry-After: nothing is due
    assert await worker.deliver_due() == 0
    clock.now += 0.5
    assert await worker.deliver_due() == 1
    assert [c.status for c in slack_api.calls] == [429, 200]
    assert await store.outbox_backlog() == 0


async def test_500_retried_with_backoff_and_thread_order_kept(
    store: Store, slack_api: SlackApiServer
) -> None:
    clock = StepClock()
    worker = worker_for(store, slack_api, clock)
    slack_api.fail_next("chat.postMessage", status=500, times=2, text="a1")
    await enqueue(store, "a", "chat.postMessage", plain("C-OPS", "a1"))
    await enqueue(store, "a", "chat.postMessage", plain("C-OPS", "a2"))
    await enqueue(store, "b", "chat.postMessage", plain("C-ALERTS", "b1"))

    for _ in range(20):  # bounded: advance time past each backoff
        await worker.deliver_due()
        if await store.outbox_backlog() == 0:
            break
        clock.now += 61
    assert await store.outbox_backlog() == 0
    delivered = [c.args["text"] for c in slack_api.ok_calls("chat.postMessage")]
    # a1 failed twice; a2 waited behind it, b1 (another thread) did not.
    assert delivered.index("a1") < delivered.index("a2")
    assert delivered.index("b1") < delivered.index("a1")
    statuses = [(c.args["text"], c.status) for c in slack_api.calls]
    assert statuses.count(("a1", 500)) == 2


async def test_network_error_is_transient(store: Store, slack_api: SlackApiServer) -> None:
    clock = StepClock()
    await enqueue(store, "t", "chat.postMessage", plain("C-OPS", "later"))
    # A port nothing listens on: connection refused.
    dead = SlackApiServer()
    client = AsyncWebClient(token=BOT_TOKEN, base_url="http://127.0.0.1:9/api/")
    worker = OutboxWorker(store, client, retry=RetryPolicy(base_seconds=1), clock=clock)
    assert await worker.deliver_due() == 1
    assert await store.outbox_backlog() == 1  # kept for a retry, not dropped
    assert dead.calls == []
    worker = worker_for(store, slack_api, clock)
    clock.now += 5
    assert await worker.deliver_due() == 1
    assert await store.outbox_backlog() == 0


async def test_permanent_errors_fail_the_item_and_never_log_the_token(
    store: Store, slack_api: SlackApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = StepClock()
    worker = worker_for(store, slack_api, clock)
    await enqueue(store, "t", "chat.postMessage", plain("C-NOWHERE", "lost"))
    await enqueue(store, "t", "chat.postMessage", plain("C-OPS", "next"))
    with caplog.at_level(logging.INFO):
        assert await worker.deliver_due() == 1
        assert await worker.deliver_due() == 1
    assert "channel_not_found" in caplog.text
    assert [c.args["text"] for c in slack_api.ok_calls("chat.postMessage")] == ["next"]

    slack_api.expect_auth_failures = True
    bad = worker_for(store, slack_api, clock, token="xoxb-wrong-token-123")
    await enqueue(store, "u", "chat.postMessage", plain("C-OPS", "denied"))
    with caplog.at_level(logging.DEBUG):
        assert await bad.deliver_due() == 1
    assert "invalid_auth" in caplog.text
    assert "xoxb-wrong-token-123" not in caplog.text and BOT_TOKEN not in caplog.text
    assert await store.outbox_backlog() == 0


async def test_parent_posted_once_then_updated_and_replies_threaded(
    store: Store, slack_api: SlackApiServer
) -> None:
    clock = StepClock()
    worker = worker_for(store, slack_api, clock)
    incident_id = await seed_incident(store)
    thread_key = incident_thread(incident_id)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "v"}}]
    parent = {"channel": "C-ALERTS", "text": "v1", "blocks": blocks}
    await enqueue(store, thread_key, "chat.postMessage", OutboxPayload("parent", parent, incident_id))
    await enqueue(store, thread_key, "chat.postMessage", OutboxPayload("reply", {"text": "r1"}, incident_id))
    await enqueue(
        store, thread_key, "chat.postMessage", OutboxPayload("parent", {**parent, "text": "v2"}, incident_id)
    )
    await enqueue(store, thread_key, "chat.postMessage", OutboxPayload("reply", {"text": "r2"}, incident_id))
    for _ in range(10):
        if await worker.deliver_due() == 0:
            break
    calls = slack_api.ok_calls()
    assert [(c.method, c.args.get("text")) for c in calls] == [
        ("chat.postMessage", "v1"),
        ("chat.postMessage", "r1"),
        ("chat.update", "v2"),
        ("chat.postMessage", "r2"),
    ]
    channel, ts = await store.get_slack_message(incident_id) or ("", "")
    assert channel == "C-ALERTS"
    assert calls[1].thread_ts == ts and calls[3].thread_ts == ts and calls[2].args["ts"] == ts
    assert json.loads(json.dumps(calls[2].args["blocks"])) == blocks


async def test_reply_without_parent_fails_cleanly(store: Store, slack_api: SlackApiServer) -> None:
    clock = StepClock()
    worker = worker_for(store, slack_api, clock)
    incident_id = await seed_incident(store)
    await enqueue(
        store,
        incident_thread(incident_id),
        "chat.postMessage",
        OutboxPayload("reply", {"text": "x"}, incident_id),
    )
    assert await worker.deliver_due() == 1
    assert slack_api.calls == [] and await store.outbox_backlog() == 0


async def test_bare_web_api_payloads_from_other_writers_are_sent_as_they_are(
    store: Store, slack_api: SlackApiServer
) -> None:
    clock = StepClock()
    worker = worker_for(store, slack_api, clock)
    await store.enqueue_outbox(
        "summary:daily", "chat.postMessage", json.dumps({"channel": "C-OPS", "text": "ok"})
    )
    await store.enqueue_outbox("summary:daily", "chat.postMessage", "[1, 2]")  # not an object: refused
    assert await worker.deliver_due() == 1
    assert await worker.deliver_due() == 1
    assert [c.args["text"] for c in slack_api.ok_calls("chat.postMessage")] == ["ok"]
    assert await store.outbox_backlog() == 0


async def test_an_outage_across_a_restart_loses_no_update(tmp_path: Path, slack_api: SlackApiServer) -> None:
    # Slack is down (500) while pitcrew queues a post, a reply and an update; pitcrew restarts (the
    # store is closed and opened again, a new worker); once Slack is back every update arrives, in order.
    clock = StepClock()
    path = str(tmp_path / "restart.db")
    store = await Store.open(path)
    try:
        incident_id = await seed_incident(store)
        thread_key = incident_thread(incident_id)
        parent = {"channel": "C-ALERTS", "text": "v1"}
        await enqueue(store, thread_key, "chat.postMessage", OutboxPayload("parent", parent, incident_id))
        await enqueue(
            store, thread_key, "chat.postMessage", OutboxPayload("reply", {"text": "r1"}, incident_id)
        )
        await enqueue(
            store,
            thread_key,
            "chat.postMessage",
            OutboxPayload("parent", {**parent, "text": "v2"}, incident_id),
        )
        slack_api.fail_next("chat.postMessage", status=500, times=3)
        for _ in range(3):
            assert await worker_for(store, slack_api, clock).deliver_due() == 1
            clock.now += 61
        assert slack_api.ok_calls() == [] and await store.outbox_backlog() == 3
    finally:
        await store.close()

    store = await Store.open(path)
    try:
        worker = worker_for(store, slack_api, clock)
        for _ in range(10):  # bounded
            if await worker.deliver_due() == 0:
                break
        assert await store.outbox_backlog() == 0
        assert [(c.method, c.args.get("text")) for c in slack_api.ok_calls()] == [
            ("chat.postMessage", "v1"),
            ("chat.postMessage", "r1"),
            ("chat.update", "v2"),
        ]
        _, ts = await store.get_slack_message(incident_id) or ("", "")
        assert slack_api.ok_calls()[1].thread_ts == ts
    finally:
        await store.close()


async def test_delivered_items_are_pruned_after_the_retention_pending_ones_never(
    store: Store, slack_api: SlackApiServer
) -> None:
    clock = StepClock()
    worker = worker_for(store, slack_api, clock)
    await enqueue(store, "t1", "chat.postMessage", plain("C-OPS", "one"))
    await enqueue(store, "t2", "chat.postMessage", plain("C-OPS", "two"))
    assert await worker.deliver_due() == 2
    slack_api.fail_next("chat.postMessage", status=500)
    await enqueue(store, "t3", "chat.postMessage", plain("C-OPS", "still pending"))
    assert await worker.deliver_due() == 1  # answered 500: waits for a retry

    assert await worker.prune() == 0  # delivered just now: kept
    clock.now += 8 * 86400
    assert await worker.prune() == 2
    assert await store.outbox_backlog() == 1  # the undelivered item is kept
