"""The health summary's typed value (frozen dataclasses) and the limits the rules apply."""

from __future__ import annotations

import datetime
import json
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from bot.model import CheckResult, ObjectRef

if TYPE_CHECKING:
    pass


# How many restarted pods a namespace lists before "and N more".
TOP_RESTARTS = 5
# Without a previous summary, incidents and remediations of this window are shown.
DEFAULT_LOOKBACK_SECONDS = 24 * 3600.0
# Upper bound on one evidence collection, so a hung API server cannot stall a scheduled post forever.
COLLECT_TIMEOUT_SECONDS = 120.0
# Rows read from the store per query (newest first); summaries are about the recent past.
STORE_QUERY_LIMIT = 200

# Alert labels that name the object an incident is about (as kube-state-metrics labels them).
_OBJECT_LABELS = (
    "pod",
    "statefulset",
    "deployment",
    "daemonset",
    "replicaset",
    "service",
    "persistentvolumeclaim",
)

# Validation checks whose failures the namespace sections already report object by object.
# "evidence" (validation could not read everything) repeats the summary's own read errors.
COVERED_CHECKS = frozenset({"pods-ready", "endpoints", "pvcs-bound", "evidence"})

ProblemKind = Literal[
    "collection-failed",
    "pods-unreadable",
    "pod-not-ready",
    "workload-replicas",
    "service-no-endpoints",
    "pvc-not-bound",
    "check-failed",
]


def when(ts: float, timezone: str = "UTC") -> str:
    """A time as people in `timezone` read it (an unknown zone falls back to UTC)."""
    try:
        tz: datetime.tzinfo = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        tz = datetime.UTC
    return datetime.datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M %Z")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# ---------------------------------------------------------------------------------------------
# The summary value
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentLink:
    """Where an incident's Slack thread is. `permalink` works in any workspace the reader is in."""

    incident_id: int
    channel: str
    ts: str

    @property
    def permalink(self) -> str:
        return f"https://slack.com/archives/{self.channel}/p{self.ts.replace('.', '')}"


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    namespace: str | None
    detail: str  # one line, e.g. "StatefulSet prometheus: 0/1 ready (prometheus-0: CrashLoopBackOff)"
    object: ObjectRef | None = None
    incident_id: int | None = None
    link: IncidentLink | None = None


@dataclass(frozen=True)
class PodRestarts:
    pod: str
    restarts: int  # since the previous summary (or since the pod started, without one)
    total: int  # the containers' restartCount now
    last_reason: str = ""  # last termination of the most-restarted container, e.g. "Error (exit 1)"


@dataclass(frozen=True)
class WorkloadGap:
    ref: ObjectRef
    desired: int
    ready: int


@dataclass(frozen=True)
class NamespaceHealth:
    namespace: str
    readable: bool  # False when its pods could not be listed (the counts below are then unknown)
    pods_ready: int = 0
    pods_total: int = 0
    not_ready_pods: tuple[str, ...] = ()
    restarted: tuple[PodRestarts, ...] = ()  # top offenders, most restarts first
    restarted_omitted: int = 0  # restarted pods not listed in `restarted`
    workloads_not_ready: tuple[WorkloadGap, ...] = ()
    services_without_endpoints: tuple[str, ...] = ()
    pvcs_not_bound: tuple[tuple[str, str], ...] = ()  # (name, phase)
    problems: tuple[Problem, ...] = ()

    @property
    def healthy(self) -> bool:
        return self.readable and not self.problems


@dataclass(frozen=True)
class IncidentLine:
    id: int
    alertname: str
    severity: str
    namespace: str | None
    status: str
    work_state: str
    created_at: float
    updated_at: float
    link: IncidentLink | None = None
    resolved_at: float | None = None


@dataclass(frozen=True)
class RemediationLine:
    execution_id: int
    incident_id: int | None
    actor: str
    targets: tuple[str, ...]
    status: str  # running | succeeded | failed | rolled-back
    detail: str
    started_at: float
    finished_at: float | None
    link: IncidentLink | None = None


@dataclass(frozen=True)
class SummaryState:
    """What the next summary compares against: when this one was taken, and restart counts per
    `namespace/pod/container`. Kept in the store's kv per schedule."""

    at: float
    restarts: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"at": self.at, "restarts": dict(sorted(self.restarts.items()))})

    @classmethod
    def from_json(cls, text: str) -> SummaryState:
        """Raises ValueError on anything but the shape `to_json` writes."""
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("at"), int | float):
            raise ValueError("summary state: expected an object with a numeric 'at'")
        restarts = data.get("restarts", {})
        if not isinstance(restarts, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in restarts.items()
        ):
            raise ValueError("summary state: 'restarts' must map strings to integers")
        return cls(at=float(data["at"]), restarts=dict(restarts))


@dataclass(frozen=True)
class HealthSummary:
    title: str  # schedule name, or "on demand"
    namespaces: tuple[str, ...]
    generated_at: float
    since: float  # start of the reporting window (the previous summary, or a default lookback)
    has_baseline: bool  # False: no previous summary; restarts are counted since each pod started
    source: str  # "cluster" or "snapshot <dir>"
    collection_error: str | None  # the cluster (or bundle) could not be read at all
    read_errors: tuple[str, ...]  # parts that could not be read
    namespace_health: tuple[NamespaceHealth, ...]
    checks: tuple[CheckResult, ...]
    checks_note: str | None  # why validation checks are missing or incomplete
    incidents_opened: tuple[IncidentLine, ...]
    incidents_resolved: tuple[IncidentLine, ...]
    incidents_open: tuple[IncidentLine, ...]
    remediations: tuple[RemediationLine, ...]
    store_note: str | None  # the store could not be read (incidents/remediations unknown)
    state: SummaryState  # to save once this summary is delivered
    timezone: str = "UTC"  # how times are shown (the schedule's time zone)

    def when(self, ts: float) -> str:
        return when(ts, self.timezone)

    @property
    def check_problems(self) -> tuple[Problem, ...]:
        """Failed checks, except those that repeat a problem the namespace sections already list."""
        covered = COVERED_CHECKS if self.collection_error is None else frozenset()
        return tuple(
            Problem(
                kind="check-failed",
                namespace=next((o.namespace for o in c.objects if o.namespace), None),
                detail=f"check {c.name} failed: {c.detail}",
                object=c.objects[0] if c.objects else None,
            )
            for c in self.checks
            if c.status == "fail" and c.name not in covered
        )

    @property
    def problems(self) -> tuple[Problem, ...]:
        out: list[Problem] = []
        if self.collection_error is not None:
            out.append(Problem(kind="collection-failed", namespace=None, detail=self.collection_error))
        for ns in self.namespace_health:
            out.extend(ns.problems)
        out.extend(self.check_problems)
        return tuple(out)

    @property
    def complete(self) -> bool:
        return self.collection_error is None and not self.read_errors

    @property
    def glance(self) -> str:
        """The one line a person reads first: "monitoring: all healthy" / "monitoring: 2 problems"."""
        label = scope_label(self.namespaces)
        if self.collection_error is not None:
            return (
                f"{label}: unknown, the cluster could not be read ({_first_line(self.collection_error, 120)})"
            )
        count = len(self.problems)
        text = (
            f"{label}: all healthy" if count == 0 else f"{label}: {count} problem{'s' if count != 1 else ''}"
        )
        if self.read_errors:
            text += f" (incomplete: {_plural(len(self.read_errors), 'read error')})"
        return text


def scope_label(namespaces: Sequence[str]) -> str:
    if not namespaces:
        return "no namespaces"
    if len(namespaces) <= 3:
        return ", ".join(namespaces)
    return f"{len(namespaces)} namespaces"


def _first_line(text: str, limit: int) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
