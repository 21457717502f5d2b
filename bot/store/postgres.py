"""PostgreSQL: the store for several replicas (`store.url`), every repository of interface.py over one
connection pool. The only module that imports `asyncpg`.

asyncpg rather than psycopg 3: asyncio-native (no thread hop per query), no libpq (its wheel needs no
system library, so the image and CI need only pip), a built-in pool, typed by asyncpg-stubs.

The same rules as the SQLite backend, made exact across replicas by the database, not by one process:
- one open incident per Alertmanager group: UNIQUE (group_key), taken with INSERT ... ON CONFLICT DO
  NOTHING; the loser of a race re-reads the row FOR UPDATE and applies its delivery as an update;
- every intake, decision and execution start is one transaction that locks what it reads (FOR UPDATE);
- one execution per incident, one running execution per target: UNIQUE (incident_id) and a partial
  unique index on active target locks; a unique violation becomes ExecutionConflict naming the winner;
- claims (`claim_pending`) are `SELECT ... FOR UPDATE SKIP LOCKED` with an owner and an expiry, so two
  replicas never claim the same incident; a claim of a dead replica is free once it expires;
- named locks (scheduled runs) are one row per name, taken with INSERT ... ON CONFLICT DO UPDATE ...
  WHERE (expired or ours): exactly one replica gets a given fire time.

Migrations are versioned like SQLite's (`PG_MIGRATIONS`, append only) and run at open inside a
session advisory lock, so replicas starting together migrate once and the others wait, then find the
schema current. Times are the store clock's epoch seconds (DOUBLE PRECISION), as on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import asyncpg
import asyncpg.pool

from bot.model import Alert, Finding, Incident, IncidentStatus, WorkState, findings_dumps, findings_loads
from bot.store.records import (
    DEFAULT_CLAIM_TTL_SECONDS,
    WORK_DONE,
    AuditEntry,
    Backup,
    BackupKind,
    Decision,
    DecisionKind,
    Execution,
    ExecutionConflict,
    ExecutionOutcome,
    IntakeResult,
    NotFound,
    OutboxItem,
    SchemaTooNew,
    StoreClosed,
    StoreError,
    backup_number,
    group_status,
    require_choice,
)

if TYPE_CHECKING:
    from bot.alertmanager import WebhookPayload

CONNECT_TIMEOUT_SECONDS = 10.0
MIGRATION_LOCK_TIMEOUT_SECONDS = 120.0
# pg_advisory_lock key of pitcrew's migrations (any fixed 64-bit number; "pitcrew" in ASCII).
MIGRATION_LOCK_KEY = 0x70697463726577
# A pooled connection (what every repository method runs its statements on).
if TYPE_CHECKING:
    Conn = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
else:  # not subscriptable at run time
    Conn = asyncpg.pool.PoolConnectionProxy
# A transaction that lost a serialization or deadlock race is retried this many times in all.
_ATTEMPTS = 5


# ---------------------------------------------------------------------------------------------
# Connecting (also `pitcrew check-config --connect`)
# ---------------------------------------------------------------------------------------------


class PostgresSettings(Protocol):
    """The `store` config section as this backend reads it (bot.config owns the real class)."""

    @property
    def url(self) -> str | None: ...
    @property
    def password(self) -> object | None: ...  # a bot.config.Secret
    @property
    def pool_min_size(self) -> int: ...
    @property
    def pool_max_size(self) -> int: ...


class PostgresUnavailable(StoreError):
    """Cannot connect (or the server went away). `temporary`: a retry may help (refused, timeout).
    The message names the URL and the server's reason, never the password."""

    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary


@dataclass(frozen=True)
class ServerInfo:
    version: str
    database: str
    user: str


def _password(settings: PostgresSettings) -> str | None:
    reveal = getattr(settings.password, "reveal", None)
    return str(reveal()) if callable(reveal) else None


def _url(settings: PostgresSettings) -> str:
    if settings.url is None:
        raise ValueError("store.url is not set (the store is SQLite)")
    return settings.url


def describe_error(url: str, exc: BaseException) -> PostgresUnavailable:
    """One line a person can act on, and whether retrying helps."""
    if isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        return PostgresUnavailable(
            f"cannot connect to {url}: {exc} (check store.password_env)", temporary=False
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return PostgresUnavailable(f"cannot connect to {url}: {exc}", temporary=False)
    if isinstance(exc, TimeoutError):
        return PostgresUnavailable(
            f"cannot connect to {url}: no answer within {CONNECT_TIMEOUT_SECONDS:.0f} s", temporary=True
        )
    if isinstance(exc, OSError):
        return PostgresUnavailable(f"cannot connect to {url}: {exc.strerror or exc}", temporary=True)
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        return PostgresUnavailable(f"cannot connect to {url}: {exc}", temporary=True)
    return PostgresUnavailable(f"cannot connect to {url}: {type(exc).__name__}: {exc}", temporary=True)


async def connect(settings: PostgresSettings) -> asyncpg.Connection:
    url = _url(settings)
    try:
        return await asyncpg.connect(url, password=_password(settings), timeout=CONNECT_TIMEOUT_SECONDS)
    except (Exception, TimeoutError) as exc:
        raise describe_error(url, exc) from None


async def server_info(settings: PostgresSettings) -> ServerInfo:
    """Connect, ask who and where we are, disconnect (`pitcrew check-config --connect`)."""
    conn = await connect(settings)
    try:
        row = await conn.fetchrow(
            "SELECT current_setting('server_version'), current_database(), current_user"
        )
        assert row is not None
        return ServerInfo(version=str(row[0]), database=str(row[1]), user=str(row[2]))
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PgMigration:
    version: int
    description: str
    sql: str  # one script (PostgreSQL runs several statements in one simple query)


_PG_SCHEMA_V1 = """
CREATE TABLE incidents (
    id                 BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    group_key          TEXT    NOT NULL UNIQUE,
    status             TEXT    NOT NULL CHECK (status IN ('firing', 'resolved')),
    work_state         TEXT    NOT NULL,
    receiver           TEXT    NOT NULL,
    group_labels       TEXT    NOT NULL,
    common_labels      TEXT    NOT NULL,
    common_annotations TEXT    NOT NULL,
    external_url       TEXT    NOT NULL,
    truncated_alerts   INTEGER NOT NULL DEFAULT 0,
    created_at         DOUBLE PRECISION NOT NULL,
    updated_at         DOUBLE PRECISION NOT NULL,
    resolved_at        DOUBLE PRECISION,
    findings           TEXT    NOT NULL DEFAULT '[]',
    diagnosis_error    TEXT,
    dry_run_diff       TEXT,
    pending_gen        INTEGER NOT NULL DEFAULT 1,
    claimed_by         TEXT,
    claimed_until      DOUBLE PRECISION,
    claimed_gen        INTEGER
);
CREATE INDEX incidents_work_state ON incidents (work_state, id);
CREATE INDEX incidents_updated_at ON incidents (updated_at);

CREATE TABLE alerts (
    id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    incident_id   BIGINT  NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    fingerprint   TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('firing', 'resolved')),
    labels        TEXT    NOT NULL,
    annotations   TEXT    NOT NULL,
    starts_at     TEXT    NOT NULL,
    ends_at       TEXT,
    generator_url TEXT    NOT NULL,
    first_seen    DOUBLE PRECISION NOT NULL,
    updated_at    DOUBLE PRECISION NOT NULL,
    UNIQUE (incident_id, fingerprint)
);

CREATE TABLE decisions (
    id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    incident_id BIGINT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    user_id     TEXT   NOT NULL,
    user_name   TEXT   NOT NULL,
    decision    TEXT   NOT NULL CHECK (decision IN ('approve', 'reject')),
    reason      TEXT,
    at          DOUBLE PRECISION NOT NULL
);
CREATE INDEX decisions_incident ON decisions (incident_id, id);

CREATE TABLE executions (
    id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    -- UNIQUE: one execution per incident, whatever the number of approvals on whatever replica.
    incident_id BIGINT UNIQUE REFERENCES incidents (id),
    actor       TEXT   NOT NULL,
    targets     TEXT   NOT NULL,
    plan_json   TEXT   NOT NULL,
    status      TEXT   NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'rolled-back')),
    detail      TEXT   NOT NULL DEFAULT '',
    started_at  DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION
);

CREATE TABLE execution_targets (
    execution_id BIGINT  NOT NULL REFERENCES executions (id),
    target       TEXT    NOT NULL,
    active       BOOLEAN NOT NULL,
    PRIMARY KEY (execution_id, target)
);
CREATE UNIQUE INDEX execution_targets_active ON execution_targets (target) WHERE active;

CREATE TABLE backups (
    id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    execution_id BIGINT NOT NULL REFERENCES executions (id),
    target       TEXT   NOT NULL,
    kind         TEXT   NOT NULL CHECK (kind IN ('object', 'host')),
    content      TEXT   NOT NULL,
    created_at   DOUBLE PRECISION NOT NULL
);
CREATE INDEX backups_execution ON backups (execution_id, id);

CREATE TABLE audit (
    id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    at           DOUBLE PRECISION NOT NULL,
    actor        TEXT   NOT NULL,
    action       TEXT   NOT NULL,
    incident_id  BIGINT,
    execution_id BIGINT,
    detail       TEXT   NOT NULL
);
CREATE INDEX audit_incident ON audit (incident_id, id);

CREATE TABLE outbox (
    id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    thread_key    TEXT    NOT NULL,
    method        TEXT    NOT NULL,
    payload_json  TEXT    NOT NULL,
    state         TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    not_before    DOUBLE PRECISION NOT NULL,
    last_error    TEXT,
    response_json TEXT,
    created_at    DOUBLE PRECISION NOT NULL,
    done_at       DOUBLE PRECISION
);
CREATE INDEX outbox_pending ON outbox (thread_key, id) WHERE state = 'pending';

CREATE TABLE slack_messages (
    incident_id BIGINT PRIMARY KEY REFERENCES incidents (id) ON DELETE CASCADE,
    channel     TEXT NOT NULL,
    ts          TEXT NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL
);

CREATE TABLE locks (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE kv (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
"""

# The SQLite schema's versions 1 and 2 (incidents.resolved_at) in one: PostgreSQL starts at both.
PG_MIGRATIONS: tuple[PgMigration, ...] = (
    PgMigration(1, "initial schema", _PG_SCHEMA_V1),
    PgMigration(2, "incidents.resolved_at (in the initial PostgreSQL schema)", "SELECT 1"),
    # Several replicas send the outbox: an item is claimed by the replica sending it (see due_outbox).
    PgMigration(
        3,
        "outbox claims",
        "ALTER TABLE outbox ADD COLUMN claimed_by TEXT, ADD COLUMN claimed_until DOUBLE PRECISION",
    ),
)
# How long a replica's claim on an outbox item lasts: a replica that died mid-send leaves it for this
# long, then another sends it (at least once: a send whose confirmation was lost is sent again).
OUTBOX_CLAIM_SECONDS = 60.0


def _check_migrations(migrations: Sequence[PgMigration]) -> None:
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise AssertionError(f"migration #{expected} has version {migration.version}; must be 1..n")


_check_migrations(PG_MIGRATIONS)


async def migrate(
    conn: asyncpg.Connection,
    migrations: Sequence[PgMigration] = PG_MIGRATIONS,
    *,
    clock: Callable[[], float] = time.time,
) -> tuple[int, list[int]]:
    """Apply the missing migrations under the migration advisory lock; returns (schema version,
    versions applied now). Each migration and its version row are one transaction."""
    known = len(migrations)
    applied: list[int] = []
    await asyncio.wait_for(
        conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY),
        timeout=MIGRATION_LOCK_TIMEOUT_SECONDS,
    )
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version"
            " (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
        )
        current = int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
        if current > known:
            raise SchemaTooNew(_too_new(current, known))
        for migration in migrations:
            if migration.version <= current:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_version (version, description, applied_at) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.description,
                    float(clock()),
                )
            applied.append(migration.version)
            current = migration.version
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return current, applied


def _too_new(current: int, known: int) -> str:
    return f"store schema version {current} is newer than this pitcrew knows ({known}); upgrade pitcrew"


# ---------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------


def _json(mapping: Mapping[str, str]) -> str:
    # Canonical form, so "did it change?" is a string comparison (the same form as SQLite's).
    return json.dumps(dict(mapping), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_INCIDENT_COLUMNS = (
    "id, group_key, status, work_state, receiver, group_labels, common_labels, common_annotations, "
    "external_url, created_at, updated_at, findings, diagnosis_error, dry_run_diff, resolved_at"
)
_ALERT_COLUMNS = "incident_id, fingerprint, status, labels, annotations, starts_at, ends_at, generator_url"
_EXECUTION_COLUMNS = "id, incident_id, actor, targets, plan_json, status, detail, started_at, finished_at"
_OUTBOX_COLUMNS = "id, thread_key, method, payload_json, attempts, not_before, created_at, last_error"
_AUDIT_COLUMNS = "id, at, actor, action, incident_id, execution_id, detail"


def _alert(row: asyncpg.Record) -> Alert:
    return Alert(
        fingerprint=row["fingerprint"],
        status=row["status"],
        labels=json.loads(row["labels"]),
        annotations=json.loads(row["annotations"]),
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        generator_url=row["generator_url"],
    )


def _incident(row: asyncpg.Record, alerts: tuple[Alert, ...]) -> Incident:
    return Incident(
        id=row["id"],
        group_key=row["group_key"],
        status=IncidentStatus(row["status"]),
        work_state=WorkState(row["work_state"]),
        receiver=row["receiver"],
        group_labels=json.loads(row["group_labels"]),
        common_labels=json.loads(row["common_labels"]),
        common_annotations=json.loads(row["common_annotations"]),
        external_url=row["external_url"],
        alerts=alerts,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        findings=findings_loads(row["findings"]),
        diagnosis_error=row["diagnosis_error"],
        dry_run_diff=row["dry_run_diff"],
        resolved_at=row["resolved_at"],
    )


def _execution(row: asyncpg.Record) -> Execution:
    return Execution(
        id=row["id"],
        incident_id=row["incident_id"],
        actor=row["actor"],
        targets=tuple(json.loads(row["targets"])),
        plan_json=row["plan_json"],
        status=row["status"],
        detail=row["detail"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def _outbox(row: asyncpg.Record) -> OutboxItem:
    return OutboxItem(
        id=row["id"],
        thread_key=row["thread_key"],
        method=row["method"],
        payload_json=row["payload_json"],
        attempts=row["attempts"],
        not_before=row["not_before"],
        created_at=row["created_at"],
        last_error=row["last_error"],
    )


def _audit(row: asyncpg.Record) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        at=row["at"],
        actor=row["actor"],
        action=row["action"],
        incident_id=row["incident_id"],
        execution_id=row["execution_id"],
        detail=row["detail"],
    )


def _backup(row: asyncpg.Record) -> Backup:
    return Backup(
        id=f"b-{row['id']}",
        execution_id=row["execution_id"],
        target=row["target"],
        kind=row["kind"],
        content=row["content"],
        created_at=row["created_at"],
    )


# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------


class PostgresStore:
    """Every repository (`bot.store.interface.StoreBackend`) on one PostgreSQL database. Open with
    `PostgresStore.open(settings)`; several replicas open the same database."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        url: str,
        clock: Callable[[], float],
        claim_ttl_seconds: float,
        schema_version: int,
    ) -> None:
        self.path = url  # what logs and checks print as "where the store is" (no password in it)
        self.schema_version = schema_version
        self._pool = pool
        self._clock = clock
        self._claim_ttl = claim_ttl_seconds
        # Identifies this replica's open store in claims and locks.
        self.token = uuid.uuid4().hex
        self._closed = False

    @classmethod
    async def open(
        cls,
        settings: PostgresSettings,
        *,
        clock: Callable[[], float] = time.time,
        claim_ttl_seconds: float = DEFAULT_CLAIM_TTL_SECONDS,
        migrations: Sequence[PgMigration] = PG_MIGRATIONS,
    ) -> PostgresStore:
        """Connect, migrate (under the advisory lock), and open the pool."""
        url = _url(settings)
        conn = await connect(settings)
        try:
            version, _ = await migrate(conn, migrations, clock=clock)
        finally:
            await conn.close()
        try:
            pool = await asyncpg.create_pool(
                url,
                password=_password(settings),
                min_size=settings.pool_min_size,
                max_size=settings.pool_max_size,
                timeout=CONNECT_TIMEOUT_SECONDS,
            )
        except (Exception, TimeoutError) as exc:
            raise describe_error(url, exc) from None
        assert pool is not None
        return cls(pool, url=url, clock=clock, claim_ttl_seconds=claim_ttl_seconds, schema_version=version)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._pool.close()

    @property
    def is_open(self) -> bool:
        return not self._closed

    async def ping(self) -> None:
        """A round trip (readiness)."""
        async with self._conn() as conn:
            await conn.fetchval("SELECT 1")

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[Conn]:
        if self._closed:
            raise StoreClosed("the store is closed")
        try:
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT_SECONDS) as conn:
                yield conn
        except (OSError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError, TimeoutError) as exc:
            raise describe_error(self.path, exc) from None

    async def _tx(self, fn: Callable[[Conn], Any]) -> Any:
        """Run `fn(conn)` in one transaction; retried (from the start) when it lost a serialization
        or deadlock race, which PostgreSQL resolves by aborting one side."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with self._conn() as conn, conn.transaction():
                    return await fn(conn)
            except (asyncpg.SerializationError, asyncpg.DeadlockDetectedError):
                if attempt == _ATTEMPTS:
                    raise
                await asyncio.sleep(0.01 * attempt)
        raise AssertionError("unreachable")

    # -- intake ---------------------------------------------------------------------------------

    async def record_webhooks(self, payloads: Sequence[WebhookPayload]) -> list[IntakeResult | Exception]:
        async def batch(conn: Conn) -> list[IntakeResult | Exception]:
            results: list[IntakeResult | Exception] = []
            for payload in payloads:
                try:
                    async with conn.transaction():  # a savepoint: this payload all-or-nothing
                        results.append(await self._record_webhook(conn, payload))
                except asyncpg.PostgresError as exc:
                    if isinstance(exc, asyncpg.SerializationError | asyncpg.DeadlockDetectedError):
                        raise  # the whole batch is retried
                    results.append(StoreError(f"group {payload.group_key}: {exc}"))
                except Exception as exc:
                    results.append(exc)
            return results

        result: list[IntakeResult | Exception] = await self._tx(batch)
        return result

    async def record_webhook(self, payload: WebhookPayload) -> IntakeResult:
        result: IntakeResult = await self._tx(lambda conn: self._record_webhook(conn, payload))
        return result

    async def _locked_incident(self, conn: Conn, group_key: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT id, status, work_state, receiver, group_labels, common_labels, common_annotations,"
            " external_url, truncated_alerts FROM incidents WHERE group_key = $1 FOR UPDATE",
            group_key,
        )

    @staticmethod
    async def _is_new_occurrence(conn: Conn, row: asyncpg.Record, incoming: Iterable[Alert]) -> bool:
        if row["status"] != IncidentStatus.RESOLVED.value or row["work_state"] not in WORK_DONE:
            return False
        firing = [a for a in incoming if a.status == "firing"]
        if not firing:
            return False
        seen = {
            (r["fingerprint"], r["starts_at"])
            for r in await conn.fetch(
                "SELECT fingerprint, starts_at FROM alerts WHERE incident_id = $1", row["id"]
            )
        }
        return any((a.fingerprint, a.starts_at) not in seen for a in firing)

    async def _record_webhook(self, conn: Conn, payload: WebhookPayload) -> IntakeResult:
        now = float(self._clock())
        incident_fields = (
            payload.receiver,
            _json(payload.group_labels),
            _json(payload.common_labels),
            _json(payload.common_annotations),
            payload.external_url,
            payload.truncated_alerts,
        )
        incoming: dict[str, Alert] = {}
        for alert in payload.alerts:
            incoming[alert.fingerprint] = alert

        row = await self._locked_incident(conn, payload.group_key)
        if row is not None and await self._is_new_occurrence(conn, row, incoming.values()):
            # A re-fire after the incident's work ended: a new incident; the old keeps a retired key.
            await conn.execute(
                "UPDATE incidents SET group_key = $1 WHERE id = $2",
                f"{payload.group_key} [closed incident {row['id']}]",
                row["id"],
            )
            row = None
        created = False
        if row is None:
            status = group_status(payload, (a.status for a in incoming.values()))
            incident_id = await conn.fetchval(
                "INSERT INTO incidents (group_key, status, work_state, receiver, group_labels,"
                " common_labels, common_annotations, external_url, truncated_alerts, created_at,"
                " updated_at, resolved_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11)"
                " ON CONFLICT (group_key) DO NOTHING RETURNING id",
                payload.group_key,
                status.value,
                WorkState.PENDING.value,
                *incident_fields,
                now,
                now if status is IncidentStatus.RESOLVED else None,
            )
            if incident_id is None:
                # Another replica created it since our read: wait for its commit (the row lock) and
                # apply this delivery to its incident. A fresh statement sees the committed row.
                row = await self._locked_incident(conn, payload.group_key)
                if row is None:
                    raise asyncpg.SerializationError("incident vanished between insert and read")
            else:
                created = True
        if created:
            stored: dict[str, asyncpg.Record] = {}
        else:
            assert row is not None
            incident_id = row["id"]
            stored = {
                r["fingerprint"]: r
                for r in await conn.fetch(
                    "SELECT id, fingerprint, status, labels, annotations, starts_at, ends_at, generator_url"
                    " FROM alerts WHERE incident_id = $1",
                    incident_id,
                )
            }

        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        statuses = {fp: r["status"] for fp, r in stored.items()}
        gained_firing = False
        for fingerprint, alert in incoming.items():
            fields = (
                alert.status,
                _json(alert.labels),
                _json(alert.annotations),
                alert.starts_at,
                alert.ends_at,
                alert.generator_url,
            )
            old = stored.get(fingerprint)
            if old is None:
                inserts.append((incident_id, fingerprint, *fields, now, now))
                gained_firing |= alert.status == "firing"
                statuses[fingerprint] = alert.status
                continue
            if (
                old["status"] == "resolved"
                and alert.status == "firing"
                and old["starts_at"] == alert.starts_at
            ):
                continue  # a delayed firing notice for a firing period already seen resolved
            old_fields = (
                old["status"],
                old["labels"],
                old["annotations"],
                old["starts_at"],
                old["ends_at"],
                old["generator_url"],
            )
            if fields != old_fields:
                updates.append((*fields, now, old["id"]))
                gained_firing |= old["status"] == "resolved" and alert.status == "firing"
                statuses[fingerprint] = alert.status
        resolved_elsewhere: list[tuple[float, int]] = []
        if payload.status == "resolved":
            for fingerprint, old in stored.items():
                if fingerprint not in incoming and statuses[fingerprint] == "firing":
                    resolved_elsewhere.append((now, old["id"]))
                    statuses[fingerprint] = "resolved"
        if inserts:
            await conn.executemany(
                f"INSERT INTO alerts ({_ALERT_COLUMNS}, first_seen, updated_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                inserts,
            )
        if updates:
            await conn.executemany(
                "UPDATE alerts SET status = $1, labels = $2, annotations = $3, starts_at = $4, ends_at = $5,"
                " generator_url = $6, updated_at = $7 WHERE id = $8",
                updates,
            )
        if resolved_elsewhere:
            await conn.executemany(
                "UPDATE alerts SET status = 'resolved', updated_at = $1 WHERE id = $2", resolved_elsewhere
            )
        if created:
            return IntakeResult(incident_id, created=True, changed=True, pending=True)

        assert row is not None
        status = group_status(payload, statuses.values())
        old_incident_fields = (
            row["receiver"],
            row["group_labels"],
            row["common_labels"],
            row["common_annotations"],
            row["external_url"],
            row["truncated_alerts"],
        )
        changed = (
            bool(inserts or updates or resolved_elsewhere)
            or status.value != row["status"]
            or incident_fields != old_incident_fields
        )
        if not changed:
            return IntakeResult(incident_id, created=False, changed=False)
        refired = status is IncidentStatus.FIRING and row["status"] == IncidentStatus.RESOLVED.value
        requeue = (gained_firing or refired) and row["work_state"] != WorkState.EXECUTING.value
        await conn.execute(
            "UPDATE incidents SET status = $1, receiver = $2, group_labels = $3, common_labels = $4,"
            " common_annotations = $5, external_url = $6, truncated_alerts = $7, updated_at = $8,"
            " resolved_at = CASE WHEN $1 = 'resolved' THEN COALESCE(resolved_at, $8) END,"
            " work_state = CASE WHEN $9 THEN 'pending' ELSE work_state END,"
            " pending_gen = pending_gen + (CASE WHEN $9 THEN 1 ELSE 0 END) WHERE id = $10",
            status.value,
            *incident_fields,
            now,
            requeue,
            incident_id,
        )
        return IntakeResult(incident_id, created=False, changed=True, pending=requeue)

    # -- incidents ------------------------------------------------------------------------------

    async def get_incident(self, incident_id: int) -> Incident | None:
        return await self._get_incident("id", incident_id)

    async def get_incident_by_group_key(self, group_key: str) -> Incident | None:
        return await self._get_incident("group_key", group_key)

    async def _get_incident(self, column: Literal["id", "group_key"], value: object) -> Incident | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE {column} = $1", value)
            if row is None:
                return None
            return (await self._with_alerts(conn, [row]))[0]

    @staticmethod
    async def _with_alerts(conn: Conn, rows: Sequence[asyncpg.Record]) -> list[Incident]:
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        by_incident: dict[int, list[Alert]] = {i: [] for i in ids}
        for alert_row in await conn.fetch(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE incident_id = ANY($1::bigint[]) ORDER BY id", ids
        ):
            by_incident[alert_row["incident_id"]].append(_alert(alert_row))
        return [_incident(r, tuple(by_incident[r["id"]])) for r in rows]

    async def list_incidents(
        self,
        *,
        status: IncidentStatus | None = None,
        work_states: Collection[WorkState] | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[Incident]:
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            params.append(IncidentStatus(status).value)
            where.append(f"status = ${len(params)}")
        if work_states is not None:
            states = [WorkState(s).value for s in work_states]
            if not states:
                return []
            params.append(states)
            where.append(f"work_state = ANY(${len(params)}::text[])")
        if since is not None:
            params.append(float(since))
            where.append(f"updated_at >= ${len(params)}")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        params.append(limit)
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT {_INCIDENT_COLUMNS} FROM incidents{clause} ORDER BY id DESC LIMIT ${len(params)}",
                *params,
            )
            return await self._with_alerts(conn, rows)

    async def count_incidents(self) -> dict[tuple[IncidentStatus, WorkState], int]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT status, work_state, COUNT(*) FROM incidents GROUP BY status, work_state"
            )
        return {(IncidentStatus(r[0]), WorkState(r[1])): int(r[2]) for r in rows}

    async def claim_pending(self, limit: int) -> list[int]:
        """Claim up to `limit` PENDING incidents (oldest first) for this replica's workers.

        Across replicas: a claim by another replica is live until its expiry (claim TTL); rows another
        replica is claiming at this moment are skipped (SKIP LOCKED), never waited on or taken twice.
        A claim left by this replica's previous run (another open, another token) is free at once."""
        now = float(self._clock())

        async def claim(conn: Conn) -> list[int]:
            rows = await conn.fetch(
                "SELECT id FROM incidents WHERE work_state = 'pending'"
                " AND (claimed_by IS NULL OR claimed_until <= $1) ORDER BY id LIMIT $2"
                " FOR UPDATE SKIP LOCKED",
                now,
                limit,
            )
            ids = [int(r["id"]) for r in rows]
            if ids:
                await conn.execute(
                    "UPDATE incidents SET claimed_by = $1, claimed_until = $2, claimed_gen = pending_gen"
                    " WHERE id = ANY($3::bigint[])",
                    self.token,
                    now + self._claim_ttl,
                    ids,
                )
            return ids

        result: list[int] = await self._tx(claim)
        return result

    async def save_diagnosis(
        self,
        incident_id: int,
        findings: Sequence[Finding],
        *,
        dry_run_diff: str | None,
        error: str | None,
    ) -> None:
        text = findings_dumps(list(findings))
        async with self._conn() as conn:
            status = await conn.execute(
                "UPDATE incidents SET findings = $1, dry_run_diff = $2, diagnosis_error = $3,"
                " updated_at = $4,"
                " work_state = CASE WHEN work_state = 'pending'"
                "   AND (claimed_gen IS NULL OR claimed_gen >= pending_gen) THEN 'diagnosed'"
                "   ELSE work_state END,"
                " claimed_by = NULL, claimed_until = NULL, claimed_gen = NULL WHERE id = $5",
                text,
                dry_run_diff,
                error,
                float(self._clock()),
                incident_id,
            )
        if status == "UPDATE 0":
            raise NotFound(f"incident {incident_id} does not exist")

    async def set_work_state(
        self,
        incident_id: int,
        new: WorkState,
        *,
        expected: Collection[WorkState] | None = None,
    ) -> bool:
        new = WorkState(new)
        params: list[Any] = [new.value, float(self._clock()), int(new is WorkState.PENDING), incident_id]
        condition = ""
        if expected is not None:
            values = [WorkState(s).value for s in expected]
            if not values:
                return False
            params.append(values)
            condition = " AND work_state = ANY($5::text[])"
        async with self._conn() as conn:
            status = await conn.execute(
                "UPDATE incidents SET work_state = $1, updated_at = $2, pending_gen = pending_gen + $3,"
                f" claimed_by = NULL, claimed_until = NULL, claimed_gen = NULL WHERE id = $4{condition}",
                *params,
            )
        return bool(status == "UPDATE 1")

    # -- approvals and audit --------------------------------------------------------------------

    async def record_decision(
        self,
        incident_id: int,
        user_id: str,
        user_name: str,
        decision: DecisionKind,
        reason: str | None,
    ) -> None:
        require_choice(decision, DecisionKind, "decision")

        async def insert(conn: Conn) -> None:
            await self._require_incident(conn, incident_id)
            await conn.execute(
                "INSERT INTO decisions (incident_id, user_id, user_name, decision, reason, at)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                incident_id,
                user_id,
                user_name,
                decision,
                reason,
                float(self._clock()),
            )

        await self._tx(insert)

    async def list_decisions(self, incident_id: int) -> list[Decision]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT incident_id, user_id, user_name, decision, reason, at FROM decisions"
                " WHERE incident_id = $1 ORDER BY id",
                incident_id,
            )
        return [Decision(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    @staticmethod
    async def _require_incident(conn: Conn, incident_id: int) -> None:
        if await conn.fetchval("SELECT 1 FROM incidents WHERE id = $1", incident_id) is None:
            raise NotFound(f"incident {incident_id} does not exist")

    async def audit(
        self,
        actor: str,
        action: str,
        *,
        incident_id: int | None = None,
        execution_id: int | None = None,
        detail: str = "",
    ) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO audit (at, actor, action, incident_id, execution_id, detail)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                float(self._clock()),
                actor,
                action,
                incident_id,
                execution_id,
                detail,
            )

    async def list_audit(self, *, incident_id: int | None = None, limit: int = 200) -> list[AuditEntry]:
        async with self._conn() as conn:
            if incident_id is None:
                rows = await conn.fetch(
                    f"SELECT {_AUDIT_COLUMNS} FROM audit ORDER BY id DESC LIMIT $1", limit
                )
            else:
                rows = await conn.fetch(
                    f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE incident_id = $1 ORDER BY id DESC LIMIT $2",
                    incident_id,
                    limit,
                )
        return [_audit(r) for r in reversed(rows)]

    # -- executions and backups -----------------------------------------------------------------

    async def start_execution(
        self,
        incident_id: int | None,
        actor: str,
        targets: Sequence[str],
        plan_json: str,
    ) -> Execution:
        unique_targets = tuple(dict.fromkeys(targets))
        now = float(self._clock())

        async def start(conn: Conn) -> Execution:
            if incident_id is not None:
                # Locks the incident row: concurrent approvals of one incident queue here, and each
                # after the first finds its execution.
                if (
                    await conn.fetchval("SELECT id FROM incidents WHERE id = $1 FOR UPDATE", incident_id)
                    is None
                ):
                    raise NotFound(f"incident {incident_id} does not exist")
                existing = await conn.fetchrow(
                    "SELECT id, status FROM executions WHERE incident_id = $1", incident_id
                )
                if existing is not None:
                    raise ExecutionConflict(
                        f"incident {incident_id} already has execution {existing['id']}"
                        f" ({existing['status']})",
                        execution_id=existing["id"],
                    )
            if unique_targets:
                held = await conn.fetchrow(
                    "SELECT target, execution_id FROM execution_targets WHERE active"
                    " AND target = ANY($1::text[]) ORDER BY target LIMIT 1",
                    list(unique_targets),
                )
                if held is not None:
                    raise ExecutionConflict(
                        f"{held['target']} is locked by running execution {held['execution_id']}",
                        execution_id=held["execution_id"],
                    )
            execution_id = await conn.fetchval(
                "INSERT INTO executions (incident_id, actor, targets, plan_json, status, detail, started_at)"
                " VALUES ($1, $2, $3, $4, 'running', '', $5) RETURNING id",
                incident_id,
                actor,
                json.dumps(list(unique_targets)),
                plan_json,
                now,
            )
            await conn.executemany(
                "INSERT INTO execution_targets (execution_id, target, active) VALUES ($1, $2, TRUE)",
                [(execution_id, t) for t in unique_targets],
            )
            return Execution(
                id=int(execution_id),
                incident_id=incident_id,
                actor=actor,
                targets=unique_targets,
                plan_json=plan_json,
                status="running",
                detail="",
                started_at=now,
                finished_at=None,
            )

        try:
            execution: Execution = await self._tx(start)
        except asyncpg.UniqueViolationError as exc:
            # Two executions on one target started at once, each before the other's commit: the
            # partial unique index lets one through. Name the winner.
            holder = await self._target_holder(unique_targets)
            raise ExecutionConflict(
                f"execution conflict: {exc.constraint_name or exc}", execution_id=holder
            ) from None
        return execution

    async def _target_holder(self, targets: Sequence[str]) -> int | None:
        async with self._conn() as conn:
            value = await conn.fetchval(
                "SELECT execution_id FROM execution_targets WHERE active AND target = ANY($1::text[])"
                " ORDER BY target LIMIT 1",
                list(targets),
            )
        return None if value is None else int(value)

    async def finish_execution(self, execution_id: int, outcome: ExecutionOutcome, detail: str) -> None:
        require_choice(outcome, ExecutionOutcome, "outcome")

        async def finish(conn: Conn) -> None:
            status = await conn.execute(
                "UPDATE executions SET status = $1, detail = $2, finished_at = $3 WHERE id = $4",
                outcome,
                detail,
                float(self._clock()),
                execution_id,
            )
            if status == "UPDATE 0":
                raise NotFound(f"execution {execution_id} does not exist")
            await conn.execute(
                "UPDATE execution_targets SET active = FALSE WHERE execution_id = $1", execution_id
            )

        await self._tx(finish)

    async def get_execution(self, execution_id: int) -> Execution | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE id = $1", execution_id
            )
        return None if row is None else _execution(row)

    async def list_executions(self, incident_id: int | None = None, limit: int = 50) -> list[Execution]:
        async with self._conn() as conn:
            if incident_id is None:
                rows = await conn.fetch(
                    f"SELECT {_EXECUTION_COLUMNS} FROM executions ORDER BY id DESC LIMIT $1", limit
                )
            else:
                rows = await conn.fetch(
                    f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE incident_id = $1"
                    " ORDER BY id DESC LIMIT $2",
                    incident_id,
                    limit,
                )
        return [_execution(r) for r in rows]

    async def save_backup(self, execution_id: int, target: str, kind: BackupKind, content: str) -> str:
        require_choice(kind, BackupKind, "kind")

        async def save(conn: Conn) -> int:
            if await conn.fetchval("SELECT 1 FROM executions WHERE id = $1", execution_id) is None:
                raise NotFound(f"execution {execution_id} does not exist")
            value = await conn.fetchval(
                "INSERT INTO backups (execution_id, target, kind, content, created_at)"
                " VALUES ($1, $2, $3, $4, $5) RETURNING id",
                execution_id,
                target,
                kind,
                content,
                float(self._clock()),
            )
            return int(value)

        number: int = await self._tx(save)
        return f"b-{number}"

    async def get_backup(self, backup_id: str) -> Backup | None:
        number = backup_number(backup_id)
        if number is None:
            return None
        async with self._conn() as conn:
            row = await conn.fetchrow(
                "SELECT id, execution_id, target, kind, content, created_at FROM backups WHERE id = $1",
                number,
            )
        return None if row is None else _backup(row)

    async def list_backups(self, execution_id: int) -> list[Backup]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT id, execution_id, target, kind, content, created_at FROM backups"
                " WHERE execution_id = $1 ORDER BY id",
                execution_id,
            )
        return [_backup(r) for r in rows]

    # -- outbox and Slack messages --------------------------------------------------------------

    async def enqueue_outbox(
        self, thread_key: str, method: str, payload_json: str, *, kv: Mapping[str, str] | None = None
    ) -> int:
        (item_id,) = await self.enqueue_outbox_many([(thread_key, method, payload_json)], kv=kv)
        return item_id

    async def enqueue_outbox_many(
        self, items: Sequence[tuple[str, str, str]], *, kv: Mapping[str, str] | None = None
    ) -> list[int]:
        now = float(self._clock())
        queued = list(items)
        records = dict(kv or {})

        async def enqueue(conn: Conn) -> list[int]:
            ids: list[int] = []
            for thread_key, method, payload_json in queued:
                value = await conn.fetchval(
                    "INSERT INTO outbox (thread_key, method, payload_json, not_before, created_at)"
                    " VALUES ($1, $2, $3, $4, $4) RETURNING id",
                    thread_key,
                    method,
                    payload_json,
                    now,
                )
                ids.append(int(value))
            for key, text in records.items():
                await self._put_kv(conn, key, text, now)
            return ids

        item_ids: list[int] = await self._tx(enqueue)
        return item_ids

    async def due_outbox(self, now: float, limit: int) -> list[OutboxItem]:
        """As on SQLite (per thread only its oldest undelivered item, if due), and claimed for this
        replica: an item another replica is sending (claim live, or its row locked right now) is not
        returned, and neither is anything behind it in its thread, so no message is sent twice and a
        thread's messages stay in order across replicas."""
        at = float(now)

        async def claim(conn: Conn) -> list[OutboxItem]:
            rows = await conn.fetch(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox AS o WHERE state = 'pending' AND not_before <= $1"
                " AND (claimed_by IS NULL OR claimed_by = $3 OR claimed_until <= $1)"
                " AND id = (SELECT MIN(id) FROM outbox AS p WHERE p.thread_key = o.thread_key"
                " AND p.state = 'pending') ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
                at,
                limit,
                self.token,
            )
            if rows:
                await conn.execute(
                    "UPDATE outbox SET claimed_by = $1, claimed_until = $2 WHERE id = ANY($3::bigint[])",
                    self.token,
                    at + OUTBOX_CLAIM_SECONDS,
                    [r["id"] for r in rows],
                )
            return [_outbox(r) for r in rows]

        items: list[OutboxItem] = await self._tx(claim)
        return items

    async def mark_outbox_sent(self, item_id: int, response_json: str) -> None:
        await self._update_outbox(
            item_id,
            "UPDATE outbox SET state = 'sent', attempts = attempts + 1, response_json = $1, done_at = $2"
            " WHERE id = $3",
            response_json,
            float(self._clock()),
        )

    async def mark_outbox_retry(self, item_id: int, not_before: float, error: str) -> None:
        await self._update_outbox(
            item_id,
            "UPDATE outbox SET attempts = attempts + 1, not_before = $1, last_error = $2, claimed_by = NULL"
            " WHERE id = $3",
            float(not_before),
            error,
        )

    async def mark_outbox_failed(self, item_id: int, error: str) -> None:
        await self._update_outbox(
            item_id,
            "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = $1, done_at = $2"
            " WHERE id = $3",
            error,
            float(self._clock()),
        )

    async def _update_outbox(self, item_id: int, sql: str, *params: Any) -> None:
        async with self._conn() as conn:
            status = await conn.execute(sql, *params, item_id)
        if status == "UPDATE 0":
            raise NotFound(f"outbox item {item_id} does not exist")

    async def prune_outbox(self, done_before: float) -> int:
        async with self._conn() as conn:
            status = await conn.execute(
                "DELETE FROM outbox WHERE state IN ('sent', 'failed') AND done_at < $1", float(done_before)
            )
        return int(status.split()[-1])

    async def outbox_backlog(self) -> int:
        async with self._conn() as conn:
            return int(await conn.fetchval("SELECT COUNT(*) FROM outbox WHERE state = 'pending'"))

    async def set_slack_message(self, incident_id: int, channel: str, ts: str) -> None:
        async def upsert(conn: Conn) -> None:
            await self._require_incident(conn, incident_id)
            await conn.execute(
                "INSERT INTO slack_messages (incident_id, channel, ts, updated_at) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (incident_id) DO UPDATE SET channel = excluded.channel, ts = excluded.ts,"
                " updated_at = excluded.updated_at",
                incident_id,
                channel,
                ts,
                float(self._clock()),
            )

        await self._tx(upsert)

    async def get_slack_message(self, incident_id: int) -> tuple[str, str] | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                "SELECT channel, ts FROM slack_messages WHERE incident_id = $1", incident_id
            )
        return None if row is None else (row["channel"], row["ts"])

    # -- locks and small state ------------------------------------------------------------------

    async def try_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        now = float(self._clock())
        async with self._conn() as conn:
            # One statement: taken when absent, expired, or already ours; the row lock of the upsert
            # makes concurrent attempts on one name take turns, and only one of them gets it.
            got = await conn.fetchval(
                "INSERT INTO locks (name, owner, expires_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at"
                " WHERE locks.owner = excluded.owner OR locks.expires_at <= $4 RETURNING owner",
                name,
                owner,
                now + float(ttl_seconds),
                now,
            )
        return got is not None

    async def release_lock(self, name: str, owner: str) -> None:
        async with self._conn() as conn:
            await conn.execute("DELETE FROM locks WHERE name = $1 AND owner = $2", name, owner)

    async def get_kv(self, key: str) -> str | None:
        async with self._conn() as conn:
            value = await conn.fetchval("SELECT value FROM kv WHERE key = $1", key)
        return None if value is None else str(value)

    async def set_kv(self, key: str, value: str) -> None:
        async with self._conn() as conn:
            await self._put_kv(conn, key, value, float(self._clock()))

    @staticmethod
    async def _put_kv(conn: Conn, key: str, value: str, now: float) -> None:
        await conn.execute(
            "INSERT INTO kv (key, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO UPDATE"
            " SET value = excluded.value, updated_at = excluded.updated_at",
            key,
            value,
            now,
        )
