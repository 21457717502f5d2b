"""The PostgreSQL store with several replicas on one database (each `PostgresStore.open` is a replica,
with its own pool): what only a shared database can get wrong. The aggregate tests
(tests/test_store_*.py) run on both backends; these are PostgreSQL's own mechanics and races."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from bot.config import Secret
from bot.store import ExecutionConflict, SchemaTooNew
from bot.store.postgres import PG_MIGRATIONS, PostgresStore, PostgresUnavailable, migrate
from tests.support.postgres import PostgresDatabase
from tests.support.store import FakeClock, make_alert, make_payload, postgres_settings

Replicas = Callable[[int], Awaitable[list[PostgresStore]]]


@pytest.fixture
async def replicas(postgres_db: PostgresDatabase, store_clock: FakeClock) -> AsyncIterator[Replicas]:
    opened: list[PostgresStore] = []

    async def open_replicas(count: int) -> list[PostgresStore]:
        stores = [
            await PostgresStore.open(postgres_settings(postgres_db), clock=store_clock) for _ in range(count)
        ]
        opened.extend(stores)
        return stores

    yield open_replicas
    for store in opened:
        await store.close()


async def _raw(db: PostgresDatabase) -> asyncpg.Connection:
    return await asyncpg.connect(db.url, password=db.password)


async def test_one_incident_per_group_however_many_replicas_receive_it(replicas: Replicas) -> None:
    stores = await replicas(3)
    # Alertmanager's receiver targets every replica: each group arrives on all of them at once, twice.
    payloads = [make_payload(f"group-{g}", [make_alert(f"fp-{g}")]) for g in range(10)]
    results = await asyncio.gather(*(stores[i % 3].record_webhook(p) for i in range(6) for p in payloads))
    by_group: dict[str, set[int]] = {}
    for payload, result in zip([p for _ in range(6) for p in payloads], results, strict=True):
        by_group.setdefault(payload.group_key, set()).add(result.incident_id)
    assert all(len(ids) == 1 for ids in by_group.values())
    assert sum(r.created for r in results) == 10  # exactly one delivery created each incident
    incidents = await stores[0].list_incidents()
    assert len(incidents) == 10 and all(len(i.alerts) == 1 for i in incidents)


async def test_one_execution_per_incident_however_many_approvals(replicas: Replicas) -> None:
    a, b = await replicas(2)
    incident = (await a.record_webhook(make_payload("g", [make_alert("x")]))).incident_id
    attempts = await asyncio.gather(
        *(
            (a, b)[i % 2].start_execution(incident, f"user-{i}", ["StatefulSet/monitoring/prometheus"], "{}")
            for i in range(50)
        ),
        return_exceptions=True,
    )
    started = [r for r in attempts if not isinstance(r, BaseException)]
    conflicts = [r for r in attempts if isinstance(r, ExecutionConflict)]
    assert len(started) == 1 and len(conflicts) == 49
    assert {c.execution_id for c in conflicts} == {started[0].id}
    assert [e.id for e in await b.list_executions(incident)] == [started[0].id]


async def test_one_running_execution_per_target_across_replicas(replicas: Replicas) -> None:
    a, b = await replicas(2)
    i1 = (await a.record_webhook(make_payload("g1", [make_alert("x")]))).incident_id
    i2 = (await a.record_webhook(make_payload("g2", [make_alert("y")]))).incident_id
    target = ["StatefulSet/monitoring/prometheus"]
    results = await asyncio.gather(
        a.start_execution(i1, "u", target, "{}"),
        b.start_execution(i2, "u", target, "{}"),
        return_exceptions=True,
    )
    (winner,) = [r for r in results if not isinstance(r, BaseException)]
    (conflict,) = [r for r in results if isinstance(r, ExecutionConflict)]
    assert conflict.execution_id == winner.id
    await a.finish_execution(winner.id, "succeeded", "")
    other = i2 if winner.incident_id == i1 else i1
    assert (await b.start_execution(other, "u", target, "{}")).status == "running"  # the lock is free


async def test_claims_of_two_replicas_never_overlap(replicas: Replicas, store_clock: FakeClock) -> None:
    a, b = await replicas(2)
    ids = [(await a.record_webhook(make_payload(f"g{i}", [make_alert("x")]))).incident_id for i in range(20)]
    claimed: list[list[int]] = []
    for _ in range(10):
        claimed.extend(await asyncio.gather(a.claim_pending(3), b.claim_pending(3)))
    flat = [i for batch in claimed for i in batch]
    assert sorted(flat) == ids  # every incident claimed, none twice
    # A live claim of another replica is not taken; once it expires (the replica died), it is.
    assert await b.claim_pending(100) == []
    store_clock.advance(901)
    assert sorted(await b.claim_pending(100)) == ids


async def test_a_named_lock_goes_to_exactly_one_replica(replicas: Replicas, store_clock: FakeClock) -> None:
    stores = await replicas(3)
    got = await asyncio.gather(
        *(stores[i % 3].try_lock("schedule:daily:1", f"owner-{i}", 60) for i in range(12))
    )
    assert sum(got) == 1
    winner = f"owner-{got.index(True)}"
    assert await stores[1].try_lock("schedule:daily:1", winner, 60)  # the holder renews
    store_clock.advance(61)
    assert await stores[2].try_lock("schedule:daily:1", "owner-late", 60)  # expired: free


async def test_migrations_run_once_under_the_advisory_lock(postgres_db: PostgresDatabase) -> None:
    settings = postgres_settings(postgres_db)
    stores = await asyncio.gather(*(PostgresStore.open(settings) for _ in range(4)))
    try:
        assert {s.schema_version for s in stores} == {len(PG_MIGRATIONS)}
        conn = await _raw(postgres_db)
        try:
            rows = await conn.fetch("SELECT version FROM schema_version ORDER BY version")
            assert [r["version"] for r in rows] == list(range(1, len(PG_MIGRATIONS) + 1))
            assert await migrate(conn) == (len(PG_MIGRATIONS), [])  # nothing left to apply
            await conn.execute("INSERT INTO schema_version VALUES (99, 'from the future', 0)")
        finally:
            await conn.close()
    finally:
        for store in stores:
            await store.close()
    with pytest.raises(SchemaTooNew, match="newer than this pitcrew knows"):
        await PostgresStore.open(settings)


async def test_the_rules_are_constraints_in_sql(replicas: Replicas, postgres_db: PostgresDatabase) -> None:
    (store,) = await replicas(1)
    incident = (await store.record_webhook(make_payload("g", [make_alert("x")]))).incident_id
    execution = await store.start_execution(incident, "u", ["Pod/monitoring/p"], "{}")
    conn = await _raw(postgres_db)
    try:
        with pytest.raises(asyncpg.UniqueViolationError, match="group_key"):
            await conn.execute(
                "INSERT INTO incidents (group_key, status, work_state, receiver, group_labels, common_labels,"
                " common_annotations, external_url, created_at, updated_at)"
                " VALUES ('g', 'firing', 'pending', 'r', '{}', '{}', '{}', '', 0, 0)"
            )
        with pytest.raises(asyncpg.UniqueViolationError, match="incident_id"):
            await conn.execute(
                "INSERT INTO executions (incident_id, actor, targets, plan_json, status, started_at)"
                " VALUES ($1, 'u', '[]', '{}', 'running', 0)",
                incident,
            )
        other = await conn.fetchval(
            "INSERT INTO executions (actor, targets, plan_json, status, started_at)"
            " VALUES ('u', '[]', '{}', 'running', 0) RETURNING id"
        )
        with pytest.raises(asyncpg.UniqueViolationError, match="execution_targets_active"):
            await conn.execute(
                "INSERT INTO execution_targets (execution_id, target, active)"
                " VALUES ($1, 'Pod/monitoring/p', TRUE)",
                other,
            )
        assert execution.id != other
    finally:
        await conn.close()


async def test_outbox_item_and_its_kv_records_are_one_transaction(
    replicas: Replicas, postgres_db: PostgresDatabase
) -> None:
    (store,) = await replicas(1)
    await store.enqueue_outbox("t", "chat.postMessage", "{}", kv={"run": "1", "state": "s"})
    conn = await _raw(postgres_db)
    try:  # the second record fails, as a full disk would
        await conn.execute(
            "CREATE FUNCTION fail_state() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.key = 'state' THEN RAISE EXCEPTION 'could not extend file: No space left on device';"
            " END IF; RETURN NEW; END $$;"
            " CREATE TRIGGER fail_state BEFORE UPDATE ON kv FOR EACH ROW EXECUTE FUNCTION fail_state();"
        )
    finally:
        await conn.close()
    with pytest.raises(asyncpg.RaiseError, match="No space left"):
        await store.enqueue_outbox("t", "chat.postMessage", "{}", kv={"run": "2", "state": "s2"})
    assert await store.outbox_backlog() == 1
    assert await store.get_kv("run") == "1"


async def test_a_renotification_keeps_first_seen(
    replicas: Replicas, postgres_db: PostgresDatabase, store_clock: FakeClock
) -> None:
    (store,) = await replicas(1)
    first = await store.record_webhook(make_payload("g1", [make_alert("a")]))
    store_clock.advance(60)
    await store.record_webhook(make_payload("g1", [make_alert("a", annotations={"summary": "more"})]))
    conn = await _raw(postgres_db)
    try:
        row = await conn.fetchrow(
            "SELECT first_seen, updated_at FROM alerts WHERE incident_id = $1", first.incident_id
        )
    finally:
        await conn.close()
    assert row is not None and row["updated_at"] - row["first_seen"] == 60


async def test_a_replica_restarting_finds_pending_work_once_old_claims_expire(
    replicas: Replicas, store_clock: FakeClock
) -> None:
    """Unlike one SQLite process, a new open cannot tell a restarted replica from a live peer: the
    old claims hold until they expire, then the incidents are claimed again."""
    first, second = await replicas(2)
    ids = [
        (await first.record_webhook(make_payload(f"g{i}", [make_alert("a")]))).incident_id for i in range(3)
    ]
    assert await first.claim_pending(10) == ids
    await first.save_diagnosis(ids[0], [], dry_run_diff=None, error=None)
    await first.close()
    assert await second.claim_pending(10) == []
    store_clock.advance(901)
    assert await second.claim_pending(10) == ids[1:]


async def test_a_wrong_password_is_a_clear_error_without_the_password(postgres_db: PostgresDatabase) -> None:
    settings = postgres_settings(postgres_db)
    bad = type(settings)(url=settings.url, password=Secret("not-the-password-xyz"))
    with pytest.raises(PostgresUnavailable) as info:
        await PostgresStore.open(bad)
    assert str(info.value).startswith(f"cannot connect to {postgres_db.url}: password authentication failed")
    assert "not-the-password-xyz" not in str(info.value)
    assert not info.value.temporary


async def test_two_replicas_never_send_the_same_outbox_item(
    replicas: Replicas, store_clock: FakeClock
) -> None:
    a, b = await replicas(2)
    ids = [await a.enqueue_outbox(f"incident:{i}", "chat.postMessage", "{}") for i in range(10)]
    behind = await a.enqueue_outbox("incident:0", "chat.update", "{}")  # second of its thread
    now = store_clock.now
    got_a, got_b = await asyncio.gather(a.due_outbox(now, 5), b.due_outbox(now, 5))
    assert sorted(i.id for i in got_a + got_b) == ids  # each first item once, none twice
    assert not {i.id for i in got_a} & {i.id for i in got_b}
    assert await b.due_outbox(now, 100) == [i for i in got_b]  # its own claims, not a's
    await a.mark_outbox_sent(ids[0], "{}")
    assert behind in [i.id for i in await a.due_outbox(now, 100)]  # the thread moves on, in order
    # a dies: its claims expire and b sends what a had not confirmed.
    store_clock.advance(61)
    left = {i.id for i in await b.due_outbox(store_clock.now, 100)}
    assert left == (set(ids) - {ids[0]}) | {behind}
