"""Plans and their targets, and the JSON patches a step sends: pure (no I/O). A patch carries the
`test` ops of the plan plus the resourceVersion of the object just backed up, so a concurrent
change aborts it instead of being clobbered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bot.model import (
    EditConfigMapStep,
    Finding,
    HostCommandStep,
    JsonPatchOp,
    PatchStep,
    Plan,
    Step,
)

if TYPE_CHECKING:
    pass


def plan_of(findings_or_plan: Plan | Sequence[Finding]) -> Plan:
    """One plan: the given one, or the steps of every finding that has an automatic plan, in order."""
    if isinstance(findings_or_plan, Plan):
        return findings_or_plan
    steps: list[Step] = []
    checks: list[str] = []
    for finding in findings_or_plan:
        if finding.plan is None:
            continue
        steps.extend(finding.plan.steps)
        checks.extend(c for c in finding.plan.validation if c not in checks)
    return Plan(steps=tuple(steps), validation=tuple(checks))


def host_target(host: str, path: str) -> str:
    return f"host:{host}:{path}"


def step_lock_target(step: Step) -> str:
    if isinstance(step, HostCommandStep):
        return host_target(step.host, step.path)
    return str(step.target)


def plan_namespaces(plan: Plan) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s.target.namespace for s in plan.steps if s.target.namespace))


def _pointer(*parts: str) -> str:
    """JSON Pointer (RFC 6901) from raw keys."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def _resolve_pointer(obj: Any, pointer: str) -> tuple[bool, Any]:
    if pointer == "":
        return True, obj
    current = obj
    for raw in pointer.split("/")[1:]:
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(current, Mapping) and key in current:
            current = current[key]
        elif isinstance(current, list) and key.isdigit() and int(key) < len(current):
            current = current[int(key)]
        else:
            return False, None
    return True, current


def _stale_tests(live: Mapping[str, Any], ops: Sequence[JsonPatchOp]) -> list[str]:
    """The plan's `test` ops that no longer hold on the live object (for a precise message; the API
    server checks them again atomically)."""
    stale = []
    for op in ops:
        if op.op != "test":
            continue
        found, value = _resolve_pointer(live, op.path)
        if not found or value != op.value:
            stale.append(op.path)
    return stale


def _resource_version(obj: Mapping[str, Any]) -> str | None:
    rv = obj.get("metadata", {}).get("resourceVersion")
    return str(rv) if rv is not None else None


def _patch_ops(step: PatchStep | EditConfigMapStep, live_rv: str | None) -> list[dict[str, Any]]:
    """The JSON Patch actually sent: pin the resourceVersion just backed up, then the plan's ops."""
    ops: list[dict[str, Any]] = []
    if live_rv is not None:
        ops.append({"op": "test", "path": "/metadata/resourceVersion", "value": live_rv})
    if isinstance(step, PatchStep):
        ops.extend(op.to_json() for op in step.ops)
    else:
        key = _pointer("data", step.key)
        ops.append({"op": "test", "path": key, "value": step.old_content})
        ops.append({"op": "replace", "path": key, "value": step.new_content})
    return ops


def _changed_since_diagnosis(step: PatchStep | EditConfigMapStep, live: Mapping[str, Any]) -> str | None:
    """Why the live object is not the one the plan was made against, or None if it still is."""
    live_rv = _resource_version(live)
    if step.resource_version is not None and live_rv != step.resource_version:
        return (
            f"object changed since diagnosis: {step.target} resourceVersion is {live_rv}, "
            f"the plan was made at {step.resource_version}"
        )
    if isinstance(step, PatchStep):
        stale = _stale_tests(live, step.ops)
        if stale:
            return f"object changed since diagnosis: {step.target} differs at {', '.join(stale)}"
    else:
        data = live.get("data") or {}
        if step.key not in data:
            return f"object changed since diagnosis: {step.target} has no key {step.key!r}"
        if data[step.key] != step.old_content:
            return f"object changed since diagnosis: {step.target} key {step.key!r} was edited"
    return None
