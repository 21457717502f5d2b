"""Store: executions and target locks, decisions, backups, audit, outbox, Slack messages, locks, kv."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bot.store import Execution, ExecutionConflict, NotFound, Store
from tests.support.store import FakeClock, make_alert, make_payload

Opener = Callable[..., Awaitable[Store]]

PROMETHEUS = "monitoring/StatefulSet/prometheus"
LOKI_CM = "monitoring/ConfigMap/loki"


async def _incident(store: Store, group_key: str = "g1") -> int:
    return (await store.record_webhook(make_payload(group_key, [make_alert("a")]))).incident_id


# ---------------------------------------------------------------------------------------------
# Executions
# ---------------------------------------------------------------------------------------------


async def test_twenty_concurrent_starts_on_one_incident_exactly_one_wins(tmp_store: Store) -> None:
    iid = await _incident(tmp_store)
    results = await asyncio.gather(
        *(tmp_store.start_execution(iid, f"user-{n}", [PROMETHEUS], '{"steps": []}') for n in range(20)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, Execution)]
    losers = [r for r in results if isinstance(r, ExecutionConflict)]
    assert len(winners) == 1 and len(losers) == 19
    assert all(f"already has execution {winners[0].id}" in c.reason for c in losers)
    assert all(c.execution_id == winners[0].id for c in losers)
    assert await tmp_store.list_executions(iid) == [winners[0]]


async def test_concurrent_starts_from_two_connections_exactly_one_wins(tmp_store_opener: Opener) -> None:
    # Two open stores = two SQLite connections on one file: the guarantee comes from SQL, not one thread.
    first, second = await tmp_store_opener(), await tmp_store_opener()
    iid = await _incident(first)
    attempts = [s.start_execution(iid, "u", [PROMETHEUS], "{}") for s in (first, second) for _ in range(10)]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    assert sum(isinstance(r, Execution) for r in results) == 1
    assert sum(isinstance(r, ExecutionConflict) for r in results) == 19


async def test_an_incident_keeps_its_one_execution_after_it_finished(tmp_store: Store) -> None:
    iid = await _incident(tmp_store)
    execution = await tmp_store.start_execution(iid, "alice", [PROMETHEUS], "{}")
    await tmp_store.finish_execution(execution.id, "failed", "validation failed")
    with pytest.raises(ExecutionConflict, match=rf"already has execution {execution.id} \(failed\)"):
        await tmp_store.start_execution(iid, "bob", [PROMETHEUS], "{}")


async def test_a_locked_target_blocks_another_incident_until_the_first_finishes(
    tmp_store: Store, store_clock: FakeClock
) -> None:
    first_incident, second_incident = await _incident(tmp_store, "g1"), await _incident(tmp_store, "g2")
    first = await tmp_store.start_execution(first_incident, "alice", [PROMETHEUS, LOKI_CM], '{"n": 1}')
    assert first.status == "running" and first.targets == (PROMETHEUS, LOKI_CM)

    with pytest.raises(ExecutionConflict) as conflict:
        await tmp_store.start_execution(second_incident, "bob", [LOKI_CM], "{}")
    assert conflict.value.reason == f"{LOKI_CM} is locked by running execution {first.id}"
    assert conflict.value.execution_id == first.id
    assert await tmp_store.list_executions(second_incident) == []  # nothing half-written

    store_clock.advance(5)
    await tmp_store.finish_execution(first.id, "succeeded", "all checks passed")
    second = await tmp_store.start_execution(second_incident, "bob", [LOKI_CM], "{}")
    assert second.incident_id == second_incident

    finished = await tmp_store.get_execution(first.id)
    assert finished is not None
    assert finished.status == "succeeded" and finished.detail == "all checks passed"
    assert finished.finished_at == store_clock.now and finished.plan_json == '{"n": 1}'


async def test_executions_without_incident_are_allowed_but_still_lock_targets(tmp_store: Store) -> None:
    cli_run = await tmp_store.start_execution(None, "cli:alice", [PROMETHEUS, PROMETHEUS], "{}")
    assert cli_run.targets == (PROMETHEUS,)
    other = await tmp_store.start_execution(None, "cli:bob", [LOKI_CM], "{}")
    with pytest.raises(ExecutionConflict, match="locked by running execution"):
        await tmp_store.start_execution(None, "cli:carol", [PROMETHEUS], "{}")
    assert [e.id for e in await tmp_store.list_executions()] == [other.id, cli_run.id]


async def test_target_lock_is_a_unique_index_in_sql(tmp_store: Store) -> None:
    execution = await tmp_store.start_execution(None, "cli", [PROMETHEUS], "{}")
    other = await tmp_store.start_execution(None, "cli", [LOKI_CM], "{}")
    with sqlite3.connect(tmp_store.path) as conn, pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        conn.execute(
            "INSERT INTO execution_targets (execution_id, target, active) VALUES (?, ?, 1)",
            (other.id, PROMETHEUS),
        )
    assert execution.id != other.id


async def test_one_execution_per_incident_is_a_unique_constraint_in_sql(tmp_store: Store) -> None:
    iid = await _incident(tmp_store)
    await tmp_store.start_execution(iid, "u", [PROMETHEUS], "{}")
    with sqlite3.connect(tmp_store.path) as conn, pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        conn.execute(
            "INSERT INTO executions (incident_id, actor, targets, plan_json, status, started_at)"
            " VALUES (?, 'x', '[]', '{}', 'running', 0)",
            (iid,),
        )


async def test_execution_errors(tmp_store: Store) -> None:
    with pytest.raises(NotFound, match="incident 42 does not exist"):
        await tmp_store.start_execution(42, "u", [PROMETHEUS], "{}")
    with pytest.raises(NotFound, match="execution 42 does not exist"):
        await tmp_store.finish_execution(42, "succeeded", "")
    execution = await tmp_store.start_execution(None, "u", [PROMETHEUS], "{}")
    with pytest.raises(ValueError, match="outcome must be one of"):
        await tmp_store.finish_execution(execution.id, "done", "")  # type: ignore[arg-type]
    assert await tmp_store.get_execution(999) is None


# ---------------------------------------------------------------------------------------------
# Decisions, backups, audit, Slack message
# ---------------------------------------------------------------------------------------------


async def test_decisions_round_trip_in_order(tmp_store: Store, store_clock: FakeClock) -> None:
    iid = await _incident(tmp_store)
    await tmp_store.record_decision(iid, "U1", "alice", "approve", None)
    store_clock.advance(1)
    await tmp_store.record_decision(iid, "U2", "bob", "reject", "not during the release")
    decisions = await tmp_store.list_decisions(iid)
    assert [(d.user_name, d.decision, d.reason) for d in decisions] == [
        ("alice", "approve", None),
        ("bob", "reject", "not during the release"),
    ]
    assert decisions[1].at == store_clock.now and decisions[0].incident_id == iid
    with pytest.raises(ValueError, match="decision must be one of approve, reject"):
        await tmp_store.record_decision(iid, "U1", "alice", "maybe", None)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        await tmp_store.record_decision(999, "U1", "alice", "approve", None)


async def test_backups_round_trip(tmp_store_opener: Opener) -> None:
    store = await tmp_store_opener()
    execution = await store.start_execution(None, "u", [PROMETHEUS], "{}")
    first = await store.save_backup(execution.id, PROMETHEUS, "object", "kind: StatefulSet\n")
    second = await store.save_backup(execution.id, "host/node-1:/data", "host", "uid=0 gid=0 mode=0755")
    assert first.startswith("b-") and first != second
    await store.close()

    reopened = await tmp_store_opener()
    backup = await reopened.get_backup(first)
    assert backup is not None
    assert (backup.id, backup.execution_id, backup.target, backup.kind, backup.content) == (
        first,
        execution.id,
        PROMETHEUS,
        "object",
        "kind: StatefulSet\n",
    )
    assert [b.id for b in await reopened.list_backups(execution.id)] == [first, second]
    assert await reopened.get_backup("b-999") is None
    assert await reopened.get_backup("12") is None
    assert await reopened.get_backup("b-") is None
    with pytest.raises(NotFound):
        await reopened.save_backup(999, PROMETHEUS, "object", "")
    with pytest.raises(ValueError, match="kind must be one of object, host"):
        await reopened.save_backup(execution.id, PROMETHEUS, "file", "")  # type: ignore[arg-type]


async def test_audit_round_trip_and_limit(tmp_store: Store, store_clock: FakeClock) -> None:
    iid = await _incident(tmp_store)
    for n in range(5):
        store_clock.advance(1)
        await tmp_store.audit("alice", f"step-{n}", incident_id=iid, execution_id=7, detail=f"d{n}")
    await tmp_store.audit("pitcrew", "unrelated")
    entries = await tmp_store.list_audit(incident_id=iid)
    assert [e.action for e in entries] == [f"step-{n}" for n in range(5)]
    assert (entries[0].actor, entries[0].execution_id, entries[0].detail) == ("alice", 7, "d0")
    latest = await tmp_store.list_audit(incident_id=iid, limit=2)
    assert [e.action for e in latest] == ["step-3", "step-4"]  # the latest two, oldest first
    everything = await tmp_store.list_audit()
    assert everything[-1].action == "unrelated" and everything[-1].incident_id is None
    assert len(everything) == 6


async def test_slack_message_of_an_incident(tmp_store: Store) -> None:
    iid = await _incident(tmp_store)
    assert await tmp_store.get_slack_message(iid) is None
    await tmp_store.set_slack_message(iid, "C1", "1700000000.000100")
    await tmp_store.set_slack_message(iid, "C2", "1700000000.000200")
    assert await tmp_store.get_slack_message(iid) == ("C2", "1700000000.000200")
    with pytest.raises(NotFound):
        await tmp_store.set_slack_message(999, "C1", "1.0")


# ---------------------------------------------------------------------------------------------
# Outbox
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Locks and kv
# ---------------------------------------------------------------------------------------------


async def test_try_lock_owner_and_ttl(tmp_store: Store, store_clock: FakeClock) -> None:
    assert await tmp_store.try_lock("schedule:morning", "pod-a", 60)
    assert not await tmp_store.try_lock("schedule:morning", "pod-b", 60)
    assert await tmp_store.try_lock("other", "pod-b", 60)  # locks are independent

    store_clock.advance(50)
    assert await tmp_store.try_lock("schedule:morning", "pod-a", 60)  # renewal extends to t+110
    store_clock.advance(50)
    assert not await tmp_store.try_lock("schedule:morning", "pod-b", 60)
    store_clock.advance(11)
    assert await tmp_store.try_lock("schedule:morning", "pod-b", 60)  # expired: anyone may take it
    assert not await tmp_store.try_lock("schedule:morning", "pod-a", 60)


async def test_release_lock_only_by_its_owner(tmp_store: Store) -> None:
    assert await tmp_store.try_lock("leader", "pod-a", 600)
    await tmp_store.release_lock("leader", "pod-b")
    assert not await tmp_store.try_lock("leader", "pod-b", 600)
    await tmp_store.release_lock("leader", "pod-a")
    assert await tmp_store.try_lock("leader", "pod-b", 600)


async def test_kv(tmp_store: Store) -> None:
    assert await tmp_store.get_kv("summary:last-run") is None
    await tmp_store.set_kv("summary:last-run", "1")
    await tmp_store.set_kv("summary:last-run", "2")
    assert await tmp_store.get_kv("summary:last-run") == "2"


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


async def test_the_database_and_its_wal_files_are_owner_only(tmp_path: Path) -> None:
    # The store holds backups of cluster objects and evidence: not for other local users to read.
    previous = os.umask(0o022)  # the usual umask, which would leave a new file world-readable
    try:
        store = await Store.open(str(tmp_path / "pitcrew.db"))
        try:
            await store.set_kv("k", "v")
            files = sorted(os.listdir(tmp_path))
            assert files == ["pitcrew.db", "pitcrew.db-shm", "pitcrew.db-wal"]
            modes = {name: stat.S_IMODE(os.stat(tmp_path / name).st_mode) for name in files}
            assert modes == dict.fromkeys(files, 0o600)
        finally:
            await store.close()
    finally:
        os.umask(previous)
