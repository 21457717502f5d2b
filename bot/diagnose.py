"""The diagnose verb: run every handler over the evidence, link and de-duplicate the findings, render.

- `diagnose(evidence, alerts=(), settings=...) -> Diagnosis` is pure: one handler raising becomes a
  line in `Diagnosis.handler_errors`, never a crashed diagnosis.
- `render_text(diagnosis)` reads like the runbook's analysis file (summary, each root cause with its
  evidence, the proposed fix, the equivalent kubectl commands); `render_json(diagnosis)` is the
  machine form. Both pure.
- `collect_and_diagnose(cluster, scope, ...)` is the live path; `pitcrew diagnose` is
  bot/cli/diagnose.py.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any

from bot.correlate import correlate
from bot.evidence import SCOPE_LABELS, Evidence, HostFacts, HostPathFact, Scope, paused_gc
from bot.model import (
    Alert,
    EditConfigMapStep,
    Finding,
    HostCommandStep,
    ObjectRef,
    PatchStep,
    RestartPodStep,
    Severity,
    Step,
    WaitReadyStep,
    finding_to_json,
)
from bot.redact import redact, redact_json, redact_lines
from handlers import HANDLERS
from handlers.base import HostTarget, Settings, containers_with_status, is_failing, live_pods

if TYPE_CHECKING:
    from bot.cluster import Cluster
    from bot.config import Config
    from bot.hosts import Hosts


@dataclass(frozen=True)
class Diagnosis:
    findings: tuple[Finding, ...]
    handler_errors: tuple[str, ...] = ()  # "handler <code> failed: <error>"
    collection_errors: tuple[str, ...] = ()  # what could not be read (evidence.errors)
    namespaces: tuple[str, ...] = ()
    observed_at: datetime | None = None
    pods_seen: int = 0

    @property
    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=None)

    @property
    def has_problems(self) -> bool:
        """Any finding warning or worse (the CLI's exit code 1)."""
        return any(f.severity.rank >= Severity.WARNING.rank for f in self.findings)


def settings_from_config(config: Config) -> Settings:
    return Settings(
        image_uids=config.diagnosis.image_uids,
        oom_memory_factor=config.diagnosis.oom_memory_factor,
        hosts=tuple(HostTarget(name=h.name, nodes=tuple(h.nodes)) for h in config.hosts),
    )


# ---------------------------------------------------------------------------------------------
# diagnose (pure)
# ---------------------------------------------------------------------------------------------


def _alert_relevance(
    finding: Finding, alerts: Sequence[Alert], handler_alerts: dict[str, tuple[str, ...]]
) -> int:
    """Higher when an alert names this finding's objects or its handler explains the alert."""
    score = 0
    names = {(o.kind.lower(), o.name) for o in finding.objects}
    for alert in alerts:
        if alert.name in handler_alerts.get(finding.code, ()):
            score += 1
        for label in SCOPE_LABELS:
            value = alert.labels.get(label)
            if value and (label, value) in names:
                score += 2
    return score


def diagnose(
    evidence: Evidence,
    alerts: Sequence[Alert] = (),
    *,
    settings: Settings | None = None,
    handlers: Sequence[ModuleType] = HANDLERS,
) -> Diagnosis:
    with paused_gc():
        return _diagnose(evidence, alerts, settings or Settings(), handlers)


def _diagnose(
    evidence: Evidence, alerts: Sequence[Alert], settings: Settings, handlers: Sequence[ModuleType]
) -> Diagnosis:
    findings: list[Finding] = []
    errors: list[str] = []
    for handler in handlers:
        try:
            produced = handler.diagnose(evidence, settings)
        except Exception as exc:  # isolate: one broken handler is a report line, not a lost diagnosis
            errors.append(f"handler {handler.CODE} failed: {type(exc).__name__}: {exc}")
            continue
        findings.extend(produced)
    # Evidence quotes logs, events and termination messages: never let a secret through.
    findings = [
        replace(f, summary=redact(f.summary), evidence=tuple(redact_lines(f.evidence))) for f in findings
    ]
    handler_alerts = {h.CODE: tuple(h.ALERTS) for h in handlers}
    order = {h.CODE: i for i, h in enumerate(handlers)}
    # Worst first; among equals, what the alerts point at, then root causes before their symptoms;
    # then each finding right after what causes it (bot.correlate), so a chain reads from its root.
    findings = correlate(
        findings,
        evidence,
        sort_key=lambda f: (
            -f.severity.rank,
            -_alert_relevance(f, alerts, handler_alerts),
            bool(f.caused_by),
            order.get(f.code, 99),
            [str(o) for o in f.objects],
        ),
    )
    return Diagnosis(
        findings=tuple(findings),
        handler_errors=tuple(errors),
        collection_errors=evidence.errors,
        namespaces=evidence.namespaces,
        observed_at=evidence.observed_at,
        pods_seen=len(evidence.pods),
    )


MAX_HOST_PATHS = 20  # stat calls per collection (one SSH connection each), whatever the outage size


def host_paths_to_check(evidence: Evidence, settings: Settings) -> list[tuple[str, str]]:
    """(host, path) of the node directories behind the writable volumes of failing containers
    (hostPath volumes, local/hostPath PVs, subPath included), on nodes that are configured hosts."""
    wanted: dict[tuple[str, str], None] = {}
    for pod in live_pods(evidence):
        for container, status in containers_with_status(pod):
            if not is_failing(status):
                continue
            for mount in container.volume_mounts:
                volume = pod.spec.volume(mount.name)
                if mount.read_only or volume is None:
                    continue
                root = ""
                nodes: tuple[str, ...] = (pod.node_name,) if pod.node_name else ()
                if volume.kind == "hostPath":
                    root = volume.host_path
                elif volume.kind == "persistentVolumeClaim":
                    pv = evidence.pv_for_claim(pod.namespace, volume.claim_name)
                    if pv is not None and pv.path_on_node:
                        root, nodes = pv.path_on_node, pv.node_names or nodes
                if not root:
                    continue
                path = root.rstrip("/") + ("/" + mount.sub_path.strip("/") if mount.sub_path else "")
                for node in nodes:
                    host = next((h.name for h in settings.hosts if node in h.nodes or node == h.name), None)
                    if host is not None:
                        wanted[(host, path)] = None
    return list(wanted)[:MAX_HOST_PATHS]


async def gather_host_facts(evidence: Evidence, hosts: Hosts, settings: Settings) -> Evidence:
    """`evidence` plus the owner and mode of the data directories `host_paths_to_check` names, read
    over SSH (bot.hosts); what cannot be read becomes an `errors` line, like an unreadable list."""
    from bot.hosts import HostError

    facts: dict[str, list[HostPathFact]] = {}
    errors: list[str] = []
    for host, path in host_paths_to_check(evidence, settings):
        try:
            seen = await hosts.stat(host, path)
        except HostError as exc:
            errors.append(f"cannot stat {path} on {host}: {exc}")
            continue
        facts.setdefault(host, []).append(HostPathFact(path, uid=seen.uid, gid=seen.gid, mode=seen.mode))
    if not facts and not errors:
        return evidence
    return replace(
        evidence,
        hosts=evidence.hosts + tuple(HostFacts(host, tuple(paths)) for host, paths in facts.items()),
        errors=evidence.errors + tuple(errors),
    )


async def collect_and_diagnose(
    cluster: Cluster,
    scope: Scope,
    alerts: Sequence[Alert] = (),
    *,
    settings: Settings | None = None,
    hosts: Hosts | None = None,
    keep_raw: bool = False,
) -> tuple[Evidence, Diagnosis]:
    """Live path: collect the scope's evidence (plus, with `hosts`, the owners of the data directories
    of failing pods on configured hosts, so a plan can include a chown), then diagnose it (off the
    event loop: it is CPU work). `keep_raw`: keep every object's raw form, to save a bundle."""
    evidence = await cluster.collect(scope, keep_raw=keep_raw)
    return await diagnose_collected(evidence, alerts, settings=settings, hosts=hosts)


async def diagnose_collected(
    evidence: Evidence,
    alerts: Sequence[Alert] = (),
    *,
    settings: Settings | None = None,
    hosts: Hosts | None = None,
) -> tuple[Evidence, Diagnosis]:
    """The second half of `collect_and_diagnose`, for evidence collected (or shared) already."""
    settings = settings or Settings()
    if hosts is not None and settings.hosts:
        evidence = await gather_host_facts(evidence, hosts, settings)
    diagnosis = await asyncio.to_thread(diagnose, evidence, alerts, settings=settings)
    return evidence, diagnosis


# ---------------------------------------------------------------------------------------------
# rendering (pure)
# ---------------------------------------------------------------------------------------------

_KUBECTL_KIND = {
    "StatefulSet": "statefulset",
    "Deployment": "deployment",
    "DaemonSet": "daemonset",
    "ReplicaSet": "replicaset",
    "ConfigMap": "configmap",
    "Pod": "pod",
    "PersistentVolume": "pv",
    "PersistentVolumeClaim": "pvc",
    "Service": "service",
}


def _kubectl_target(ref: ObjectRef) -> str:
    kind = _KUBECTL_KIND.get(ref.kind, ref.kind.lower())
    ns = f" -n {shlex.quote(ref.namespace)}" if ref.namespace else ""
    return f"{kind} {shlex.quote(ref.name)}{ns}"


def manual_commands(step: Step) -> list[str]:
    """The kubectl / ssh commands a person would type for this step."""
    match step:
        case PatchStep():
            ops = json.dumps([op.to_json() for op in step.ops if op.op != "test"], separators=(",", ":"))
            backup = f"{step.target.name}-{step.target.kind.lower()}-backup.yaml"
            return [
                f"kubectl get {_kubectl_target(step.target)} -o yaml > {shlex.quote(backup)}",
                f"kubectl patch {_kubectl_target(step.target)} --type=json -p {shlex.quote(ops)}",
            ]
        case EditConfigMapStep():
            backup = f"{step.target.name}-configmap-backup.yaml"
            return [
                f"kubectl get {_kubectl_target(step.target)} -o yaml > {shlex.quote(backup)}",
                f"kubectl edit {_kubectl_target(step.target)}   # key {step.key}: apply the change "
                "shown below",
            ]
        case RestartPodStep():
            return [f"kubectl delete {_kubectl_target(step.target)} --wait"]
        case WaitReadyStep():
            ns = f" -n {shlex.quote(step.target.namespace)}" if step.target.namespace else ""
            return [
                f"kubectl wait --for=condition=ready pod/{shlex.quote(step.target.name)}{ns} "
                f"--timeout={int(step.timeout_seconds)}s"
            ]
        case HostCommandStep():
            flag = "-R " if step.recursive else ""
            if step.operation == "chown":
                owner = f"{step.uid}" + (f":{step.gid}" if step.gid is not None else "")
                command = f"chown {flag}{owner} {shlex.quote(step.path)}"
            else:
                command = (
                    f"chmod {flag}{step.mode:o} {shlex.quote(step.path)}" if step.mode is not None else ""
                )
            return [
                f"ssh {shlex.quote(step.host)} {shlex.quote(command)}",
                f"ssh {shlex.quote(step.host)} 'ls -ldn {step.path}'",
            ]
    return []


def _config_diff(step: EditConfigMapStep) -> list[str]:
    diff = difflib.unified_diff(
        step.old_content.splitlines(),
        step.new_content.splitlines(),
        fromfile=f"{step.target.name}/{step.key} (now)",
        tofile=f"{step.target.name}/{step.key} (proposed)",
        lineterm="",
        n=1,
    )
    return list(diff)


def _step_line(step: Step) -> str:
    return f"[{step.action}] {step.target}: {step.description}"


def render_text(diagnosis: Diagnosis) -> str:
    out: list[str] = []
    bar = "=" * 78
    out.append(bar)
    out.append("PITCREW DIAGNOSIS — ANALYSIS AND RECOMMENDATIONS")
    out.append(bar)
    scope = ", ".join(diagnosis.namespaces) or "(all namespaces in the evidence)"
    when = f"{diagnosis.observed_at:%Y-%m-%d %H:%M:%S UTC}" if diagnosis.observed_at else "unknown"
    out.append(f"Namespaces: {scope}")
    out.append(f"Evidence as of: {when} ({diagnosis.pods_seen} pods examined)")
    out.append("")
    out.append("SUMMARY")
    out.append("-------")
    findings = diagnosis.findings
    if not findings and diagnosis.collection_errors:
        out.append("No problems found in what could be read; see below for what could not.")
    elif not findings:
        out.append("No problems found: every pod, service and volume in scope looks healthy.")
    else:
        counts = {s: sum(1 for f in findings if f.severity == s) for s in Severity}
        tally = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
        out.append(f"{len(findings)} issue(s) identified ({tally}):")
        for i, f in enumerate(findings, 1):
            cause = f"  [caused by: {', '.join(f.caused_by)}]" if f.caused_by else ""
            out.append(f"  {i}. [{f.severity.value.upper()}] {f.code}: {f.summary}{cause}")
    if diagnosis.collection_errors:
        out.append("")
        out.append("Could not read (findings may be incomplete):")
        out += [f"  - {e}" for e in diagnosis.collection_errors]
    if diagnosis.handler_errors:
        out.append("")
        out.append("Handler errors (these checks did not run):")
        out += [f"  - {e}" for e in diagnosis.handler_errors]

    for i, f in enumerate(findings, 1):
        out.append("")
        out.append(bar)
        out.append(f"ISSUE {i}: {f.code} ({f.severity.value})")
        out.append(bar)
        out.append(f"Root cause: {f.summary}")
        out.append(f"Objects: {', '.join(str(o) for o in f.objects)}")
        if f.caused_by:
            out.append(f"Caused by: {', '.join(f.caused_by)} — resolves once those are fixed.")
        out.append("")
        out.append("Evidence:")
        out += [f"  - {line}" for line in f.evidence] or ["  (none)"]
        out.append("")
        if f.plan is None or not f.plan.steps:
            out.append(
                "Proposed fix: no automatic fix"
                + (" (fix the causes above)." if f.caused_by else "; see the evidence.")
            )
            continue
        out.append("Proposed fix (applied only after approval; each change backed up first):")
        for n, step in enumerate(f.plan.steps, 1):
            out.append(f"  {n}. {_step_line(step)}")
        if f.plan.validation:
            out.append(f"  then validate: {', '.join(f.plan.validation)}")
        out.append("")
        out.append("Equivalent manual commands:")
        for step in f.plan.steps:
            out += [f"  {cmd}" for cmd in manual_commands(step)]
            if isinstance(step, EditConfigMapStep):
                out += [f"    {redact(line)}" for line in _config_diff(step)]
    out.append("")
    return "\n".join(out)


def render_json(diagnosis: Diagnosis) -> str:
    doc: dict[str, Any] = {
        # Plans quote ConfigMap contents and pod specs (test ops) exactly; what is printed is redacted.
        "findings": [redact_json(finding_to_json(f)) for f in diagnosis.findings],
        "collection_errors": list(diagnosis.collection_errors),
        "handler_errors": list(diagnosis.handler_errors),
        "namespaces": list(diagnosis.namespaces),
        "observed_at": diagnosis.observed_at.isoformat() if diagnosis.observed_at else None,
    }
    return json.dumps(doc, indent=2, sort_keys=False)


def summarize(findings: Iterable[Finding]) -> str:
    """One line: "2 critical, 1 warning" (for logs and chat)."""
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.severity.value] = counts.get(f.severity.value, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in counts.items()) or "no findings"
