"""`oom-killed`: the container's last (or current) termination reason is OOMKilled, recently.

Plan: patch the owner's memory limit of that container to limit x `oom_memory_factor` (default 1.5),
with a JSON Patch `test` of the limit as seen. No limit set: no automatic plan (the kill came from node
memory pressure, not from the container's limit).
"""

from __future__ import annotations

from bot.evidence import ContainerStatus, Evidence, Pod
from bot.model import Finding, JsonPatchOp, PatchStep, Plan, RestartPodStep, Severity, Step, WaitReadyStep
from handlers.base import (
    Settings,
    containers_with_status,
    describe_status,
    format_mebibytes,
    is_recent,
    json_pointer,
    live_pods,
    patchable_owner,
    pod_keeps_name,
    quantity_bytes,
    refs,
    template_containers,
    why_not_patchable,
)

CODE = "oom-killed"
ALERTS = ("KubePodCrashLooping", "KubeContainerOOMKilled", "KubePodNotReady", "ContainerOOMKilled")


def _oom(evidence: Evidence, status: ContainerStatus, settings: Settings) -> bool:
    for state in (status.state, status.last_state):
        if state is not None and state.state == "terminated" and state.reason == "OOMKilled":
            # An old OOM on a container Ready since is history.
            return not status.ready or is_recent(evidence, state.finished_at, settings)
    return False


def _plan(evidence: Evidence, pod: Pod, container: str, settings: Settings) -> tuple[Plan | None, str]:
    workload = patchable_owner(evidence, pod)
    if workload is None:
        return None, f"no automatic fix: {why_not_patchable(evidence, pod)}"
    # An init container (a migration, a chown) can be the one killed: its limit lives in initContainers.
    for field, index, c in template_containers(workload):
        if c.get("name") != container:
            continue
        limit = ((c.get("resources") or {}).get("limits") or {}).get("memory")
        if limit is None:
            return (
                None,
                f"no automatic fix: {container} has no memory limit (killed under node memory pressure)",
            )
        current = quantity_bytes(str(limit))
        if current is None:
            return None, f"no automatic fix: memory limit {limit!r} is not a quantity pitcrew understands"
        new = format_mebibytes(int(current * settings.oom_memory_factor))
        path = json_pointer("spec", "template", "spec", field, index, "resources", "limits", "memory")
        steps: list[Step] = [
            PatchStep(
                target=workload.ref,
                ops=(JsonPatchOp("test", path, limit), JsonPatchOp("replace", path, new)),
                description=f"raise the memory limit of {container} in {workload.kind} {workload.meta.name} "
                f"from {limit} to {new} (x{settings.oom_memory_factor:g})",
                resource_version=workload.meta.resource_version,
            )
        ]
        if pod_keeps_name(evidence, pod):
            # A StatefulSet does not replace a broken pod by itself during a rolling update.
            steps.append(
                RestartPodStep(
                    target=pod.ref, description=f"delete {pod.name} so it starts with the new limit"
                )
            )
            steps.append(WaitReadyStep(target=pod.ref, description=f"wait until {pod.name} is Ready"))
        return Plan(
            steps=tuple(steps), validation=("pods-ready", "restarts")
        ), f"memory limit {limit} -> {new}"
    return None, f"no automatic fix: container {container} not found in {workload.kind} {workload.meta.name}"


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    seen: set[tuple[str, str, str]] = set()
    for pod in live_pods(evidence):
        for container, status in containers_with_status(pod):
            if not _oom(evidence, status, settings):
                continue
            owner = patchable_owner(evidence, pod)
            key = (pod.namespace, str(owner.ref) if owner else pod.name, container.name)
            if key in seen:
                continue  # one finding (and one patch) per workload container
            seen.add(key)
            plan, note = _plan(evidence, pod, container.name, settings)
            limit = container.limits.get("memory", "none")
            findings.append(
                Finding(
                    code=CODE,
                    severity=Severity.CRITICAL if not status.ready else Severity.WARNING,
                    summary=(
                        f"{pod.name} ({container.name}) was OOMKilled: it needs more memory than "
                        f"its limit ({limit})"
                    ),
                    objects=refs(pod.ref, owner.ref if owner else None),
                    evidence=(
                        f"{pod.ref}: {describe_status(status)}",
                        f"memory limit: {limit}, request: {container.requests.get('memory', 'none')}",
                        note,
                    ),
                    plan=plan,
                )
            )
    return findings
