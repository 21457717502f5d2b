"""`volume-permission-denied`: a container fails with "permission denied" / "not writable" on a path
inside one of its mounted data volumes (Prometheus TSDB lock, Grafana data dir, Loki chunks...).

Plan: patch the owning workload's pod securityContext to the uid the image expects (known images from
settings, else the owner seen on the host), restart the pod and wait for it; plus a host chown when the
volume is a hostPath / local PV and the host facts show the wrong owner (fsGroup is not applied to
those volumes, so only a chown fixes them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.evidence import (
    Container,
    ContainerStatus,
    Evidence,
    HostPathFact,
    PersistentVolume,
    Pod,
    Volume,
    VolumeMount,
    Workload,
    thaw,
)
from bot.model import (
    Finding,
    HostCommandStep,
    JsonPatchOp,
    ObjectRef,
    PatchStep,
    Plan,
    RestartPodStep,
    Severity,
    Step,
    WaitReadyStep,
)
from handlers.base import (
    Settings,
    containers_with_status,
    describe_status,
    expected_uid,
    failing_logs,
    host_for_node,
    is_failing,
    json_pointer,
    live_pods,
    patchable_owner,
    pod_keeps_name,
    refs,
    template_containers,
    why_not_patchable,
)

CODE = "volume-permission-denied"
ALERTS = (
    "KubePodCrashLooping",
    "KubePodNotReady",
    "KubeStatefulSetReplicasMismatch",
    "KubeDeploymentReplicasMismatch",
    "PrometheusDown",
    "TargetDown",
    "LokiDown",
    "GrafanaDown",
)

PERMISSION = re.compile(r"permission denied|not writable|\bEACCES\b|operation not permitted", re.IGNORECASE)
# Absolute paths in a log line: bare, or quoted as Grafana does (GF_PATHS_DATA='/var/lib/grafana').
PATH = re.compile(r"""(/[A-Za-z0-9._@%+=:,~\-]+(?:/[A-Za-z0-9._@%+=:,~\-]*)*)""")
DATA_VOLUME_KINDS = ("persistentVolumeClaim", "hostPath", "emptyDir")


@dataclass(frozen=True)
class _Hit:
    pod: Pod
    container: Container
    status: ContainerStatus
    mount: VolumeMount
    volume: Volume
    path: str  # the path from the log line
    lines: tuple[str, ...]


def _error_phrase(hit: _Hit) -> str:
    """`open /prometheus/lock: permission denied` from the line that proved it."""
    line = hit.lines[-1] if hit.lines else ""
    match = PERMISSION.search(line)
    phrase = match.group(0).lower() if match else "permission denied"
    at = line.find(hit.path)
    words = line[:at].rstrip().rsplit(None, 1) if at > 0 else []
    verb = words[-1] if words and words[-1].isalpha() else ""
    return f"{verb + ' ' if verb else ''}{hit.path}: {phrase}"


def _mount_for(container: Container, path: str) -> VolumeMount | None:
    best: VolumeMount | None = None
    for mount in container.volume_mounts:
        root = mount.mount_path.rstrip("/") or "/"
        if (path == root or path.startswith(root + "/")) and (
            best is None or len(root) > len(best.mount_path)
        ):
            best = mount
    return best


def _find_hit(
    evidence: Evidence, pod: Pod, container: Container, status: ContainerStatus, lines: tuple[str, ...]
) -> _Hit | None:
    matched: list[str] = []
    chosen: tuple[VolumeMount, Volume, str] | None = None
    for line in lines:
        if not PERMISSION.search(line):
            continue
        for candidate in PATH.findall(line):
            path = candidate.rstrip(":,.'\"")
            mount = _mount_for(container, path)
            if mount is None or mount.read_only:
                continue
            volume = pod.spec.volume(mount.name)
            if volume is None or volume.kind not in DATA_VOLUME_KINDS:
                continue
            chosen = (mount, volume, path)
            if line.strip() not in matched:
                matched.append(line.strip())
            break
    if chosen is None:
        return None
    mount, volume, path = chosen
    return _Hit(pod, container, status, mount, volume, path, tuple(matched[-3:]))


@dataclass(frozen=True)
class _Backing:
    """Where the volume lives on a node, when it is a hostPath or a local/hostPath PV."""

    ref: ObjectRef  # the PV, or the pod for a hostPath volume
    node_path: str
    nodes: tuple[str, ...]
    describe: str


def _backing(evidence: Evidence, hit: _Hit) -> tuple[_Backing | None, list[ObjectRef], str]:
    pod, volume, mount = hit.pod, hit.volume, hit.mount
    sub = "/" + mount.sub_path.strip("/") if mount.sub_path else ""
    if volume.kind == "hostPath":
        path = volume.host_path.rstrip("/") + sub
        nodes: tuple[str, ...] = (pod.node_name,) if pod.node_name else ()
        text = f"volume {volume.name} is hostPath {path} on node {pod.node_name or '?'}"
        return _Backing(pod.ref, path, nodes, text), [], text
    if volume.kind == "persistentVolumeClaim":
        pvc = evidence.pvc(pod.namespace, volume.claim_name)
        pv: PersistentVolume | None = evidence.pv_for_claim(pod.namespace, volume.claim_name)
        objs = [o.ref for o in (pvc, pv) if o is not None]
        text = f"volume {volume.name} is PVC {volume.claim_name}"
        if pv is not None:
            text += f" bound to PV {pv.meta.name}"
            if pv.path_on_node:
                pv_nodes = pv.node_names or ((pod.node_name,) if pod.node_name else ())
                path = pv.path_on_node.rstrip("/") + sub
                kind = "local" if pv.local_path else "hostPath"
                text += f" ({kind} path {path} on {', '.join(pv_nodes) or 'an unknown node'})"
                return _Backing(pv.ref, path, pv_nodes, text), objs, text
        return None, objs, text
    return None, [], f"volume {volume.name} is {volume.kind}"


def _host_fact(evidence: Evidence, host: str | None, path: str) -> HostPathFact | None:
    if host is None:
        return None
    facts = evidence.host_facts(host)
    if facts is None:
        return None
    for fact in facts.paths:
        if fact.path.rstrip("/") == path.rstrip("/"):
            return fact
    return None


def _security_context_ops(workload: Workload, uid: int, gid: int) -> tuple[list[JsonPatchOp], dict[str, Any]]:
    """`test` the value seen, then set runAsUser/runAsGroup/fsGroup/runAsNonRoot. Returns ops and
    the securityContext as it will be."""
    spec = thaw(workload.raw.get("spec", {})).get("template", {}).get("spec", {})
    seen = spec.get("securityContext")
    wanted = {"runAsUser": uid, "runAsGroup": gid, "fsGroup": gid, "runAsNonRoot": uid != 0}
    base = json_pointer("spec", "template", "spec")
    if seen is None:
        # The path is absent: pin the parent as seen so a concurrent edit of the pod spec fails the patch.
        return [
            JsonPatchOp("test", base, spec),
            JsonPatchOp("add", base + "/securityContext", wanted),
        ], wanted
    merged = {**seen, **wanted}
    return [
        JsonPatchOp("test", base + "/securityContext", seen),
        JsonPatchOp("replace", base + "/securityContext", merged),
    ], merged


def _container_ops(workload: Workload, container: str, uid: int) -> tuple[list[JsonPatchOp], list[str]]:
    """Container-level settings the pod-level patch must not collide with, and notes for the evidence.

    - the failing container's own runAsUser/runAsGroup, when they differ, would override the fix;
    - another container (typically an init container that chowns the volume) that runs as root on
      purpose (`runAsUser: 0`) would be refused by the kubelet under a pod-level `runAsNonRoot: true`:
      it keeps running as root with its own `runAsNonRoot: false`."""
    ops: list[JsonPatchOp] = []
    notes: list[str] = []
    for field, index, c in template_containers(workload):
        sc = c.get("securityContext") or {}
        base = json_pointer("spec", "template", "spec", field, index, "securityContext")
        if c.get("name") == container:
            for key in ("runAsUser", "runAsGroup"):
                if key in sc and sc[key] != uid:
                    ops += [
                        JsonPatchOp("test", f"{base}/{key}", sc[key]),
                        JsonPatchOp("replace", f"{base}/{key}", uid),
                    ]
        elif uid != 0 and sc.get("runAsUser") == 0 and "runAsNonRoot" not in sc:
            ops += [
                JsonPatchOp("test", base, sc),  # pins the whole context the add goes into
                JsonPatchOp("add", f"{base}/runAsNonRoot", False),
            ]
            notes.append(
                f"container {c.get('name')} runs as root on purpose (runAsUser: 0): it gets runAsNonRoot: "
                "false so the pod-level runAsNonRoot does not stop it"
            )
        elif field == "initContainers" and "runAsUser" not in sc:
            notes.append(
                f"note: init container {c.get('name')} sets no user; after the patch it runs as uid {uid}"
            )
    return ops, notes


def _needs_security_context(workload: Workload, container: str, uid: int) -> bool:
    sc = workload.template.security_context
    if sc.run_as_user != uid or sc.fs_group != uid:
        return True
    c = workload.template.container(container)
    return c is not None and (
        c.security_context.run_as_user not in (None, uid)
        or c.security_context.run_as_group not in (None, uid)
    )


def _finding(evidence: Evidence, hits: list[_Hit], settings: Settings) -> Finding:
    first = hits[0]
    pod, container = first.pod, first.container
    workload = patchable_owner(evidence, pod)
    backing, storage_refs, backing_text = _backing(evidence, first)
    host = None
    for node in backing.nodes if backing else ():
        host = host_for_node(evidence, node, settings)
        if host:
            break
    fact = _host_fact(evidence, host, backing.node_path) if backing else None

    uid = expected_uid(container.image, settings)
    uid_source = f"image {container.image} runs as uid {uid}" if uid is not None else ""
    if uid is None and fact is not None and fact.uid not in (None, 0):
        uid = fact.uid
        uid_source = f"the data directory on {host} is owned by uid {uid}"

    evidence_lines: list[str] = []
    for hit in hits:
        evidence_lines.append(f"{hit.pod.ref}: {describe_status(hit.status)}")
    evidence_lines += [f"log: {line}" for line in first.lines]
    evidence_lines.append(f"{first.path} is inside mount {first.mount.mount_path}; {backing_text}")
    running_as = workload.template.security_context if workload else pod.spec.security_context
    evidence_lines.append(
        "pod securityContext: "
        + (
            "none (the process runs as the image's default user)"
            if running_as.is_empty
            else f"runAsUser={running_as.run_as_user}, runAsGroup={running_as.run_as_group}, "
            f"fsGroup={running_as.fs_group}, runAsNonRoot={running_as.run_as_non_root}"
        )
    )
    if fact is not None and backing is not None:
        mode = f" mode {fact.mode:04o}" if fact.mode is not None else ""
        evidence_lines.append(f"host {host}: {backing.node_path} owned by {fact.uid}:{fact.gid}{mode}")
    if uid_source:
        evidence_lines.append(f"expected owner: {uid_source}")

    steps: list[Step] = []
    if uid is not None and workload is not None and _needs_security_context(workload, container.name, uid):
        ops, _ = _security_context_ops(workload, uid, uid)
        container_ops, notes = _container_ops(workload, container.name, uid)
        ops += container_ops
        evidence_lines += notes
        steps.append(
            PatchStep(
                target=workload.ref,
                ops=tuple(ops),
                description=(
                    f"set the pod securityContext of {workload.kind} {workload.meta.name} to "
                    f"runAsUser={uid}, runAsGroup={uid}, fsGroup={uid}, runAsNonRoot={str(uid != 0).lower()}"
                ),
                resource_version=workload.meta.resource_version,
            )
        )
    if (
        uid is not None
        and backing is not None
        and host is not None
        and fact is not None
        and (fact.uid != uid or fact.gid not in (None, uid))
    ):
        steps.append(
            HostCommandStep(
                target=backing.ref,
                host=host,
                operation="chown",
                path=backing.node_path,
                uid=uid,
                gid=uid,
                recursive=True,
                description=(
                    f"chown -R {uid}:{uid} {backing.node_path} on {host} (owned by {fact.uid}:{fact.gid})"
                ),
            )
        )
    if steps:
        for hit in hits:
            steps.append(
                RestartPodStep(
                    target=hit.pod.ref,
                    description=f"delete {hit.pod.name} so it starts with the fixed settings",
                )
            )
            if pod_keeps_name(evidence, hit.pod):
                steps.append(
                    WaitReadyStep(target=hit.pod.ref, description=f"wait until {hit.pod.name} is Ready")
                )
    elif uid is None:
        owner = (
            f"the directory on {host} is owned by root, which does not tell"
            if fact is not None and fact.uid == 0
            else "no host facts show the directory's owner"
        )
        evidence_lines.append(
            f"no automatic fix: the uid image {container.image} expects is unknown (add it to "
            f"diagnosis.image_uids) and {owner}"
        )
    elif workload is None:
        evidence_lines.append(f"no automatic fix: {why_not_patchable(evidence, pod)}")
    else:
        evidence_lines.append(
            f"no automatic fix: the pod already runs as uid {uid} with fsGroup {uid}; the volume's "
            "own permissions (or its provisioner) need a look"
        )

    names = ", ".join(sorted({h.pod.name for h in hits}))
    summary = (
        f"{names} ({container.name}) cannot write its data volume at {first.mount.mount_path} "
        f"({_error_phrase(first)}): the process does not run as the volume's owner"
        + (f" (expected uid {uid})" if uid is not None else "")
    )
    return Finding(
        code=CODE,
        severity=Severity.CRITICAL,
        summary=summary,
        objects=refs(*(h.pod.ref for h in hits), workload.ref if workload else None, *storage_refs),
        evidence=tuple(evidence_lines),
        plan=Plan(steps=tuple(steps), validation=("pods-ready", "restarts", "endpoints")) if steps else None,
    )


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    # One finding per (owner, container): replicas of one workload share the cause and the fix.
    groups: dict[tuple[str, str, str], list[_Hit]] = {}
    for pod in live_pods(evidence):
        for container, status in containers_with_status(pod):
            if not is_failing(status):
                continue
            lines = failing_logs(evidence, pod, status, settings)
            if not lines:
                continue
            hit = _find_hit(evidence, pod, container, status, lines)
            if hit is None:
                continue
            owner = patchable_owner(evidence, pod)
            key = (pod.namespace, str(owner.ref) if owner else str(pod.ref), container.name)
            groups.setdefault(key, []).append(hit)
    return [_finding(evidence, hits, settings) for _, hits in sorted(groups.items())]
