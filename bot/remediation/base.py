"""What every part of remediation shares: the outcome types, the cluster interface the executor
needs (`ClusterWriter`, implemented by `bot.cluster.Cluster`), its errors, the result, the metric.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

from bot.model import (
    CheckResult,
    ObjectRef,
    Step,
    StepEvent,
)
from bot.validate import ValidationCluster

if TYPE_CHECKING:
    from bot.metrics import Counter, MetricsRegistry


Outcome = Literal["succeeded", "failed", "rolled-back", "refused"]


EXECUTION_OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)


EventSink = Callable[[StepEvent], Awaitable[None]]


Confirm = Callable[[int, Step], Awaitable[bool]]


# How often wait-ready polls the pod, and how often it reports progress while waiting.
POLL_INTERVAL_SECONDS = 1.0


PROGRESS_EVERY_SECONDS = 15.0


class ClusterWriter(Protocol):
    """The write side of `bot.cluster.Cluster`. Methods raise an exception carrying the HTTP status
    as an integer `status` attribute when the API server refuses a request (409 conflict, 422 failed
    JSON Patch `test`, 404 ...)."""

    async def read_raw(self, ref: ObjectRef) -> dict[str, Any] | None:
        """The object as the API server returns it (plain JSON), or None if it does not exist."""
        ...

    async def json_patch(
        self, ref: ObjectRef, ops: Sequence[Mapping[str, Any]], *, dry_run: bool = False
    ) -> dict[str, Any]:
        """RFC 6902 patch; with dry_run the server answers with the result without persisting it."""
        ...

    async def delete_pod(self, ref: ObjectRef) -> None: ...


class ExecutorCluster(ClusterWriter, ValidationCluster, Protocol):
    """What `execute` needs: writes, plus what validation reads."""


class StepFailed(Exception):
    """A step could not be done; the message is what the operator reads."""


class DryRunFailed(Exception):
    """The server-side dry run was refused (object changed or missing, patch invalid)."""


def api_status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


@dataclass(frozen=True)
class ExecutionResult:
    """What an execution (or a rollback) did. `refused`: it never started (e.g. the incident already
    has an execution, or a target is locked by another one); nothing was changed then."""

    execution_id: int | None
    outcome: Outcome
    detail: str
    backups: tuple[str, ...] = ()
    checks: tuple[CheckResult, ...] = ()
    events: tuple[StepEvent, ...] = field(default_factory=tuple, repr=False)


def execution_counter(registry: MetricsRegistry) -> Counter:
    """`pitcrew_executions_total{namespace, outcome}`: one count per namespace a plan touched."""
    return registry.counter(
        "pitcrew_executions_total",
        "Remediation executions by namespace and outcome (succeeded, failed, rolled-back, refused).",
        ["namespace", "outcome"],
    )
