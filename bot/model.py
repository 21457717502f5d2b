"""Domain types shared across pitcrew's modules.

Everything that crosses a module boundary is one of these frozen dataclasses. JSON and YAML are
parsed into them once, at the edge (webhook, config, bundle reader, store), and turned back into
plain data only when written out (store rows, JSON output, Block Kit).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

JsonValue: TypeAlias = Any
"""A value as it stands in JSON (object, array, string, number, bool, null)."""


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Higher is worse; lets callers sort and compare severities."""
        return {"info": 0, "warning": 1, "critical": 2}[self.value]


@dataclass(frozen=True, order=True)
class ObjectRef:
    """A Kubernetes object, written `namespace/Kind/name` (cluster-scoped: `Kind/name`)."""

    kind: str
    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        if self.namespace:
            return f"{self.namespace}/{self.kind}/{self.name}"
        return f"{self.kind}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> ObjectRef:
        parts = text.split("/")
        if len(parts) == 3 and all(parts):
            return cls(kind=parts[1], name=parts[2], namespace=parts[0])
        if len(parts) == 2 and all(parts):
            return cls(kind=parts[0], name=parts[1])
        raise ValueError(f"not an object reference (namespace/Kind/name or Kind/name): {text!r}")


# ---------------------------------------------------------------------------------------------
# Plans: declarative steps a handler proposes and bot/remediation/ executes.
# ---------------------------------------------------------------------------------------------

StepAction = Literal["patch", "edit-configmap", "restart-pod", "host-command", "wait-ready"]


@dataclass(frozen=True)
class JsonPatchOp:
    """One RFC 6902 operation. `value` is absent for `remove`."""

    op: Literal["add", "remove", "replace", "test", "move", "copy"]
    path: str
    value: JsonValue = None
    from_: str | None = None

    def to_json(self) -> dict[str, JsonValue]:
        out: dict[str, JsonValue] = {"op": self.op, "path": self.path}
        if self.op in ("add", "replace", "test"):
            out["value"] = self.value
        if self.from_ is not None:
            out["from"] = self.from_
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, JsonValue]) -> JsonPatchOp:
        return cls(op=data["op"], path=data["path"], value=data.get("value"), from_=data.get("from"))


@dataclass(frozen=True)
class PatchStep:
    """JSON Patch on a workload. `ops` start with `test` ops pinning each changed path's value as
    seen at diagnosis, so a concurrent edit makes the API server reject the patch."""

    target: ObjectRef
    ops: tuple[JsonPatchOp, ...]
    description: str
    resource_version: str | None = None
    action: Literal["patch"] = "patch"


@dataclass(frozen=True)
class EditConfigMapStep:
    """Replace one key of a ConfigMap. `old_content` is the value seen at diagnosis (the executor
    refuses if it changed); `new_content` differs from it only where the handler meant to edit."""

    target: ObjectRef
    key: str
    old_content: str
    new_content: str
    description: str
    resource_version: str | None = None
    action: Literal["edit-configmap"] = "edit-configmap"


@dataclass(frozen=True)
class RestartPodStep:
    """Delete the pod so its controller recreates it with the current template and config."""

    target: ObjectRef
    description: str
    action: Literal["restart-pod"] = "restart-pod"


HostOperation = Literal["chown", "chmod"]


@dataclass(frozen=True)
class HostCommandStep:
    """A fixed host operation on a data path (never free text). `target` is the PV or pod the path
    backs; `host` is a host name from config."""

    target: ObjectRef
    host: str
    operation: HostOperation
    path: str
    description: str
    uid: int | None = None
    gid: int | None = None
    mode: int | None = None
    recursive: bool = True
    action: Literal["host-command"] = "host-command"


@dataclass(frozen=True)
class WaitReadyStep:
    """Wait until the pod (or its replacement with the same name) is Ready."""

    target: ObjectRef
    description: str
    timeout_seconds: float = 300.0
    action: Literal["wait-ready"] = "wait-ready"


Step: TypeAlias = PatchStep | EditConfigMapStep | RestartPodStep | HostCommandStep | WaitReadyStep


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    # Names of validation checks (bot/validate.py) that prove this plan worked.
    validation: tuple[str, ...] = ()


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    summary: str
    objects: tuple[ObjectRef, ...]
    evidence: tuple[str, ...] = ()
    caused_by: tuple[str, ...] = ()
    plan: Plan | None = None

    @property
    def has_automatic_plan(self) -> bool:
        return self.plan is not None and bool(self.plan.steps)


# ---------------------------------------------------------------------------------------------
# Plain-data conversion, for JSON output and the store. One place, so every writer agrees.
# ---------------------------------------------------------------------------------------------


def step_to_json(step: Step) -> dict[str, JsonValue]:
    out: dict[str, JsonValue] = {
        "action": step.action,
        "target": str(step.target),
        "description": step.description,
    }
    match step:
        case PatchStep():
            out["ops"] = [op.to_json() for op in step.ops]
            out["resource_version"] = step.resource_version
        case EditConfigMapStep():
            out.update(
                key=step.key,
                old_content=step.old_content,
                new_content=step.new_content,
                resource_version=step.resource_version,
            )
        case HostCommandStep():
            out.update(
                host=step.host,
                operation=step.operation,
                path=step.path,
                uid=step.uid,
                gid=step.gid,
                mode=step.mode,
                recursive=step.recursive,
            )
        case WaitReadyStep():
            out["timeout_seconds"] = step.timeout_seconds
        case RestartPodStep():
            pass
    return out


def step_from_json(data: Mapping[str, JsonValue]) -> Step:
    action = data["action"]
    target = ObjectRef.parse(data["target"])
    description = data.get("description", "")
    if action == "patch":
        return PatchStep(
            target=target,
            ops=tuple(JsonPatchOp.from_json(op) for op in data["ops"]),
            description=description,
            resource_version=data.get("resource_version"),
        )
    if action == "edit-configmap":
        return EditConfigMapStep(
            target=target,
            key=data["key"],
            old_content=data["old_content"],
            new_content=data["new_content"],
            description=description,
            resource_version=data.get("resource_version"),
        )
    if action == "restart-pod":
        return RestartPodStep(target=target, description=description)
    if action == "host-command":
        return HostCommandStep(
            target=target,
            host=data["host"],
            operation=data["operation"],
            path=data["path"],
            description=description,
            uid=data.get("uid"),
            gid=data.get("gid"),
            mode=data.get("mode"),
            recursive=data.get("recursive", True),
        )
    if action == "wait-ready":
        return WaitReadyStep(
            target=target, description=description, timeout_seconds=float(data.get("timeout_seconds", 300))
        )
    raise ValueError(f"unknown step action {action!r}")


def plan_to_json(plan: Plan) -> dict[str, JsonValue]:
    return {"steps": [step_to_json(s) for s in plan.steps], "validation": list(plan.validation)}


def plan_from_json(data: Mapping[str, JsonValue]) -> Plan:
    return Plan(
        steps=tuple(step_from_json(s) for s in data.get("steps", ())),
        validation=tuple(data.get("validation", ())),
    )


def finding_to_json(finding: Finding) -> dict[str, JsonValue]:
    return {
        "code": finding.code,
        "severity": finding.severity.value,
        "summary": finding.summary,
        "objects": [str(o) for o in finding.objects],
        "evidence": list(finding.evidence),
        "caused_by": list(finding.caused_by),
        "plan": plan_to_json(finding.plan) if finding.plan is not None else None,
    }


def finding_from_json(data: Mapping[str, JsonValue]) -> Finding:
    plan = data.get("plan")
    return Finding(
        code=data["code"],
        severity=Severity(data["severity"]),
        summary=data["summary"],
        objects=tuple(ObjectRef.parse(o) for o in data.get("objects", ())),
        evidence=tuple(data.get("evidence", ())),
        caused_by=tuple(data.get("caused_by", ())),
        plan=plan_from_json(plan) if plan else None,
    )


def findings_dumps(findings: tuple[Finding, ...] | list[Finding]) -> str:
    return json.dumps([finding_to_json(f) for f in findings], sort_keys=True)


def findings_loads(text: str) -> tuple[Finding, ...]:
    return tuple(finding_from_json(f) for f in json.loads(text))


# ---------------------------------------------------------------------------------------------
# Execution events: what bot/remediation/ reports, the CLI prints and Slack posts in the thread.
# ---------------------------------------------------------------------------------------------

StepPhase = Literal["started", "progress", "done", "failed", "skipped", "rolled-back"]


@dataclass(frozen=True)
class StepEvent:
    execution_id: int
    step_index: int  # 0-based; -1 for plan-level events (validation, rollback, final outcome)
    action: str
    phase: StepPhase
    detail: str
    backup_id: str | None = None
    elapsed_seconds: float | None = None


CheckStatus = Literal["pass", "warn", "fail"]


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: CheckStatus
    detail: str
    objects: tuple[ObjectRef, ...] = field(default_factory=tuple)


# ---------------------------------------------------------------------------------------------
# Alerts and incidents.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """One Alertmanager alert (webhook version 4), identified by its fingerprint."""

    fingerprint: str
    status: Literal["firing", "resolved"]
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: str  # RFC 3339 as Alertmanager sent it
    ends_at: str | None
    generator_url: str = ""

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")


# Audit actions that end an incident's diagnosis (`pitcrew history` reads the outcome from them).
AUDIT_DIAGNOSED = "diagnosed"
AUDIT_DIAGNOSIS_SKIPPED = "diagnosis skipped"  # its alerts resolved before a worker got to it
AUDIT_DIAGNOSIS_FAILED = "diagnosis failed"  # a failure retrying cannot fix (no kubeconfig, forbidden)
AUDIT_PROCESSING_FAILED = "processing-failed"  # every retry failed (e.g. the API server unreachable)


class IncidentStatus(enum.StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class WorkState(enum.StrEnum):
    """Where pitcrew is with an incident, independent of whether its alerts still fire."""

    PENDING = "pending"  # stored, waiting for a diagnosis worker
    DIAGNOSED = "diagnosed"  # findings stored; waiting for approval if a plan exists
    REJECTED = "rejected"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled-back"


@dataclass(frozen=True)
class Incident:
    id: int
    group_key: str
    status: IncidentStatus
    work_state: WorkState
    receiver: str
    group_labels: Mapping[str, str]
    common_labels: Mapping[str, str]
    common_annotations: Mapping[str, str]
    external_url: str
    alerts: tuple[Alert, ...]
    created_at: float  # unix seconds
    updated_at: float
    findings: tuple[Finding, ...] = ()
    diagnosis_error: str | None = None
    dry_run_diff: str | None = None
    # When the incident last became resolved (unix seconds); None while it fires. Unlike updated_at,
    # later activity (a diagnosis, a rollback) does not move it.
    resolved_at: float | None = None

    @property
    def alertname(self) -> str:
        return self.common_labels.get("alertname") or self.group_labels.get("alertname", "")

    @property
    def severity(self) -> str:
        return self.common_labels.get("severity", "")

    @property
    def namespace(self) -> str | None:
        return self.common_labels.get("namespace")
