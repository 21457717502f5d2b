"""SQLite: the connection, its thread, its transactions, and the versioned schema (migrations).

One connection, owned by one dedicated thread: every call is shipped to that thread, so the event
loop never blocks on SQLite and writes happen in the order they were submitted. The database runs in
WAL mode (readers in other processes, e.g. `pitcrew history`, do not block the writer) with
`synchronous` NORMAL (default; a power loss may lose the last commits, a process crash loses nothing)
or FULL (fsync on every commit). A new database file is created owner-only (0600).

The schema is versioned: `MIGRATIONS` is an ordered list applied at open, each in its own
transaction. To change the schema, append a `Migration` with the next version number; never edit one
that has shipped. The tables are used by the repositories beside this module, one per aggregate.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Literal, ParamSpec, Self, TypeVar, cast

from bot.store.records import (
    DEFAULT_CLAIM_TTL_SECONDS,
    NotFound,
    SchemaTooNew,
    StoreClosed,
    StoreError,
    Synchronous,
    require_choice,
)

P = ParamSpec("P")
T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    # SQL statements (run one by one inside the migration's transaction) or a function of the
    # connection for data migrations; either way the version row is written in the same transaction.
    apply: str | Callable[[sqlite3.Connection], None]


_SCHEMA_V1 = """
CREATE TABLE incidents (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    group_key          TEXT    NOT NULL UNIQUE,
    status             TEXT    NOT NULL CHECK (status IN ('firing', 'resolved')),
    work_state         TEXT    NOT NULL,
    receiver           TEXT    NOT NULL,
    group_labels       TEXT    NOT NULL,
    common_labels      TEXT    NOT NULL,
    common_annotations TEXT    NOT NULL,
    external_url       TEXT    NOT NULL,
    truncated_alerts   INTEGER NOT NULL DEFAULT 0,
    created_at         REAL    NOT NULL,
    updated_at         REAL    NOT NULL,
    findings           TEXT    NOT NULL DEFAULT '[]',
    diagnosis_error    TEXT,
    dry_run_diff       TEXT,
    -- bumped each time the incident is (re)queued for diagnosis; a claim remembers the value it saw
    pending_gen        INTEGER NOT NULL DEFAULT 1,
    claimed_by         TEXT,
    claimed_until      REAL,
    claimed_gen        INTEGER
);
CREATE INDEX incidents_work_state ON incidents (work_state, id);
CREATE INDEX incidents_updated_at ON incidents (updated_at);

CREATE TABLE alerts (
    id            INTEGER PRIMARY KEY,
    incident_id   INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    fingerprint   TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('firing', 'resolved')),
    labels        TEXT    NOT NULL,
    annotations   TEXT    NOT NULL,
    starts_at     TEXT    NOT NULL,
    ends_at       TEXT,
    generator_url TEXT    NOT NULL,
    first_seen    REAL    NOT NULL,
    updated_at    REAL    NOT NULL,
    UNIQUE (incident_id, fingerprint)
);

CREATE TABLE decisions (
    id          INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    user_id     TEXT    NOT NULL,
    user_name   TEXT    NOT NULL,
    decision    TEXT    NOT NULL CHECK (decision IN ('approve', 'reject')),
    reason      TEXT,
    at          REAL    NOT NULL
);
CREATE INDEX decisions_incident ON decisions (incident_id, id);

CREATE TABLE executions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    -- UNIQUE: one execution per incident, whatever the number of concurrent approvals.
    -- NULL (a CLI run without incident) is allowed any number of times.
    incident_id INTEGER UNIQUE REFERENCES incidents (id),
    actor       TEXT    NOT NULL,
    targets     TEXT    NOT NULL,
    plan_json   TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'rolled-back')),
    detail      TEXT    NOT NULL DEFAULT '',
    started_at  REAL    NOT NULL,
    finished_at REAL
);

CREATE TABLE execution_targets (
    execution_id INTEGER NOT NULL REFERENCES executions (id),
    target       TEXT    NOT NULL,
    active       INTEGER NOT NULL,
    PRIMARY KEY (execution_id, target)
);
-- The target lock: at most one active (running) execution per object.
CREATE UNIQUE INDEX execution_targets_active ON execution_targets (target) WHERE active = 1;

CREATE TABLE backups (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id INTEGER NOT NULL REFERENCES executions (id),
    target       TEXT    NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('object', 'host')),
    content      TEXT    NOT NULL,
    created_at   REAL    NOT NULL
);
CREATE INDEX backups_execution ON backups (execution_id, id);

CREATE TABLE audit (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           REAL    NOT NULL,
    actor        TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    incident_id  INTEGER,
    execution_id INTEGER,
    detail       TEXT    NOT NULL
);
CREATE INDEX audit_incident ON audit (incident_id, id);

CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    thread_key    TEXT    NOT NULL,
    method        TEXT    NOT NULL,
    payload_json  TEXT    NOT NULL,
    state         TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    not_before    REAL    NOT NULL,
    last_error    TEXT,
    response_json TEXT,
    created_at    REAL    NOT NULL,
    done_at       REAL
);
CREATE INDEX outbox_pending ON outbox (thread_key, id) WHERE state = 'pending';

CREATE TABLE slack_messages (
    incident_id INTEGER PRIMARY KEY REFERENCES incidents (id) ON DELETE CASCADE,
    channel     TEXT NOT NULL,
    ts          TEXT NOT NULL,
    updated_at  REAL NOT NULL
);

CREATE TABLE locks (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at REAL NOT NULL
);

CREATE TABLE kv (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""

# v2: when an incident became resolved, so "resolved since" does not count an old incident touched
# later (updated_at moves on every diagnosis or execution). Existing resolved incidents get the last
# change of their alerts, which is when the resolution arrived.
_SCHEMA_V2 = """
ALTER TABLE incidents ADD COLUMN resolved_at REAL;
UPDATE incidents SET resolved_at = COALESCE(
    (SELECT MAX(alerts.updated_at) FROM alerts WHERE alerts.incident_id = incidents.id), updated_at
) WHERE status = 'resolved';
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _SCHEMA_V1),
    Migration(2, "incidents.resolved_at", _SCHEMA_V2),
)


def _check_migrations(migrations: Sequence[Migration]) -> None:
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise AssertionError(
                f"migration #{expected} has version {migration.version}; versions must be 1..n"
            )


_check_migrations(MIGRATIONS)


def _split_sql(script: str) -> list[str]:
    """Split a script into statements; `sqlite3.complete_statement` keeps triggers and quoted `;` whole."""
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n\t;"):
                statements.append(pending.strip())
            pending = ""
    if pending.strip(" \n\t;"):
        raise ValueError(f"incomplete SQL statement in migration: {pending.strip()[:80]!r}")
    return statements


# ---------------------------------------------------------------------------------------------
# The connection
# ---------------------------------------------------------------------------------------------


class SqliteDatabase:
    """One SQLite connection living in one worker thread. The repositories (bot/store/incidents.py
    ...) are mixins over it, each writing its own tables through `_run` and `_write`, and
    `bot.store.Store` is all of them together."""

    def __init__(
        self,
        path: str,
        conn: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        *,
        clock: Callable[[], float],
        claim_ttl_seconds: float,
        schema_version: int,
    ) -> None:
        self.path = path
        self.schema_version = schema_version
        self._conn = conn
        self._executor = executor
        self._clock = clock
        self._claim_ttl = claim_ttl_seconds
        # Identifies this open store in claims: claims by any other token are from a previous process.
        self._token = uuid.uuid4().hex
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: str,
        *,
        synchronous: Synchronous = "normal",
        clock: Callable[[], float] = time.time,
        claim_ttl_seconds: float = DEFAULT_CLAIM_TTL_SECONDS,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> Self:
        """Open (creating if needed) and migrate the database at `path`."""
        require_choice(synchronous, Synchronous, "synchronous")
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pitcrew-store")
        loop = asyncio.get_running_loop()
        try:
            conn, version = await loop.run_in_executor(
                executor, _connect_and_migrate, path, synchronous, list(migrations), clock
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(
            path,
            conn,
            executor,
            clock=clock,
            claim_ttl_seconds=claim_ttl_seconds,
            schema_version=version,
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._conn.close)
        finally:
            self._executor.shutdown(wait=False)

    @property
    def is_open(self) -> bool:
        return not self._closed

    async def _run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._closed:
            raise StoreClosed("the store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction; rolled back entirely if anything inside raises.

        Inside an open transaction (a batch, see record_webhooks) it is a savepoint instead: the
        unit is still all-or-nothing, and becomes durable with the batch's commit."""
        conn = self._conn
        if conn.in_transaction:
            conn.execute("SAVEPOINT unit")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK TO unit")
                conn.execute("RELEASE unit")
                raise
            conn.execute("RELEASE unit")
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- diagnostics ----------------------------------------------------------------------------

    async def ping(self) -> None:
        """A real round trip through the store's thread (readiness)."""
        await self.pragma("journal_mode")

    async def pragma(self, name: Literal["journal_mode", "synchronous", "foreign_keys"]) -> str:
        """Current value of a connection setting (readiness checks and tests)."""
        return await self._run(self._pragma, name)

    def _pragma(self, name: str) -> str:
        return str(self._conn.execute(f"PRAGMA {name}").fetchone()[0])


def require_incident(conn: sqlite3.Connection, incident_id: int) -> None:
    """Inside a write: raise NotFound unless the incident exists (rows that name one need it)."""
    if conn.execute("SELECT 1 FROM incidents WHERE id = ?", (incident_id,)).fetchone() is None:
        raise NotFound(f"incident {incident_id} does not exist")


# ---------------------------------------------------------------------------------------------
# Opening and migrating (runs in the store's thread)
# ---------------------------------------------------------------------------------------------


def _create_owner_only(path: str) -> None:
    """Create a new database file readable by its owner only: it holds backups of cluster objects and
    evidence. SQLite gives its -wal and -shm files the database file's permissions."""
    if path == ":memory:":
        return
    # An existing file keeps the operator's permissions; a missing folder is reported by sqlite3.
    with suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _connect_and_migrate(
    path: str, synchronous: str, migrations: list[Migration], clock: Callable[[], float]
) -> tuple[sqlite3.Connection, int]:
    _create_owner_only(path)
    directory = os.path.dirname(path)
    if path != ":memory:" and directory and not os.path.isdir(directory):
        # SQLite would only say "unable to open database file".
        raise StoreError(f"cannot open store {path}: directory {directory} does not exist")
    # isolation_level=None: no implicit transactions; every write is an explicit BEGIN IMMEDIATE.
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=10.0, cached_statements=256)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open store {path}: {exc}") from exc
    try:
        conn.row_factory = sqlite3.Row
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            # sqlite3 opens lazily: a missing directory or a file that is not a database shows here.
            raise StoreError(f"cannot open store {path}: {exc}") from exc
        if mode != "wal" and path != ":memory:":
            raise StoreError(f"cannot put {path} in WAL mode (journal_mode is {mode})")
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        conn.execute("PRAGMA foreign_keys = ON")
        version = _migrate(conn, migrations, clock)
    except BaseException:
        conn.close()
        raise
    return conn, version


def _migrate(conn: sqlite3.Connection, migrations: list[Migration], clock: Callable[[], float]) -> int:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version"
        " (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    known = len(migrations)
    for migration in migrations:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Read inside the transaction: another process may have migrated meanwhile.
            current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
            if current > known:
                raise SchemaTooNew(_too_new(current, known))
            if migration.version > current:
                if isinstance(migration.apply, str):
                    for statement in _split_sql(migration.apply):
                        conn.execute(statement)
                else:
                    migration.apply(conn)
                conn.execute(
                    "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.description, clock()),
                )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
    if current > known:
        raise SchemaTooNew(_too_new(current, known))
    return cast(int, current)


def _too_new(current: int, known: int) -> str:
    return f"store schema version {current} is newer than this pitcrew knows ({known}); upgrade pitcrew"
