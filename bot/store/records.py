"""The store's records and errors, the same whatever the backend: every repository returns these
typed, frozen dataclasses (never rows), and raises these errors."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from bot.model import IncidentStatus, WorkState

if TYPE_CHECKING:
    from bot.alertmanager import WebhookPayload

Synchronous = Literal["normal", "full"]
DecisionKind = Literal["approve", "reject"]
ExecutionStatus = Literal["running", "succeeded", "failed", "rolled-back"]
ExecutionOutcome = Literal["succeeded", "failed", "rolled-back"]
BackupKind = Literal["object", "host"]

# How long a worker's claim on a pending incident lasts before another claim_pending may take it
# (a worker that died without saving its diagnosis must not park the incident forever).
DEFAULT_CLAIM_TTL_SECONDS = 900.0


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


# Rules every backend applies the same way (pure).


# Work states in which pitcrew is done with an incident: a later re-fire of its group is a new incident.
WORK_DONE = frozenset(
    s.value for s in (WorkState.SUCCEEDED, WorkState.FAILED, WorkState.ROLLED_BACK, WorkState.REJECTED)
)


def group_status(payload: WebhookPayload, alert_statuses: Iterable[str]) -> IncidentStatus:
    """The incident fires while any of its alerts fires; it is resolved when all are. A truncated
    notification (truncatedAlerts > 0) does not show every alert, but its status is Alertmanager's
    for the whole group: "firing" then means some alert fires, shown or not."""
    firing = any(s == "firing" for s in alert_statuses)
    if firing or (payload.truncated_alerts > 0 and payload.status == "firing"):
        return IncidentStatus.FIRING
    return IncidentStatus.RESOLVED


def require_choice(value: str, allowed: Any, what: str) -> None:
    choices = get_args(allowed)
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}; got {value!r}")


def backup_number(backup_id: str) -> int | None:
    prefix, _, number = backup_id.partition("-")
    if prefix != "b" or not number.isdigit():
        return None
    return int(number)
