"""`rbac-forbidden`: a pod's service account is refused by the API server's authorizer. Read from the
pod's logs (current and previous) and from events, in the API server's own wording:

    pods is forbidden: User "system:serviceaccount:NS:SA" cannot list resource "pods" in API group ""
    in the namespace "NS"      (or: ... at the cluster scope; or: cannot get path "/metrics")

JSON logs escape the quotes (`User \\"system:serviceaccount:...\\"`); both are read. One finding per
service account: each permission it lacks (verb, resource, API group, scope), the pods whose logs show
it and their workloads, and — as a suggestion only, never applied — the `kubectl create role /
rolebinding` (or clusterrole / clusterrolebinding) that would grant exactly that. A trailing
`RBAC: role... "x" not found` is reported too: then a binding names a role that does not exist.

Not a finding: another kind of user (a node, anonymous), other refusals (`violates PodSecurity`,
`exceeded quota`), and, on a pod that is Ready and not restarting, refusals whose log timestamps are
all older than the recent window (RBAC applied a moment after the pod started, as an install does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.evidence import Evidence, Pod
from bot.model import Finding, ObjectRef, Severity
from handlers.base import Settings, clip, is_recent, live_pods, owner_key, refs

CODE = "rbac-forbidden"
ALERTS = ("KubePodCrashLooping", "KubePodNotReady")

_Q = r'\\*"'  # a quote, escaped any number of times (JSON inside JSON)
_V = r'[^"\\]'
FORBIDDEN = re.compile(
    rf"User {_Q}system:serviceaccount:(?P<ns>[^\":\\]+):(?P<sa>{_V}+){_Q} cannot (?P<verb>[\w-]+) "
    rf"(?:resource {_Q}(?P<resource>{_V}+){_Q}(?: in API group {_Q}(?P<group>{_V}*){_Q})?"
    rf"(?: in the namespace {_Q}(?P<scope>{_V}+){_Q}| (?P<cluster>at the cluster scope))?"
    rf"|path {_Q}(?P<path>{_V}+){_Q})"
)
_MISSING_ROLE = re.compile(
    rf"RBAC: (?P<kind>(?:cluster)?role)\.rbac\.authorization\.k8s\.io {_Q}(?P<name>{_V}+){_Q} not found"
)
_RFC3339 = re.compile(r"\b(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:[.,]\d+)?(Z|[+-]\d\d:?\d\d)?")
_KLOG = re.compile(r"^[IWEF](\d\d)(\d\d) (\d\d:\d\d:\d\d)")


@dataclass(frozen=True, order=True)
class Permission:
    """What the service account may not do. `scope` is a namespace, or "" for the cluster scope."""

    verb: str
    resource: str  # "pods", "pods/log", "leases"; "" for a non-resource path
    group: str = ""
    scope: str = ""
    path: str = ""  # non-resource URL, e.g. /metrics

    def describe(self) -> str:
        if self.path:
            return f"{self.verb} {self.path} (non-resource URL)"
        group = f'API group "{self.group}"' if self.group else "the core API group"
        where = f"in namespace {self.scope}" if self.scope else "at the cluster scope"
        return f"{self.verb} {self.resource} ({group}) {where}"


@dataclass
class _Account:
    namespace: str
    name: str
    permissions: set[Permission] = field(default_factory=set)
    pods: list[Pod] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    missing_roles: set[str] = field(default_factory=set)


def _line_time(line: str, now: datetime | None) -> datetime | None:
    match = _RFC3339.search(line[:80])
    if match:
        zone = match.group(3) or "Z"
        text = f"{match.group(1)}T{match.group(2)}{'+00:00' if zone == 'Z' else zone}"
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return None
    match = _KLOG.match(line)
    if match and now is not None:
        try:
            when = datetime.fromisoformat(
                f"{now.year}-{match.group(1)}-{match.group(2)}T{match.group(3)}+00:00"
            )
        except ValueError:
            return None
        return when - timedelta(days=365) if when > now + timedelta(days=1) else when
    return None


def _steady(pod: Pod, evidence: Evidence, settings: Settings) -> bool:
    """Ready, and no container restarted recently: an old refusal in its log may be history."""
    if not pod.ready:
        return False
    for status in pod.container_statuses:
        last = status.last_state
        if last is not None and is_recent(evidence, last.finished_at, settings):
            return False
    return True


def _dns_name(*parts: str) -> str:
    text = "-".join(p for p in parts if p).lower()
    text = re.sub(r"[^a-z0-9-]+", "-", text).strip("-")
    return text[:63].rstrip("-") or "pitcrew-suggested"


def suggestion(namespace: str, account: str, permissions: list[Permission]) -> list[str]:
    """The kubectl commands that would grant exactly these permissions (a suggestion, never run)."""
    out: list[str] = []
    grouped: dict[tuple[str, str, str, str], list[str]] = {}
    for p in permissions:
        grouped.setdefault((p.scope, p.resource, p.group, p.path), []).append(p.verb)
    subject = f"--serviceaccount={namespace}:{account}"
    for (scope, resource, group, path), verbs in sorted(grouped.items()):
        verb_list = ",".join(sorted(set(verbs)))
        if path:
            name = _dns_name(account, "nonresource")
            out.append(f"kubectl create clusterrole {name} --verb={verb_list} --non-resource-url={path}")
            out.append(f"kubectl create clusterrolebinding {name} --clusterrole={name} {subject}")
            continue
        base, _, sub = resource.partition("/")
        target = base + (f".{group}" if group else "") + (f"/{sub}" if sub else "")
        name = _dns_name(account, base, sub)
        if scope:
            out.append(f"kubectl create role {name} -n {scope} --verb={verb_list} --resource={target}")
            out.append(f"kubectl create rolebinding {name} -n {scope} --role={name} {subject}")
        else:
            out.append(f"kubectl create clusterrole {name} --verb={verb_list} --resource={target}")
            out.append(f"kubectl create clusterrolebinding {name} --clusterrole={name} {subject}")
    return out


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    accounts: dict[tuple[str, str], _Account] = {}

    def scan(pod: Pod, lines: tuple[str, ...], where: str, steady: bool) -> None:
        for line in lines:
            if "cannot" not in line or "system:serviceaccount:" not in line:
                continue
            for match in FORBIDDEN.finditer(line):
                if steady:
                    when = _line_time(line, evidence.observed_at)
                    if when is not None and not is_recent(evidence, when, settings):
                        continue
                account = accounts.setdefault((match["ns"], match["sa"]), _Account(match["ns"], match["sa"]))
                account.permissions.add(
                    Permission(
                        verb=match["verb"],
                        resource=match["resource"] or "",
                        group=match["group"] or "",
                        scope=match["scope"] or "",
                        path=match["path"] or "",
                    )
                )
                if pod not in account.pods:
                    account.pods.append(pod)
                quoted = f"{where}: {clip(line.strip(), 300)}"
                if quoted not in account.lines and len(account.lines) < 3:
                    account.lines.append(quoted)
                for role in _MISSING_ROLE.finditer(line):
                    account.missing_roles.add(f"{role['kind'].capitalize()} {role['name']}")

    for pod in live_pods(evidence):
        steady = _steady(pod, evidence, settings)
        for status in pod.init_container_statuses + pod.container_statuses:
            for previous in (True, False):
                log_lines = evidence.log(pod.namespace, pod.name, status.name, previous=previous)
                scan(
                    pod, log_lines, f"{pod.name}/{status.name}{' (previous)' if previous else ''} log", steady
                )
        for event in evidence.events_for(pod.ref):
            if event.type == "Warning" and is_recent(evidence, event.last_seen, settings):
                scan(pod, (event.message,), f"event {event.reason} on {pod.name}", False)

    findings: list[Finding] = []
    for (namespace, name), account in sorted(accounts.items()):
        permissions = sorted(account.permissions)
        workloads: list[ObjectRef] = []
        for pod in account.pods:
            key = owner_key(evidence, pod)
            if key.kind != "Pod" and key not in workloads:
                workloads.append(key)
        failing = [p for p in account.pods if not _steady(p, evidence, settings)]
        lines = [f"ServiceAccount {namespace}/{name} is refused:"]
        lines += [f"  {p.describe()}" for p in permissions]
        for role in sorted(account.missing_roles):
            lines.append(f"a binding of this account names {role}, which does not exist")
        lines.append(f"pods: {', '.join(p.name for p in account.pods)}")
        lines += account.lines
        lines.append("suggested grant (review first; pitcrew does not apply it):")
        lines += [f"  {cmd}" for cmd in suggestion(namespace, name, permissions)]
        first = permissions[0].describe()
        more = f" and {len(permissions) - 1} more" if len(permissions) > 1 else ""
        who = ", ".join(f"{w.kind.lower()}/{w.name}" for w in workloads[:3]) or ", ".join(
            p.name for p in account.pods[:3]
        )
        findings.append(
            Finding(
                code=CODE,
                severity=Severity.CRITICAL if failing else Severity.WARNING,
                summary=(
                    f"service account {namespace}/{name} (used by {who}) is forbidden to {first}{more}: "
                    + (
                        f"its binding names {sorted(account.missing_roles)[0]}, which does not exist"
                        if account.missing_roles
                        else "no Role or ClusterRole bound to it allows that"
                    )
                ),
                objects=refs(
                    ObjectRef("ServiceAccount", name, namespace), *(p.ref for p in account.pods), *workloads
                ),
                evidence=tuple(lines),
            )
        )
    return findings
