"""SQLite persistence: the only place pitcrew's state lives, so a restart resumes where it stopped.

One connection, owned by one dedicated thread: every call is shipped to that thread, so the event
loop never blocks on SQLite and writes happen in the order they were submitted. The database runs in
WAL mode (readers in other processes, e.g. `pitcrew history`, do not block the writer) with
`synchronous` NORMAL (default; a power loss may lose the last commits, a process crash loses nothing)
or FULL (fsync on every commit).

The schema is versioned: `MIGRATIONS` is an ordered list applied at open, each in its own
transaction. To change the schema, append a `Migration` with the next version number; never edit one
that has shipped.

Safety rules that live here, in SQL, so no caller can get them wrong:
- one open incident per Alertmanager group (UNIQUE group_key), one row per alert fingerprint per
  incident; a group that fires again after its incident resolved and pitcrew's work on it ended opens
  a new incident (the old one keeps a retired key), so a recurring problem can be fixed again;
- one execution per incident (UNIQUE incident_id), however many concurrent approvals;
- one running execution per target object (UNIQUE index on active target locks);
- a webhook is stored all-or-nothing (one transaction per payload).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, cast, get_args

from bot.model import (
    Alert,
    Finding,
    Incident,
    IncidentStatus,
    WorkState,
    findings_dumps,
    findings_loads,
)

if TYPE_CHECKING:
    from bot.alertmanager import WebhookPayload

P = ParamSpec("P")
T = TypeVar("T")

Synchronous = Literal["normal", "full"]
DecisionKind = Literal["approve", "reject"]
ExecutionStatus = Literal["running", "succeeded", "failed", "rolled-back"]
ExecutionOutcome = Literal["succeeded", "failed", "rolled-back"]
BackupKind = Literal["object", "host"]

# How long a worker's claim on a pending incident lasts before another claim_pending may take it
# (a worker that died without saving its diagnosis must not park the incident forever).
DEFAULT_CLAIM_TTL_SECONDS = 900.0


# ---------------------------------------------------------------------------------------------
# Errors and records
# ---------------------------------------------------------------------------------------------


class StoreError(Exception):
    """Base class of the store's own errors."""


class StoreClosed(StoreError):
    pass


class NotFound(StoreError, LookupError):
    """The incident / execution named by the caller does not exist."""


class SchemaTooNew(StoreError):
    pass


class ExecutionConflict(StoreError):
    """An execution may not start: the incident already has one, or a target is held by another."""

    def __init__(self, reason: str, *, execution_id: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        # The execution that holds the incident or the target, when known.
        self.execution_id = execution_id


@dataclass(frozen=True)
class IntakeResult:
    incident_id: int
    created: bool
    changed: bool
    # True when this delivery put the incident in WorkState.PENDING (a worker should look at it).
    pending: bool = False


@dataclass(frozen=True)
class Decision:
    incident_id: int
    user_id: str
    user_name: str
    decision: DecisionKind
    reason: str | None
    at: float


@dataclass(frozen=True)
class Execution:
    id: int
    incident_id: int | None
    actor: str
    targets: tuple[str, ...]
    plan_json: str
    status: ExecutionStatus
    detail: str
    started_at: float
    finished_at: float | None


@dataclass(frozen=True)
class Backup:
    id: str  # "b-<n>"
    execution_id: int
    target: str
    kind: BackupKind
    content: str
    created_at: float


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    actor: str
    action: str
    incident_id: int | None
    execution_id: int | None
    detail: str


@dataclass(frozen=True)
class OutboxItem:
    id: int
    thread_key: str
    method: str
    payload_json: str
    attempts: int
    not_before: float
    created_at: float
    last_error: str | None


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
# Row conversion
# ---------------------------------------------------------------------------------------------


def _json(mapping: Mapping[str, str]) -> str:
    # Canonical form, so "did it change?" is a string comparison.
    return json.dumps(dict(mapping), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_INCIDENT_COLUMNS = (
    "id, group_key, status, work_state, receiver, group_labels, common_labels, common_annotations, "
    "external_url, created_at, updated_at, findings, diagnosis_error, dry_run_diff, resolved_at"
)
_ALERT_COLUMNS = "incident_id, fingerprint, status, labels, annotations, starts_at, ends_at, generator_url"
_EXECUTION_COLUMNS = "id, incident_id, actor, targets, plan_json, status, detail, started_at, finished_at"
_OUTBOX_COLUMNS = "id, thread_key, method, payload_json, attempts, not_before, created_at, last_error"
_AUDIT_COLUMNS = "id, at, actor, action, incident_id, execution_id, detail"


def _alert_from_row(row: sqlite3.Row) -> Alert:
    return Alert(
        fingerprint=row["fingerprint"],
        status=row["status"],
        labels=json.loads(row["labels"]),
        annotations=json.loads(row["annotations"]),
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        generator_url=row["generator_url"],
    )


def _incident_from_row(row: sqlite3.Row, alerts: tuple[Alert, ...]) -> Incident:
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


def _execution_from_row(row: sqlite3.Row) -> Execution:
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


def _outbox_from_row(row: sqlite3.Row) -> OutboxItem:
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


def _audit_from_row(row: sqlite3.Row) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        at=row["at"],
        actor=row["actor"],
        action=row["action"],
        incident_id=row["incident_id"],
        execution_id=row["execution_id"],
        detail=row["detail"],
    )


# Work states in which pitcrew is done with an incident: a later re-fire of its group is a new incident.
_WORK_DONE = frozenset(
    s.value for s in (WorkState.SUCCEEDED, WorkState.FAILED, WorkState.ROLLED_BACK, WorkState.REJECTED)
)


def _group_status(payload: WebhookPayload, alert_statuses: Iterable[str]) -> IncidentStatus:
    """The incident fires while any of its alerts fires; it is resolved when all are. A truncated
    notification (truncatedAlerts > 0) does not show every alert, but its status is Alertmanager's
    for the whole group: "firing" then means some alert fires, shown or not."""
    firing = any(s == "firing" for s in alert_statuses)
    if firing or (payload.truncated_alerts > 0 and payload.status == "firing"):
        return IncidentStatus.FIRING
    return IncidentStatus.RESOLVED


def _require_choice(value: str, allowed: Any, what: str) -> None:
    choices = get_args(allowed)
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}; got {value!r}")


def _backup_number(backup_id: str) -> int | None:
    prefix, _, number = backup_id.partition("-")
    if prefix != "b" or not number.isdigit():
        return None
    return int(number)


# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------


class Store:
    """Async facade over one SQLite connection living in one worker thread. Open with `Store.open`.

    One `pitcrew serve` process owns a store file; other processes (the CLI) may open it too: WAL lets
    them read while the service writes, and `BEGIN IMMEDIATE` + busy timeout serialises writers.
    """

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
    ) -> Store:
        """Open (creating if needed) and migrate the database at `path`."""
        _require_choice(synchronous, Synchronous, "synchronous")
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

    # -- intake ---------------------------------------------------------------------------------

    async def record_webhooks(self, payloads: Sequence[WebhookPayload]) -> list[IntakeResult | Exception]:
        """Group commit (added by intake for throughput): several notifications in one thread hop and
        one transaction. Each payload is all-or-nothing (a savepoint): its slot holds its result or
        the exception that rolled it back. Everything returned as a result is committed when this
        returns; if the commit itself fails, this raises and nothing of the batch is stored."""
        return await self._run(self._record_webhooks, list(payloads))

    def _record_webhooks(self, payloads: list[WebhookPayload]) -> list[IntakeResult | Exception]:
        results: list[IntakeResult | Exception] = []
        with self._write():
            for payload in payloads:
                try:
                    results.append(self._record_webhook(payload))
                except Exception as exc:  # this payload rolled back to its savepoint; the others stand
                    results.append(exc)
        return results

    async def record_webhook(self, payload: WebhookPayload) -> IntakeResult:
        """Store one Alertmanager notification, all or nothing; re-deliveries change nothing."""
        return await self._run(self._record_webhook, payload)

    @staticmethod
    def _is_new_occurrence(conn: sqlite3.Connection, row: sqlite3.Row, incoming: Iterable[Alert]) -> bool:
        if row["status"] != IncidentStatus.RESOLVED.value or row["work_state"] not in _WORK_DONE:
            return False
        firing = [a for a in incoming if a.status == "firing"]
        if not firing:
            return False
        seen = {
            (r["fingerprint"], r["starts_at"])
            for r in conn.execute(
                "SELECT fingerprint, starts_at FROM alerts WHERE incident_id = ?", (row["id"],)
            )
        }
        # Same fingerprint and startsAt as an alert we already saw resolve: a late delivery, not a re-fire.
        return any((a.fingerprint, a.starts_at) not in seen for a in firing)

    def _record_webhook(self, payload: WebhookPayload) -> IntakeResult:
        now = self._clock()
        incident_fields = (
            payload.receiver,
            _json(payload.group_labels),
            _json(payload.common_labels),
            _json(payload.common_annotations),
            payload.external_url,
            payload.truncated_alerts,
        )
        # Last one wins if a payload repeats a fingerprint (Alertmanager does not, but be exact).
        incoming: dict[str, Alert] = {}
        for alert in payload.alerts:
            incoming[alert.fingerprint] = alert

        with self._write() as conn:
            row = conn.execute(
                "SELECT id, status, work_state, receiver, group_labels, common_labels, common_annotations,"
                " external_url, truncated_alerts FROM incidents WHERE group_key = ?",
                (payload.group_key,),
            ).fetchone()
            if row is not None and self._is_new_occurrence(conn, row, incoming.values()):
                # The group fires again after its incident was resolved and pitcrew's work on it ended
                # (fixed, failed, rolled back or rejected): that is a new occurrence, with its own
                # diagnosis, Slack message and approval. The closed incident keeps its history under
                # a retired key, so the group key stays unique for the open one.
                conn.execute(
                    "UPDATE incidents SET group_key = ? WHERE id = ?",
                    (f"{payload.group_key} [closed incident {row['id']}]", row["id"]),
                )
                row = None
            created = row is None
            if row is None:
                status = _group_status(payload, (a.status for a in incoming.values()))
                cursor = conn.execute(
                    "INSERT INTO incidents (group_key, status, work_state, receiver, group_labels,"
                    " common_labels, common_annotations, external_url, truncated_alerts, created_at,"
                    " updated_at, resolved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        payload.group_key,
                        status.value,
                        WorkState.PENDING.value,
                        *incident_fields,
                        now,
                        now,
                        now if status is IncidentStatus.RESOLVED else None,
                    ),
                )
                incident_id = cast(int, cursor.lastrowid)
                stored: dict[str, sqlite3.Row] = {}
            else:
                incident_id = row["id"]
                stored = {
                    r["fingerprint"]: r
                    for r in conn.execute(
                        "SELECT id, fingerprint, status, labels, annotations, starts_at, ends_at,"
                        " generator_url FROM alerts WHERE incident_id = ?",
                        (incident_id,),
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
                    # A firing notice for the same firing period we already saw resolved: a delayed
                    # or re-ordered delivery, not a new firing (a re-fire has a new startsAt).
                    continue
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
            # A resolved notification means the whole group is resolved (Alertmanager's status counts
            # every alert): alerts it no longer lists, or left out (truncatedAlerts), are resolved too.
            resolved_elsewhere: list[tuple[float, int]] = []
            if payload.status == "resolved":
                for fingerprint, old in stored.items():
                    if fingerprint not in incoming and statuses[fingerprint] == "firing":
                        resolved_elsewhere.append((now, old["id"]))
                        statuses[fingerprint] = "resolved"

            if inserts:
                conn.executemany(
                    f"INSERT INTO alerts ({_ALERT_COLUMNS}, first_seen, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    inserts,
                )
            if updates:
                conn.executemany(
                    "UPDATE alerts SET status = ?, labels = ?, annotations = ?, starts_at = ?, ends_at = ?,"
                    " generator_url = ?, updated_at = ? WHERE id = ?",
                    updates,
                )
            if resolved_elsewhere:
                conn.executemany(
                    "UPDATE alerts SET status = 'resolved', updated_at = ? WHERE id = ?", resolved_elsewhere
                )
            if created:
                return IntakeResult(incident_id, created=True, changed=True, pending=True)

            assert row is not None
            status = _group_status(payload, statuses.values())
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
                or status != row["status"]
                or incident_fields != old_incident_fields
            )
            if not changed:
                return IntakeResult(incident_id, created=False, changed=False)
            # Re-diagnosis rule: an incident is (re)queued as PENDING only when it is created (above) or
            # gains a firing alert (a new fingerprint firing, or a resolved one firing again with a new
            # startsAt, or a truncated notification saying a resolved group fires again). Label/annotation/
            # endsAt updates and resolutions never requeue. An incident being EXECUTING is left alone:
            # the running execution owns it until it finishes.
            refired = status is IncidentStatus.FIRING and row["status"] == IncidentStatus.RESOLVED.value
            requeue = (gained_firing or refired) and row["work_state"] != WorkState.EXECUTING.value
            conn.execute(
                "UPDATE incidents SET status = ?, receiver = ?, group_labels = ?, common_labels = ?,"
                " common_annotations = ?, external_url = ?, truncated_alerts = ?, updated_at = ?,"
                # Set when the incident becomes resolved, kept while it stays so, cleared when it fires.
                " resolved_at = CASE WHEN ? = 'resolved' THEN COALESCE(resolved_at, ?) END,"
                " work_state = CASE WHEN ? THEN 'pending' ELSE work_state END,"
                " pending_gen = pending_gen + ? WHERE id = ?",
                (status.value, *incident_fields, now, status.value, now, requeue, int(requeue), incident_id),
            )
            return IntakeResult(incident_id, created=False, changed=True, pending=requeue)

    # -- incidents ------------------------------------------------------------------------------

    async def get_incident(self, incident_id: int) -> Incident | None:
        return await self._run(self._get_incident, "id", incident_id)

    async def get_incident_by_group_key(self, group_key: str) -> Incident | None:
        return await self._run(self._get_incident, "group_key", group_key)

    def _get_incident(self, column: Literal["id", "group_key"], value: object) -> Incident | None:
        row = self._conn.execute(
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE {column} = ?", (value,)
        ).fetchone()
        if row is None:
            return None
        return self._with_alerts([row])[0]

    def _with_alerts(self, rows: Sequence[sqlite3.Row]) -> list[Incident]:
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        by_incident: dict[int, list[Alert]] = {i: [] for i in ids}
        placeholders = ",".join("?" * len(ids))
        for alert_row in self._conn.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE incident_id IN ({placeholders}) ORDER BY id", ids
        ):
            by_incident[alert_row["incident_id"]].append(_alert_from_row(alert_row))
        return [_incident_from_row(r, tuple(by_incident[r["id"]])) for r in rows]

    async def list_incidents(
        self,
        *,
        status: IncidentStatus | None = None,
        work_states: Collection[WorkState] | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[Incident]:
        """Newest first. `since` keeps incidents updated (created, changed, diagnosed...) at or after it."""
        return await self._run(self._list_incidents, status, work_states, since, limit)

    def _list_incidents(
        self,
        status: IncidentStatus | None,
        work_states: Collection[WorkState] | None,
        since: float | None,
        limit: int,
    ) -> list[Incident]:
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(IncidentStatus(status).value)
        if work_states is not None:
            states = [WorkState(s).value for s in work_states]
            if not states:
                return []
            where.append(f"work_state IN ({','.join('?' * len(states))})")
            params.extend(states)
        if since is not None:
            where.append("updated_at >= ?")
            params.append(since)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._conn.execute(
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents{clause} ORDER BY id DESC LIMIT ?", (*params, limit)
        ).fetchall()
        return self._with_alerts(rows)

    async def count_incidents(self) -> dict[tuple[IncidentStatus, WorkState], int]:
        """Number of incidents per (status, work state); absent pairs are 0. (Added by intake for
        the pitcrew_incidents gauge, computed at each /metrics scrape.)"""
        return await self._run(self._count_incidents)

    def _count_incidents(self) -> dict[tuple[IncidentStatus, WorkState], int]:
        rows = self._conn.execute(
            "SELECT status, work_state, COUNT(*) FROM incidents GROUP BY status, work_state"
        ).fetchall()
        return {(IncidentStatus(r[0]), WorkState(r[1])): int(r[2]) for r in rows}

    async def claim_pending(self, limit: int) -> list[int]:
        """Claim up to `limit` PENDING incidents (oldest first) for this process's workers.

        A claim lasts until the incident leaves PENDING (save_diagnosis / set_work_state) or for the
        claim TTL. Claims made by a previous process (another open of the store) are not live: after a
        restart every pending incident is found again.
        """
        return await self._run(self._claim_pending, limit)

    def _claim_pending(self, limit: int) -> list[int]:
        now = self._clock()
        with self._write() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM incidents WHERE work_state = 'pending'"
                    " AND (claimed_by IS NULL OR claimed_by != ? OR claimed_until <= ?) ORDER BY id LIMIT ?",
                    (self._token, now, limit),
                )
            ]
            conn.executemany(
                "UPDATE incidents SET claimed_by = ?, claimed_until = ?, claimed_gen = pending_gen"
                " WHERE id = ?",
                [(self._token, now + self._claim_ttl, i) for i in ids],
            )
        return ids

    async def save_diagnosis(
        self,
        incident_id: int,
        findings: Sequence[Finding],
        *,
        dry_run_diff: str | None,
        error: str | None,
    ) -> None:
        """Store the findings and move PENDING -> DIAGNOSED.

        If the incident was requeued (gained a firing alert) after the worker claimed it, the findings
        are stored but the incident stays PENDING, so the new alert gets its own diagnosis. Other work
        states (e.g. a diagnosis re-run on an executing incident) keep their state.
        """
        text = findings_dumps(list(findings))
        await self._run(self._save_diagnosis, incident_id, text, dry_run_diff, error)

    def _save_diagnosis(
        self, incident_id: int, findings: str, dry_run_diff: str | None, error: str | None
    ) -> None:
        now = self._clock()
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE incidents SET findings = ?, dry_run_diff = ?, diagnosis_error = ?, updated_at = ?,"
                " work_state = CASE WHEN work_state = 'pending'"
                "   AND (claimed_gen IS NULL OR claimed_gen >= pending_gen) THEN 'diagnosed'"
                "   ELSE work_state END,"
                " claimed_by = NULL, claimed_until = NULL, claimed_gen = NULL WHERE id = ?",
                (findings, dry_run_diff, error, now, incident_id),
            )
            if cursor.rowcount == 0:
                raise NotFound(f"incident {incident_id} does not exist")

    async def set_work_state(
        self,
        incident_id: int,
        new: WorkState,
        *,
        expected: Collection[WorkState] | None = None,
    ) -> bool:
        """Compare-and-set: returns False (changing nothing) if the current state is not in `expected`
        or the incident does not exist. Setting PENDING requeues the incident for diagnosis."""
        expected_values = None if expected is None else [WorkState(s).value for s in expected]
        return await self._run(self._set_work_state, incident_id, WorkState(new), expected_values)

    def _set_work_state(self, incident_id: int, new: WorkState, expected: list[str] | None) -> bool:
        if expected is not None and not expected:
            return False
        now = self._clock()
        condition = ""
        params: list[Any] = [new.value, now, int(new is WorkState.PENDING), incident_id]
        if expected is not None:
            condition = f" AND work_state IN ({','.join('?' * len(expected))})"
            params.extend(expected)
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE incidents SET work_state = ?, updated_at = ?, pending_gen = pending_gen + ?,"
                f" claimed_by = NULL, claimed_until = NULL, claimed_gen = NULL WHERE id = ?{condition}",
                params,
            )
            return cursor.rowcount == 1

    # -- approvals ------------------------------------------------------------------------------

    async def record_decision(
        self,
        incident_id: int,
        user_id: str,
        user_name: str,
        decision: DecisionKind,
        reason: str | None,
    ) -> None:
        _require_choice(decision, DecisionKind, "decision")
        await self._run(self._record_decision, incident_id, user_id, user_name, decision, reason)

    def _record_decision(
        self, incident_id: int, user_id: str, user_name: str, decision: str, reason: str | None
    ) -> None:
        now = self._clock()
        with self._write() as conn:
            self._require_incident(conn, incident_id)
            conn.execute(
                "INSERT INTO decisions (incident_id, user_id, user_name, decision, reason, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (incident_id, user_id, user_name, decision, reason, now),
            )

    async def list_decisions(self, incident_id: int) -> list[Decision]:
        """In the order they were made."""
        return await self._run(self._list_decisions, incident_id)

    def _list_decisions(self, incident_id: int) -> list[Decision]:
        rows = self._conn.execute(
            "SELECT incident_id, user_id, user_name, decision, reason, at FROM decisions"
            " WHERE incident_id = ? ORDER BY id",
            (incident_id,),
        )
        return [Decision(*r) for r in rows]

    @staticmethod
    def _require_incident(conn: sqlite3.Connection, incident_id: int) -> None:
        if conn.execute("SELECT 1 FROM incidents WHERE id = ?", (incident_id,)).fetchone() is None:
            raise NotFound(f"incident {incident_id} does not exist")

    # -- executions -----------------------------------------------------------------------------

    async def start_execution(
        self,
        incident_id: int | None,
        actor: str,
        targets: Sequence[str],
        plan_json: str,
    ) -> Execution:
        """Start the one execution of an incident, locking its targets (object refs as strings).

        Raises ExecutionConflict if the incident already has an execution (running or finished) or a
        target is held by a running execution; nothing is written then.
        """
        unique_targets = tuple(dict.fromkeys(targets))
        return await self._run(self._start_execution, incident_id, actor, unique_targets, plan_json)

    def _start_execution(
        self, incident_id: int | None, actor: str, targets: tuple[str, ...], plan_json: str
    ) -> Execution:
        now = self._clock()
        with self._write() as conn:
            if incident_id is not None:
                self._require_incident(conn, incident_id)
                existing = conn.execute(
                    "SELECT id, status FROM executions WHERE incident_id = ?", (incident_id,)
                ).fetchone()
                if existing is not None:
                    raise ExecutionConflict(
                        f"incident {incident_id} already has execution {existing['id']}"
                        f" ({existing['status']})",
                        execution_id=existing["id"],
                    )
            if targets:
                placeholders = ",".join("?" * len(targets))
                held = conn.execute(
                    f"SELECT target, execution_id FROM execution_targets WHERE active = 1"
                    f" AND target IN ({placeholders}) ORDER BY target LIMIT 1",
                    targets,
                ).fetchone()
                if held is not None:
                    raise ExecutionConflict(
                        f"{held['target']} is locked by running execution {held['execution_id']}",
                        execution_id=held["execution_id"],
                    )
            try:
                cursor = conn.execute(
                    f"INSERT INTO executions ({_EXECUTION_COLUMNS.removeprefix('id, ')})"
                    " VALUES (?, ?, ?, ?, 'running', '', ?, NULL)",
                    (incident_id, actor, json.dumps(list(targets)), plan_json, now),
                )
                execution_id = cast(int, cursor.lastrowid)
                conn.executemany(
                    "INSERT INTO execution_targets (execution_id, target, active) VALUES (?, ?, 1)",
                    [(execution_id, t) for t in targets],
                )
            except sqlite3.IntegrityError as exc:
                # The checks above make this unreachable from this process; the unique indexes are
                # the guarantee when another process writes the same file between them.
                raise ExecutionConflict(f"execution conflict: {exc}") from exc
        return Execution(
            id=execution_id,
            incident_id=incident_id,
            actor=actor,
            targets=targets,
            plan_json=plan_json,
            status="running",
            detail="",
            started_at=now,
            finished_at=None,
        )

    async def finish_execution(self, execution_id: int, outcome: ExecutionOutcome, detail: str) -> None:
        """Record the outcome and free the target locks. May be called again later (e.g. a failed
        execution that is then rolled back): the latest outcome wins."""
        _require_choice(outcome, ExecutionOutcome, "outcome")
        await self._run(self._finish_execution, execution_id, outcome, detail)

    def _finish_execution(self, execution_id: int, outcome: str, detail: str) -> None:
        now = self._clock()
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE executions SET status = ?, detail = ?, finished_at = ? WHERE id = ?",
                (outcome, detail, now, execution_id),
            )
            if cursor.rowcount == 0:
                raise NotFound(f"execution {execution_id} does not exist")
            conn.execute("UPDATE execution_targets SET active = 0 WHERE execution_id = ?", (execution_id,))

    async def get_execution(self, execution_id: int) -> Execution | None:
        return await self._run(self._get_execution, execution_id)

    def _get_execution(self, execution_id: int) -> Execution | None:
        row = self._conn.execute(
            f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE id = ?", (execution_id,)
        ).fetchone()
        return None if row is None else _execution_from_row(row)

    async def list_executions(self, incident_id: int | None = None, limit: int = 50) -> list[Execution]:
        """Newest first; all executions, or the one of an incident."""
        return await self._run(self._list_executions, incident_id, limit)

    def _list_executions(self, incident_id: int | None, limit: int) -> list[Execution]:
        if incident_id is None:
            rows = self._conn.execute(
                f"SELECT {_EXECUTION_COLUMNS} FROM executions ORDER BY id DESC LIMIT ?", (limit,)
            )
        else:
            rows = self._conn.execute(
                f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE incident_id = ? ORDER BY id DESC LIMIT ?",
                (incident_id, limit),
            )
        return [_execution_from_row(r) for r in rows]

    # -- backups --------------------------------------------------------------------------------

    async def save_backup(self, execution_id: int, target: str, kind: BackupKind, content: str) -> str:
        """Commit a backup (before the change it protects) and return its id, e.g. "b-12"."""
        _require_choice(kind, BackupKind, "kind")
        return await self._run(self._save_backup, execution_id, target, kind, content)

    def _save_backup(self, execution_id: int, target: str, kind: str, content: str) -> str:
        now = self._clock()
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM executions WHERE id = ?", (execution_id,)).fetchone() is None:
                raise NotFound(f"execution {execution_id} does not exist")
            cursor = conn.execute(
                "INSERT INTO backups (execution_id, target, kind, content, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (execution_id, target, kind, content, now),
            )
        return f"b-{cursor.lastrowid}"

    async def get_backup(self, backup_id: str) -> Backup | None:
        number = _backup_number(backup_id)
        if number is None:
            return None
        rows = await self._run(self._backups, "id", number)
        return rows[0] if rows else None

    async def list_backups(self, execution_id: int) -> list[Backup]:
        """In the order they were taken (restore in reverse)."""
        return await self._run(self._backups, "execution_id", execution_id)

    def _backups(self, column: Literal["id", "execution_id"], value: int) -> list[Backup]:
        rows = self._conn.execute(
            f"SELECT id, execution_id, target, kind, content, created_at FROM backups"
            f" WHERE {column} = ? ORDER BY id",
            (value,),
        )
        return [
            Backup(
                id=f"b-{r['id']}",
                execution_id=r["execution_id"],
                target=r["target"],
                kind=r["kind"],
                content=r["content"],
                created_at=r["created_at"],
            )
            for r in rows
        ]

    # -- audit ----------------------------------------------------------------------------------

    async def audit(
        self,
        actor: str,
        action: str,
        *,
        incident_id: int | None = None,
        execution_id: int | None = None,
        detail: str = "",
    ) -> None:
        await self._run(self._audit, actor, action, incident_id, execution_id, detail)

    def _audit(
        self, actor: str, action: str, incident_id: int | None, execution_id: int | None, detail: str
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO audit (at, actor, action, incident_id, execution_id, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (self._clock(), actor, action, incident_id, execution_id, detail),
            )

    async def list_audit(self, *, incident_id: int | None = None, limit: int = 200) -> list[AuditEntry]:
        """The latest `limit` entries, in the order they were written (oldest of them first)."""
        return await self._run(self._list_audit, incident_id, limit)

    def _list_audit(self, incident_id: int | None, limit: int) -> list[AuditEntry]:
        if incident_id is None:
            rows = self._conn.execute(
                f"SELECT {_AUDIT_COLUMNS} FROM audit ORDER BY id DESC LIMIT ?", (limit,)
            )
        else:
            rows = self._conn.execute(
                f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE incident_id = ? ORDER BY id DESC LIMIT ?",
                (incident_id, limit),
            )
        return [_audit_from_row(r) for r in reversed(rows.fetchall())]

    # -- outbox ---------------------------------------------------------------------------------

    async def enqueue_outbox(
        self, thread_key: str, method: str, payload_json: str, *, kv: Mapping[str, str] | None = None
    ) -> int:
        """Queue one Slack call; `kv` entries are set in the same transaction (e.g. "this scheduled
        run is posted"), so a crash never leaves the message queued without the record, or the
        reverse."""
        return await self._run(self._enqueue_outbox, thread_key, method, payload_json, dict(kv or {}))

    def _enqueue_outbox(self, thread_key: str, method: str, payload_json: str, kv: dict[str, str]) -> int:
        now = self._clock()
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO outbox (thread_key, method, payload_json, not_before, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (thread_key, method, payload_json, now, now),
            )
            for key, value in kv.items():
                self._put_kv(conn, key, value, now)
        return cast(int, cursor.lastrowid)

    async def due_outbox(self, now: float, limit: int) -> list[OutboxItem]:
        """Items ready to send: per thread_key only the oldest undelivered one (so a thread's messages
        go out in order, and one waiting for a retry holds back those behind it), if not_before <= now."""
        return await self._run(self._due_outbox, now, limit)

    def _due_outbox(self, now: float, limit: int) -> list[OutboxItem]:
        rows = self._conn.execute(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox AS o WHERE state = 'pending' AND not_before <= ?"
            " AND id = (SELECT MIN(id) FROM outbox AS p"
            " WHERE p.thread_key = o.thread_key AND p.state = 'pending')"
            " ORDER BY id LIMIT ?",
            (now, limit),
        )
        return [_outbox_from_row(r) for r in rows]

    async def mark_outbox_sent(self, item_id: int, response_json: str) -> None:
        await self._run(
            self._update_outbox,
            item_id,
            "UPDATE outbox SET state = 'sent', attempts = attempts + 1, response_json = ?, done_at = ?"
            " WHERE id = ?",
            (response_json, self._clock()),
        )

    async def mark_outbox_retry(self, item_id: int, not_before: float, error: str) -> None:
        await self._run(
            self._update_outbox,
            item_id,
            "UPDATE outbox SET attempts = attempts + 1, not_before = ?, last_error = ? WHERE id = ?",
            (not_before, error),
        )

    async def mark_outbox_failed(self, item_id: int, error: str) -> None:
        """Give up on an item; the next item of its thread becomes due."""
        await self._run(
            self._update_outbox,
            item_id,
            "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ?, done_at = ?"
            " WHERE id = ?",
            (error, self._clock()),
        )

    def _update_outbox(self, item_id: int, sql: str, params: tuple[Any, ...]) -> None:
        with self._write() as conn:
            if conn.execute(sql, (*params, item_id)).rowcount == 0:
                raise NotFound(f"outbox item {item_id} does not exist")

    async def prune_outbox(self, done_before: float) -> int:
        """Delete delivered (or given-up) items finished before `done_before`; returns how many. The
        pending ones and the audit log are never pruned."""
        return await self._run(self._prune_outbox, done_before)

    def _prune_outbox(self, done_before: float) -> int:
        with self._write() as conn:
            cursor = conn.execute(
                "DELETE FROM outbox WHERE state IN ('sent', 'failed') AND done_at < ?", (done_before,)
            )
            return cursor.rowcount

    async def outbox_backlog(self) -> int:
        """Number of undelivered items."""
        return await self._run(self._outbox_backlog)

    def _outbox_backlog(self) -> int:
        return cast(
            int, self._conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()[0]
        )

    # -- Slack message of an incident ------------------------------------------------------------

    async def set_slack_message(self, incident_id: int, channel: str, ts: str) -> None:
        await self._run(self._set_slack_message, incident_id, channel, ts)

    def _set_slack_message(self, incident_id: int, channel: str, ts: str) -> None:
        with self._write() as conn:
            self._require_incident(conn, incident_id)
            conn.execute(
                "INSERT INTO slack_messages (incident_id, channel, ts, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (incident_id) DO UPDATE SET channel = excluded.channel, ts = excluded.ts,"
                " updated_at = excluded.updated_at",
                (incident_id, channel, ts, self._clock()),
            )

    async def get_slack_message(self, incident_id: int) -> tuple[str, str] | None:
        return await self._run(self._get_slack_message, incident_id)

    def _get_slack_message(self, incident_id: int) -> tuple[str, str] | None:
        row = self._conn.execute(
            "SELECT channel, ts FROM slack_messages WHERE incident_id = ?", (incident_id,)
        ).fetchone()
        return None if row is None else (row["channel"], row["ts"])

    # -- locks and small state -------------------------------------------------------------------

    async def try_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take (or, for the same owner, renew) a named lock for `ttl_seconds`. A lock whose TTL has
        passed is free, whoever held it."""
        return await self._run(self._try_lock, name, owner, ttl_seconds)

    def _try_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        now = self._clock()
        with self._write() as conn:
            row = conn.execute("SELECT owner, expires_at FROM locks WHERE name = ?", (name,)).fetchone()
            if row is not None and row["owner"] != owner and row["expires_at"] > now:
                return False
            conn.execute(
                "INSERT INTO locks (name, owner, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE"
                " SET owner = excluded.owner, expires_at = excluded.expires_at",
                (name, owner, now + ttl_seconds),
            )
            return True

    async def release_lock(self, name: str, owner: str) -> None:
        """Release the lock if `owner` holds it; someone else's lock is left alone."""
        await self._run(self._release_lock, name, owner)

    def _release_lock(self, name: str, owner: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM locks WHERE name = ? AND owner = ?", (name, owner))

    async def get_kv(self, key: str) -> str | None:
        return await self._run(self._get_kv, key)

    def _get_kv(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else cast(str, row[0])

    async def set_kv(self, key: str, value: str) -> None:
        await self._run(self._set_kv, key, value)

    def _set_kv(self, key: str, value: str) -> None:
        with self._write() as conn:
            self._put_kv(conn, key, value, self._clock())

    @staticmethod
    def _put_kv(conn: sqlite3.Connection, key: str, value: str, now: float) -> None:
        conn.execute(
            "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE"
            " SET value = excluded.value, updated_at = excluded.updated_at",
            (key, value, now),
        )

    # -- diagnostics ----------------------------------------------------------------------------

    async def pragma(self, name: Literal["journal_mode", "synchronous", "foreign_keys"]) -> str:
        """Current value of a connection setting (readiness checks and tests)."""
        return await self._run(self._pragma, name)

    def _pragma(self, name: str) -> str:
        return str(self._conn.execute(f"PRAGMA {name}").fetchone()[0])


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
