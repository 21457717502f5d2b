"""Store: executions (one per incident, however many concurrent starts), target locks, backups."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable

import pytest

from bot.store import Execution, ExecutionConflict, NotFound, Store
from tests.support.store import FakeClock, new_incident

# Every test on both backends, unless it says otherwise (tests/support/store.py).
pytestmark = pytest.mark.store_backends("sqlite", "postgresql")


Opener = Callable[..., Awaitable[Store]]

PROMETHEUS = "monitoring/StatefulSet/prometheus"
LOKI_CM = "monitoring/ConfigMap/loki"


async def test_twenty_concurrent_starts_on_one_incident_exactly_one_wins(tmp_store: Store) -> None:
    iid = await new_incident(tmp_store)
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
    iid = await new_incident(first)
    attempts = [s.start_execution(iid, "u", [PROMETHEUS], "{}") for s in (first, second) for _ in range(10)]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    assert sum(isinstance(r, Execution) for r in results) == 1
    assert sum(isinstance(r, ExecutionConflict) for r in results) == 19


async def test_an_incident_keeps_its_one_execution_after_it_finished(tmp_store: Store) -> None:
    iid = await new_incident(tmp_store)
    execution = await tmp_store.start_execution(iid, "alice", [PROMETHEUS], "{}")
    await tmp_store.finish_execution(execution.id, "failed", "validation failed")
    with pytest.raises(ExecutionConflict, match=rf"already has execution {execution.id} \(failed\)"):
        await tmp_store.start_execution(iid, "bob", [PROMETHEUS], "{}")


async def test_a_locked_target_blocks_another_incident_until_the_first_finishes(
    tmp_store: Store, store_clock: FakeClock
) -> None:
    first_incident, second_incident = await new_incident(tmp_store, "g1"), await new_incident(tmp_store, "g2")
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


@pytest.mark.store_backends("sqlite")  # SQLite's own mechanics; PostgreSQL: test_store_postgres.py
async def test_target_lock_is_a_unique_index_in_sql(tmp_store: Store) -> None:
    execution = await tmp_store.start_execution(None, "cli", [PROMETHEUS], "{}")
    other = await tmp_store.start_execution(None, "cli", [LOKI_CM], "{}")
    with sqlite3.connect(tmp_store.path) as conn, pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        conn.execute(
            "INSERT INTO execution_targets (execution_id, target, active) VALUES (?, ?, 1)",
            (other.id, PROMETHEUS),
        )
    assert execution.id != other.id


@pytest.mark.store_backends("sqlite")  # SQLite's own mechanics; PostgreSQL: test_store_postgres.py
async def test_one_execution_per_incident_is_a_unique_constraint_in_sql(tmp_store: Store) -> None:
    iid = await new_incident(tmp_store)
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
