"""What the services need from a store, as typed Protocols: one per aggregate, and `StoreBackend`,
all of them together. The services annotate with these, never with a backend's class, so a second
backend (PostgreSQL) is a new implementation of the same methods, not a change to them.

The docstrings here are the contract every backend keeps (ordering, all-or-nothing writes, which
rule raises what); tests/test_store_*.py check them against the SQLite backend.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from bot.model import Finding, Incident, IncidentStatus, WorkState
from bot.store.records import (
    AuditEntry,
    Backup,
    BackupKind,
    Decision,
    DecisionKind,
    Execution,
    ExecutionOutcome,
    IntakeResult,
    OutboxItem,
)

if TYPE_CHECKING:
    from bot.alertmanager import WebhookPayload


class IncidentRepository(Protocol):
    """Incidents and their alerts: intake, the work state machine, claims."""

    async def record_webhooks(self, payloads: Sequence[WebhookPayload]) -> list[IntakeResult | Exception]:
        """Group commit (added by intake for throughput): several notifications in one thread hop and
        one transaction. Each payload is all-or-nothing (a savepoint): its slot holds its result or
        the exception that rolled it back. Everything returned as a result is committed when this
        returns; if the commit itself fails, this raises and nothing of the batch is stored."""
        ...

    async def record_webhook(self, payload: WebhookPayload) -> IntakeResult:
        """Store one Alertmanager notification, all or nothing; re-deliveries change nothing."""
        ...

    async def get_incident(self, incident_id: int) -> Incident | None: ...

    async def get_incident_by_group_key(self, group_key: str) -> Incident | None: ...

    async def list_incidents(
        self,
        *,
        status: IncidentStatus | None = None,
        work_states: Collection[WorkState] | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[Incident]:
        """Newest first. `since` keeps incidents updated (created, changed, diagnosed...) at or after it."""
        ...

    async def count_incidents(self) -> dict[tuple[IncidentStatus, WorkState], int]:
        """Number of incidents per (status, work state); absent pairs are 0. (Added by intake for
        the pitcrew_incidents gauge, computed at each /metrics scrape.)"""
        ...

    async def claim_pending(self, limit: int) -> list[int]:
        """Claim up to `limit` PENDING incidents (oldest first) for this process's workers.

        A claim lasts until the incident leaves PENDING (save_diagnosis / set_work_state) or for the
        claim TTL. Claims made by a previous process (another open of the store) are not live: after a
        restart every pending incident is found again.
        """
        ...

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
        ...

    async def set_work_state(
        self,
        incident_id: int,
        new: WorkState,
        *,
        expected: Collection[WorkState] | None = None,
    ) -> bool:
        """Compare-and-set: returns False (changing nothing) if the current state is not in `expected`
        or the incident does not exist. Setting PENDING requeues the incident for diagnosis."""
        ...


class ApprovalRepository(Protocol):
    """Approval decisions and the audit log."""

    async def record_decision(
        self,
        incident_id: int,
        user_id: str,
        user_name: str,
        decision: DecisionKind,
        reason: str | None,
    ) -> None: ...

    async def list_decisions(self, incident_id: int) -> list[Decision]:
        """In the order they were made."""
        ...

    async def audit(
        self,
        actor: str,
        action: str,
        *,
        incident_id: int | None = None,
        execution_id: int | None = None,
        detail: str = "",
    ) -> None: ...

    async def list_audit(self, *, incident_id: int | None = None, limit: int = 200) -> list[AuditEntry]:
        """The latest `limit` entries, in the order they were written (oldest of them first)."""
        ...


class ExecutionRepository(Protocol):
    """Executions (one per incident, target locks) and their backups."""

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
        ...

    async def finish_execution(self, execution_id: int, outcome: ExecutionOutcome, detail: str) -> None:
        """Record the outcome and free the target locks. May be called again later (e.g. a failed
        execution that is then rolled back): the latest outcome wins."""
        ...

    async def get_execution(self, execution_id: int) -> Execution | None: ...

    async def list_executions(self, incident_id: int | None = None, limit: int = 50) -> list[Execution]:
        """Newest first; all executions, or the one of an incident."""
        ...

    async def save_backup(self, execution_id: int, target: str, kind: BackupKind, content: str) -> str:
        """Commit a backup (before the change it protects) and return its id, e.g. "b-12"."""
        ...

    async def get_backup(self, backup_id: str) -> Backup | None: ...

    async def list_backups(self, execution_id: int) -> list[Backup]:
        """In the order they were taken (restore in reverse)."""
        ...


class OutboxRepository(Protocol):
    """Queued Slack calls, and where each incident's Slack message is."""

    async def enqueue_outbox(
        self, thread_key: str, method: str, payload_json: str, *, kv: Mapping[str, str] | None = None
    ) -> int:
        """Queue one Slack call; `kv` entries are set in the same transaction (e.g. "this scheduled
        run is posted"), so a crash never leaves the message queued without the record, or the
        reverse."""
        ...

    async def enqueue_outbox_many(
        self, items: Sequence[tuple[str, str, str]], *, kv: Mapping[str, str] | None = None
    ) -> list[int]:
        """Queue several Slack calls, each (thread_key, method, payload_json), in this order, and set
        `kv`, all in one transaction: everything one incident update says is handed over at once.
        Returns the items' ids in the same order."""
        ...

    async def due_outbox(self, now: float, limit: int) -> list[OutboxItem]:
        """Items ready to send: per thread_key only the oldest undelivered one (so a thread's messages
        go out in order, and one waiting for a retry holds back those behind it), if not_before <= now."""
        ...

    async def mark_outbox_sent(self, item_id: int, response_json: str) -> None: ...

    async def mark_outbox_retry(self, item_id: int, not_before: float, error: str) -> None: ...

    async def mark_outbox_failed(self, item_id: int, error: str) -> None:
        """Give up on an item; the next item of its thread becomes due."""
        ...

    async def prune_outbox(self, done_before: float) -> int:
        """Delete delivered (or given-up) items finished before `done_before`; returns how many. The
        pending ones and the audit log are never pruned."""
        ...

    async def outbox_backlog(self) -> int:
        """Number of undelivered items."""
        ...

    async def set_slack_message(self, incident_id: int, channel: str, ts: str) -> None: ...

    async def get_slack_message(self, incident_id: int) -> tuple[str, str] | None: ...


class ScheduleRepository(Protocol):
    """Named locks with a TTL, and small key/value records."""

    async def try_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take (or, for the same owner, renew) a named lock for `ttl_seconds`. A lock whose TTL has
        passed is free, whoever held it."""
        ...

    async def release_lock(self, name: str, owner: str) -> None:
        """Release the lock if `owner` holds it; someone else's lock is left alone."""
        ...

    async def get_kv(self, key: str) -> str | None: ...

    async def set_kv(self, key: str, value: str) -> None: ...


class StoreBackend(
    IncidentRepository,
    ApprovalRepository,
    ExecutionRepository,
    OutboxRepository,
    ScheduleRepository,
    Protocol,
):
    """A whole store: every repository over one database, so that a unit of work spanning two of
    them (an outbox item and its kv records) is one transaction."""

    @property
    def is_open(self) -> bool: ...

    @property
    def path(self) -> str:
        """Where the store is, for logs (a file, or a PostgreSQL URL without password)."""
        ...

    @property
    def schema_version(self) -> int: ...

    async def ping(self) -> None:
        """One round trip to the database (readiness); raises when it does not answer."""
        ...

    async def close(self) -> None: ...
