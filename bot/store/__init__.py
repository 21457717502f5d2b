"""Persistence: the only place pitcrew's state lives, so a restart resumes where it stopped.

Layout (one module per aggregate, each the only one that writes its tables):

    records.py     the records and errors every backend returns and raises (typed, frozen)
    interface.py   the typed Protocols the services depend on: IncidentRepository,
                   ApprovalRepository, ExecutionRepository, OutboxRepository, ScheduleRepository,
                   and StoreBackend (all of them over one database)
    sqlite.py      the SQLite connection, its thread and transactions, the versioned migrations
    incidents.py   incidents and alerts: intake (one transaction per webhook), work state, claims
    approvals.py   approval decisions and the audit log
    executions.py  executions (one per incident, one running per target) and their backups
    outbox.py      queued Slack calls and each incident's Slack message
    schedules.py   named locks with a TTL and key/value records (scheduled runs)

`Store` is the SQLite backend: every SQLite repository over one connection (WAL, file mode 0600).
Safety rules live in SQL (unique constraints and indexes), so no caller can get them wrong.

A second backend (PostgreSQL) plugs in without touching a service:
1. implement the five repositories for it (e.g. a `bot/store/postgres/` package with the same
   aggregates), returning the records of records.py and raising its errors, with the same rules as
   unique constraints in its own migrations;
2. check it satisfies `StoreBackend` (mypy does, wherever it is assigned to `keys.STORE`) and run the
   repository tests against it too (they take the store from a fixture);
3. choose it where the store is opened (`bot/app.py`'s store context, the CLI verbs' store) from the
   config (`store.url`). Services only see the Protocols of interface.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from bot.store.approvals import SqliteApprovals
from bot.store.executions import SqliteExecutions
from bot.store.incidents import SqliteIncidents
from bot.store.interface import (
    ApprovalRepository,
    ExecutionRepository,
    IncidentRepository,
    OutboxRepository,
    ScheduleRepository,
    StoreBackend,
)
from bot.store.outbox import SqliteOutbox
from bot.store.records import (
    DEFAULT_CLAIM_TTL_SECONDS,
    AuditEntry,
    Backup,
    BackupKind,
    Decision,
    DecisionKind,
    Execution,
    ExecutionConflict,
    ExecutionOutcome,
    ExecutionStatus,
    IntakeResult,
    NotFound,
    OutboxItem,
    SchemaTooNew,
    StoreClosed,
    StoreError,
    Synchronous,
)
from bot.store.schedules import SqliteSchedules
from bot.store.sqlite import MIGRATIONS, Migration


class StoreSettings(Protocol):
    """The `store` config section as `open_store` reads it (bot.config.StoreConfig)."""

    @property
    def url(self) -> str | None: ...
    @property
    def sqlite_path(self) -> str: ...
    @property
    def synchronous(self) -> Synchronous: ...
    @property
    def password(self) -> object | None: ...
    @property
    def pool_min_size(self) -> int: ...
    @property
    def pool_max_size(self) -> int: ...


async def open_store(settings: StoreSettings, *, clock: Callable[[], float] = time.time) -> StoreBackend:
    """The configured backend, open and migrated: PostgreSQL when `url` is set, else SQLite."""
    if settings.url is not None:
        from bot.store.postgres import PostgresStore  # asyncpg is loaded only when used

        return await PostgresStore.open(settings, clock=clock)
    return await Store.open(settings.sqlite_path, synchronous=settings.synchronous, clock=clock)


class Store(SqliteIncidents, SqliteApprovals, SqliteExecutions, SqliteOutbox, SqliteSchedules):
    """The SQLite store: every repository over one SQLite connection living in one worker thread.
    Open with `Store.open`.

    One `pitcrew serve` process owns a store file; other processes (the CLI) may open it too: WAL lets
    them read while the service writes, and `BEGIN IMMEDIATE` + busy timeout serialises writers.
    """


__all__ = [
    "DEFAULT_CLAIM_TTL_SECONDS",
    "MIGRATIONS",
    "ApprovalRepository",
    "AuditEntry",
    "Backup",
    "BackupKind",
    "Decision",
    "DecisionKind",
    "Execution",
    "ExecutionConflict",
    "ExecutionOutcome",
    "ExecutionRepository",
    "ExecutionStatus",
    "IncidentRepository",
    "IntakeResult",
    "Migration",
    "NotFound",
    "OutboxItem",
    "OutboxRepository",
    "ScheduleRepository",
    "SchemaTooNew",
    "Store",
    "StoreBackend",
    "StoreClosed",
    "StoreError",
    "StoreSettings",
    "Synchronous",
    "open_store",
]
