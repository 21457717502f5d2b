"""Store: the Slack outbox (order per thread, retries, restarts, kv in the same transaction) and
each incident's Slack message."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable

import pytest

from bot.store import NotFound, Store
from tests.support.store import FakeClock, new_incident

# Every test on both backends, unless it says otherwise (tests/support/store.py).
pytestmark = pytest.mark.store_backends("sqlite", "postgresql")


Opener = Callable[..., Awaitable[Store]]


async def test_slack_message_of_an_incident(tmp_store: Store) -> None:
    iid = await new_incident(tmp_store)
    assert await tmp_store.get_slack_message(iid) is None
    await tmp_store.set_slack_message(iid, "C1", "1700000000.000100")
    await tmp_store.set_slack_message(iid, "C2", "1700000000.000200")
    assert await tmp_store.get_slack_message(iid) == ("C2", "1700000000.000200")
    with pytest.raises(NotFound):
        await tmp_store.set_slack_message(999, "C1", "1.0")


async def test_outbox_delivers_in_order_per_thread(tmp_store: Store, store_clock: FakeClock) -> None:
    a1 = await tmp_store.enqueue_outbox("thread-a", "chat.postMessage", '{"text": "a1"}')
    a2 = await tmp_store.enqueue_outbox("thread-a", "chat.postMessage", '{"text": "a2"}')
    b1 = await tmp_store.enqueue_outbox("thread-b", "chat.update", '{"text": "b1"}')
    now = store_clock.now
    assert await tmp_store.outbox_backlog() == 3

    due = await tmp_store.due_outbox(now, 10)
    assert [i.id for i in due] == [a1, b1]  # only the oldest of each thread
    assert (due[0].thread_key, due[0].method, due[0].payload_json) == (
        "thread-a",
        "chat.postMessage",
        '{"text": "a1"}',
    )
    assert [i.id for i in await tmp_store.due_outbox(now, 1)] == [a1]

    await tmp_store.mark_outbox_sent(a1, '{"ok": true}')
    assert [i.id for i in await tmp_store.due_outbox(now, 10)] == [a2, b1]
    await tmp_store.mark_outbox_sent(a2, '{"ok": true}')
    await tmp_store.mark_outbox_sent(b1, '{"ok": true}')
    assert await tmp_store.due_outbox(now, 10) == []
    assert await tmp_store.outbox_backlog() == 0


async def test_outbox_retry_holds_back_its_thread_until_not_before(
    tmp_store: Store, store_clock: FakeClock
) -> None:
    a1 = await tmp_store.enqueue_outbox("thread-a", "chat.postMessage", "{}")
    a2 = await tmp_store.enqueue_outbox("thread-a", "chat.postMessage", "{}")
    b1 = await tmp_store.enqueue_outbox("thread-b", "chat.postMessage", "{}")
    now = store_clock.now

    await tmp_store.mark_outbox_retry(a1, now + 30, "ratelimited")
    assert [i.id for i in await tmp_store.due_outbox(now, 10)] == [b1]  # a2 waits behind a1
    assert [i.id for i in await tmp_store.due_outbox(now + 29.9, 10)] == [b1]
    due = await tmp_store.due_outbox(now + 30, 10)
    assert [i.id for i in due] == [a1, b1]
    assert (due[0].attempts, due[0].last_error, due[0].not_before) == (1, "ratelimited", now + 30)

    # Giving up on a1 lets a2 go; the failed item no longer counts as backlog.
    await tmp_store.mark_outbox_failed(a1, "channel_not_found")
    assert [i.id for i in await tmp_store.due_outbox(now + 30, 10)] == [a2, b1]
    assert await tmp_store.outbox_backlog() == 2
    with pytest.raises(NotFound):
        await tmp_store.mark_outbox_sent(999, "{}")


async def test_outbox_survives_restart(tmp_store_opener: Opener, store_clock: FakeClock) -> None:
    store = await tmp_store_opener()
    item = await store.enqueue_outbox("t", "chat.postMessage", '{"text": "x"}')
    await store.close()
    reopened = await tmp_store_opener()
    assert [i.id for i in await reopened.due_outbox(store_clock.now, 10)] == [item]


@pytest.mark.store_backends("sqlite")  # SQLite's own mechanics; PostgreSQL: test_store_postgres.py
async def test_outbox_item_and_its_kv_records_are_one_transaction(tmp_store: Store) -> None:
    item = await tmp_store.enqueue_outbox("t", "chat.postMessage", "{}", kv={"run": "1", "state": "s"})
    assert (await tmp_store.get_kv("run"), await tmp_store.get_kv("state")) == ("1", "s")
    assert [i.id for i in await tmp_store.due_outbox(1e12, 10)] == [item]

    with sqlite3.connect(tmp_store.path) as conn:  # the second record fails, as a full disk would
        conn.execute(
            "CREATE TRIGGER fail_state BEFORE UPDATE ON kv WHEN NEW.key = 'state'"
            " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    with pytest.raises(sqlite3.IntegrityError):
        await tmp_store.enqueue_outbox("t", "chat.postMessage", "{}", kv={"run": "2", "state": "s2"})
    assert await tmp_store.outbox_backlog() == 1  # the message is not queued...
    assert await tmp_store.get_kv("run") == "1"  # ...and the record before the failure is undone


async def test_several_items_and_their_kv_records_are_queued_in_order_at_once(tmp_store: Store) -> None:
    items = [("t", "chat.postMessage", '{"n": 1}'), ("t", "chat.postMessage", '{"n": 2}')]
    ids = await tmp_store.enqueue_outbox_many([*items, ("u", "chat.update", "{}")], kv={"seen": "d1"})
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert await tmp_store.get_kv("seen") == "d1"
    due = await tmp_store.due_outbox(1e12, 10)  # the oldest of each thread, in order
    expected = [(ids[0], "t", '{"n": 1}'), (ids[2], "u", "{}")]
    assert [(i.id, i.thread_key, i.payload_json) for i in due] == expected
    await tmp_store.mark_outbox_sent(ids[0], "{}")
    assert [i.id for i in await tmp_store.due_outbox(1e12, 10)] == [ids[1], ids[2]]
    assert await tmp_store.enqueue_outbox_many([]) == []


@pytest.mark.store_backends("sqlite")  # the failure is injected with an SQLite trigger
async def test_a_batch_that_fails_midway_queues_nothing(tmp_store: Store) -> None:
    with sqlite3.connect(tmp_store.path) as conn:  # the last record fails, as a full disk would
        conn.execute(
            "CREATE TRIGGER fail_state BEFORE INSERT ON kv WHEN NEW.key = 'state'"
            " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    with pytest.raises(sqlite3.IntegrityError):
        await tmp_store.enqueue_outbox_many(
            [("t", "chat.postMessage", "{}"), ("t", "chat.postMessage", "{}")], kv={"run": "1", "state": "s"}
        )
    assert await tmp_store.outbox_backlog() == 0
    assert await tmp_store.get_kv("run") is None
