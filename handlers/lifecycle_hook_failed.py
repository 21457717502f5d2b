"""`lifecycle-hook-failed`: a container's postStart or preStop hook fails. Read from the kubelet's
`FailedPostStartHook` / `FailedPreStopHook` events, in its wording (pkg/kubelet/lifecycle):

    Exec lifecycle hook ([/bin/sh -c /opt/seed.sh]) for Container "app" in Pod "web-0_shop(uid)"
    failed - error: command '/bin/sh -c /opt/seed.sh' exited with 1: , message: "cp: can't stat ..."
    HTTP lifecycle hook (/hooks/drain) for Container "app" in Pod "..." failed - error: Get "...": ...

and from a container waiting with reason `PostStartHookError`. The finding names the hook (from the
pod spec: exec command, HTTP path and port, sleep) and quotes its output and exit code. A failed
postStart hook kills the container (it restarts, often into CrashLoopBackOff, which is then explained
by this finding); a failed preStop hook means the container was stopped without its graceful step.
One finding per workload, container and hook. No automatic plan.

Not a finding: hook failures older than the recent window with the container running since.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.evidence import Container, Event, Evidence, LifecycleHook, Pod
from bot.model import Finding, ObjectRef, Severity
from handlers.base import Settings, clip, describe_exit, is_recent, live_pods, owner_key, refs

CODE = "lifecycle-hook-failed"
ALERTS = ("KubePodCrashLooping", "KubePodNotReady", "KubeContainerWaiting")

REASONS = {"FailedPostStartHook": "postStart", "FailedPreStopHook": "preStop"}
HOOK_MESSAGE = re.compile(
    r'^(?P<type>Exec|HTTP|Sleep) lifecycle hook \((?P<what>.*?)\) for Container "(?P<container>[^"]+)" '
    r'in Pod "(?P<pod>[^"]+)" failed - error: (?P<error>.*?)(?:, message: "(?P<output>.*)")?\s*$',
    re.DOTALL,
)
_EXITED = re.compile(r"exited with (\d+)")


@dataclass(frozen=True)
class _Failure:
    hook: str  # "postStart" | "preStop"
    container: str
    error: str
    output: str
    event: Event | None


def describe_hook(hook: LifecycleHook | None) -> str:
    if hook is None:
        return "not in the pod spec any more"
    if hook.handler == "exec":
        return f"exec {' '.join(hook.command)}"
    if hook.handler == "httpGet":
        return f"HTTP GET {hook.path or '/'} on port {hook.port}"
    if hook.handler == "tcpSocket":
        return f"tcpSocket on port {hook.port}"
    if hook.handler == "sleep":
        return f"sleep {hook.seconds}s"
    return "no handler"


def _parse(event: Event) -> _Failure | None:
    hook = REASONS.get(event.reason)
    if hook is None:
        return None
    match = HOOK_MESSAGE.match(event.message.strip())
    if match is None:
        return _Failure(hook, "", event.message.strip(), "", event)
    output = (match["output"] or "").replace("\\n", "\n").strip()
    return _Failure(hook, match["container"], match["error"].strip().rstrip(":").strip(), output, event)


def _hook_of(container: Container | None, hook: str) -> LifecycleHook | None:
    if container is None:
        return None
    return container.post_start if hook == "postStart" else container.pre_stop


def _owner_of_missing(evidence: Evidence, namespace: str, pod_name: str) -> ObjectRef:
    """A pod that is gone (preStop runs while it terminates): its workload from the ReplicaSet or
    StatefulSet its name was made from."""
    best: ObjectRef | None = None
    for workload in evidence.workloads:
        if workload.meta.namespace != namespace or not pod_name.startswith(workload.meta.name + "-"):
            continue
        if best is None or len(workload.meta.name) > len(best.name):
            ref = workload.ref
            if workload.kind == "ReplicaSet" and workload.meta.controller is not None:
                ref = ObjectRef(workload.meta.controller.kind, workload.meta.controller.name, namespace)
            best = ref
    return best or ObjectRef("Pod", pod_name, namespace)


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    groups: dict[tuple[ObjectRef, str, str], list[tuple[ObjectRef, Pod | None, _Failure]]] = {}
    seen_pods: set[ObjectRef] = set()

    def add(owner: ObjectRef, pod_ref: ObjectRef, pod: Pod | None, failure: _Failure) -> None:
        groups.setdefault((owner, failure.container, failure.hook), []).append((pod_ref, pod, failure))

    for pod in live_pods(evidence):
        seen_pods.add(pod.ref)
        found = False
        for event in evidence.events_for(pod.ref):
            failure = _parse(event)
            if failure is None or not is_recent(evidence, event.last_seen, settings):
                continue
            if not failure.container and len(pod.spec.containers) == 1:
                failure = _Failure(failure.hook, pod.spec.containers[0].name, failure.error, "", event)
            add(owner_key(evidence, pod), pod.ref, pod, failure)
            found = True
        if found:
            continue
        for status in pod.container_statuses:
            if status.state.state == "waiting" and status.state.reason == "PostStartHookError":
                failure = _Failure("postStart", status.name, clip(status.state.message), "", None)
                add(owner_key(evidence, pod), pod.ref, pod, failure)
    # preStop hooks run while a pod terminates: its events outlive the pod object.
    for event in evidence.events:
        if event.involved.kind != "Pod" or event.reason != "FailedPreStopHook":
            continue
        ref = ObjectRef("Pod", event.involved.name, event.involved.namespace)
        if ref in seen_pods or not is_recent(evidence, event.last_seen, settings):
            continue
        failure = _parse(event)
        if failure is None:
            continue
        terminating = evidence.pod(ref.namespace or "", ref.name)  # being deleted: live_pods skips it
        if terminating is not None:
            add(owner_key(evidence, terminating), ref, terminating, failure)
        else:
            add(_owner_of_missing(evidence, ref.namespace or "", ref.name), ref, None, failure)

    findings: list[Finding] = []
    for (owner, container_name, hook), members in groups.items():
        pod_refs = list(dict.fromkeys(m[0] for m in members))
        some_pod = next((m[1] for m in members if m[1] is not None), None)
        container = some_pod.spec.container(container_name) if some_pod is not None else None
        if container is None and owner.kind != "Pod":
            workload = evidence.workload(owner.kind, owner.namespace or "", owner.name)
            if workload is not None:
                container = next((c for c in workload.template.containers if c.name == container_name), None)
        failure = members[-1][2]
        spec = describe_hook(_hook_of(container, hook))
        exit_code = _EXITED.search(failure.error)
        output = failure.output.splitlines()[-1] if failure.output else ""
        lines = [f"{hook} hook of container {container_name or '(unknown)'}: {spec}"]
        for pod_ref, member_pod, member_failure in members[:5]:
            hook_event = member_failure.event
            count = f" x{hook_event.count}" if hook_event is not None else ""
            lines.append(f"{pod_ref}: {hook} hook failed{count}: {clip(member_failure.error, 300)}")
            if member_pod is not None:
                member_status = member_pod.status_of(container_name)
                if member_status is not None:
                    exit_text = describe_exit(member_status.last_state)
                    lines.append(
                        f"  container {container_name}: {member_status.state.state}"
                        + (f" ({member_status.state.reason})" if member_status.state.reason else "")
                        + f", restarts={member_status.restart_count}"
                        + (f", last {exit_text}" if exit_text else "")
                    )
        if failure.output:
            lines += [f"hook output: {clip(x)}" for x in failure.output.splitlines()[-3:]]
        crashing = any(
            (s := m[1].status_of(container_name)) is not None and s.state.reason == "CrashLoopBackOff"
            for m in members
            if m[1] is not None
        )
        consequence = (
            "the kubelet kills the container and restarts it"
            if hook == "postStart"
            else "the container is stopped without its graceful shutdown step"
        )
        subject = (f"{owner.kind.lower()}/{owner.name}" if owner.kind != "Pod" else f"pod {owner.name}") + (
            f" ({len(pod_refs)} pods)" if len(pod_refs) > 1 else ""
        )
        detail = (f"exits {exit_code.group(1)}" if exit_code else clip(failure.error, 160)) + (
            f": {clip(output, 200)}" if output else ""
        )
        findings.append(
            Finding(
                code=CODE,
                severity=Severity.CRITICAL if crashing else Severity.WARNING,
                summary=f"{subject}: the {hook} hook of container {container_name} ({spec}) fails, {detail}; "
                f"{consequence}",
                objects=refs(*pod_refs, owner if owner.kind != "Pod" else None),
                evidence=tuple(lines),
            )
        )
    return findings
