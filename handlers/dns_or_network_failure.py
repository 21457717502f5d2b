"""`dns-or-network-failure`: a failing pod's log says it cannot reach something: name resolution fails
(Go `lookup db on 10.96.0.10:53: no such host`, Java `UnknownHostException`, Node `getaddrinfo
ENOTFOUND`, libpq `could not translate host name`, busybox `can't resolve`) or a connection is refused
or times out (`dial tcp 10.96.4.2:5432: connect: connection refused`, `ECONNREFUSED`, `Connection
refused: redis/10.96.1.7:6379`, `Error 111 connecting to redis:6379`).

Names the target and what explains it, from the evidence: the target Service does not exist; a
NetworkPolicy selecting the pod allows no egress to it (or no DNS); one selecting the target's pods
allows no ingress from the pod; the Service has no ready endpoints (then `service-no-endpoints` is the
cause: the Service is in the finding's objects); or nothing in the evidence explains it.

Only pods in trouble count (a container not ready after restarts, crashing, or an init container
stuck): a healthy pod that logged a refused connection while its dependency started is not a finding.
Namespace labels are not collected, so a namespaceSelector other than `kubernetes.io/metadata.name`
is read as allowing (never a claimed block that cannot be proven). No automatic plan."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from bot.evidence import (
    ContainerStatus,
    Evidence,
    LabelSelector,
    NetworkPolicy,
    NetworkPolicyPeer,
    NetworkPolicyRule,
    Pod,
    Service,
)
from bot.model import Finding, ObjectRef, Severity
from handlers.base import Settings, clip, failing_logs, refs

CODE = "dns-or-network-failure"
ALERTS = ("KubePodCrashLooping", "KubePodNotReady", "KubeDNSDown", "CoreDNSDown")

_HOST = r"[A-Za-z0-9](?:[\w.-]*[A-Za-z0-9])?"
_DNS = [
    re.compile(rf"lookup (?P<host>{_HOST})(?: on \S+)?: (?:no such host|server misbehaving|i/o timeout)"),
    re.compile(rf"UnknownHostException: (?P<host>{_HOST})"),
    re.compile(rf"getaddrinfo (?:ENOTFOUND|EAI_AGAIN) (?P<host>{_HOST})"),
    re.compile(rf"could not translate host name \"(?P<host>{_HOST})\" to address"),
    re.compile(rf"Failed to resolve '(?P<host>{_HOST})'"),
    re.compile(rf"can't resolve '(?P<host>{_HOST})'"),
    re.compile(rf"server can't find (?P<host>{_HOST}): NXDOMAIN"),
    re.compile(rf"(?P<host>{_HOST}): (?:Name or service not known|Temporary failure in name resolution)"),
    re.compile(
        r"(?P<host>)(?:Name or service not known|Temporary failure in name resolution|nodename nor servname)"
    ),
]
_CONNECT_WORDS = re.compile(
    r"connection refused|ECONNREFUSED|ETIMEDOUT|EHOSTUNREACH|i/o timeout|connection timed out|"
    r"no route to host|timed out connecting|Connect timed out|Error 111 connecting",
    re.IGNORECASE,
)
_CONNECT = [
    re.compile(r"dial tcp (?P<host>[\w.\-]+|\[[0-9a-f:]+\]):(?P<port>\d+)"),
    re.compile(r"connect (?:ECONNREFUSED|ETIMEDOUT|EHOSTUNREACH) (?P<host>[\w.\-]+):(?P<port>\d+)"),
    re.compile(rf"Connection refused: (?P<host>{_HOST})/[\d.]+:(?P<port>\d+)"),
    re.compile(rf"Connect to (?P<host>{_HOST}):(?P<port>\d+) \["),
    re.compile(rf"connecting to (?P<host>{_HOST}):(?P<port>\d+)"),
    re.compile(rf"server at \"(?P<host>{_HOST})\" \([\d.]+\), port (?P<port>\d+)"),
    re.compile(
        rf"on host \"(?P<host>{_HOST})\" \([\d.]+\) and accepting\s+TCP/IP connections on port (?P<port>\d+)"
    ),
    re.compile(rf"host='(?P<host>{_HOST})', port=(?P<port>\d+)"),
    # Last resort: host:port, the host a name (starts with a letter) or a dotted IP, never a timestamp.
    re.compile(
        r"(?<![\w.:-])(?P<host>[A-Za-z][\w.-]*[A-Za-z0-9]|\d{1,3}(?:\.\d{1,3}){3}):(?P<port>\d{2,5})\b"
    ),
]
_TAIL = 30  # a failure line counts when it is among the newest lines of the failing instance
_STUCK_INIT_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class _Failure:
    kind: str  # "dns" | "connect"
    host: str
    port: int | None
    line: str


def _parse(line: str) -> _Failure | None:
    for pattern in _DNS:
        m = pattern.search(line)
        if m:
            host, port = m["host"], None
            if not host:  # "Error -2 connecting to redis-cache:6379. Name or service not known."
                for named in _CONNECT:
                    found = named.search(line)
                    if found:
                        host, port = found["host"].strip("[]"), int(found["port"])
                        break
            return _Failure("dns", host, port, clip(line))
    if _CONNECT_WORDS.search(line):
        for pattern in _CONNECT:
            m = pattern.search(line)
            if m:
                return _Failure("connect", m["host"].strip("[]"), int(m["port"]), clip(line))
        return _Failure("connect", "", None, clip(line))
    return None


def _in_trouble(evidence: Evidence, pod: Pod, status: ContainerStatus) -> bool:
    state = status.state
    if status.init:
        if state.state == "running" and state.started_at is not None and evidence.observed_at is not None:
            return (evidence.observed_at - state.started_at).total_seconds() > _STUCK_INIT_SECONDS
        return (state.state == "terminated" and state.exit_code not in (0, None)) or (
            state.state == "waiting" and state.reason not in ("", "PodInitializing")
        )
    if status.ready:
        return False
    if state.state == "waiting" and state.reason in ("ContainerCreating", "PodInitializing", ""):
        return status.restart_count > 0
    return status.restart_count > 0 or state.state in ("terminated", "running")


def _loopback(host: str, pod: Pod) -> bool:
    if not host:
        return False
    if host.lower() in ("localhost", "0.0.0.0", "::1") or host == pod.pod_ip:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _service_for(evidence: Evidence, pod: Pod, host: str) -> tuple[str, str] | None:
    """(namespace, service) a host name or cluster IP points at, when it is one of the cluster's."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        for svc in evidence.services:
            if svc.cluster_ip == host:
                return svc.meta.namespace or "", svc.meta.name
        return None
    name = host.lower().rstrip(".")
    for suffix in (".svc.cluster.local", ".svc"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    parts = name.split(".")
    if len(parts) == 1:
        return pod.namespace, parts[0]
    if len(parts) == 2 and parts[1] in _known_namespaces(evidence):
        return parts[1], parts[0]
    if len(parts) == 3 and parts[2] in _known_namespaces(evidence):  # pod-0.governing-svc.ns
        return parts[2], parts[1]
    return None


def _known_namespaces(evidence: Evidence) -> set[str]:
    return (
        set(evidence.namespaces)
        | {p.namespace for p in evidence.pods}
        | {s.meta.namespace or "" for s in evidence.services}
    )


def _ns_selector_matches(selector: LabelSelector | None, namespace: str) -> bool:
    """Whether a namespaceSelector selects `namespace`. Only `kubernetes.io/metadata.name` is known
    of a namespace's labels; any other key cannot be judged and is read as matching."""
    if selector is None:
        return True
    keys = set(selector.match_labels) | {r.key for r in selector.match_expressions}
    if keys - {"kubernetes.io/metadata.name"}:
        return True
    return selector.matches({"kubernetes.io/metadata.name": namespace})


def _peer_allows(
    peer: NetworkPolicyPeer, policy_ns: str, namespace: str, labels: Iterable[dict[str, str]], ips: list[str]
) -> bool:
    if peer.ip_block:
        if not ips:
            return True  # cannot prove it does not cover the target
        try:
            net = ipaddress.ip_network(peer.ip_block, strict=False)
            excluded = [ipaddress.ip_network(x, strict=False) for x in peer.ip_block_except]
        except ValueError:
            return True
        return any(
            ipaddress.ip_address(ip) in net and not any(ipaddress.ip_address(ip) in x for x in excluded)
            for ip in ips
        )
    if peer.pod_selector is None and peer.namespace_selector is None:
        return False
    if peer.namespace_selector is None:
        if namespace != policy_ns:
            return False
    elif not _ns_selector_matches(peer.namespace_selector, namespace):
        return False
    if peer.pod_selector is None:
        return True
    selector = peer.pod_selector
    return any(selector.matches(lbls) for lbls in labels)


def _ports_allow(rule: NetworkPolicyRule, ports: set[int | None]) -> bool:
    if not rule.ports or None in ports:
        return True
    for p in rule.ports:
        if p.port is None or isinstance(p.port, str):
            return True  # every port, or a named port this evidence cannot resolve
        for port in ports:
            if port is not None and (
                port == p.port or (p.end_port is not None and p.port <= port <= p.end_port)
            ):
                return True
    return False


def _rules_allow(
    rules: tuple[NetworkPolicyRule, ...],
    policy_ns: str,
    namespace: str,
    labels: list[dict[str, str]],
    ips: list[str],
    ports: set[int | None],
) -> bool:
    for rule in rules:
        if not _ports_allow(rule, ports):
            continue
        if not rule.peers or any(_peer_allows(p, policy_ns, namespace, labels, ips) for p in rule.peers):
            return True
    return False


def _selecting(evidence: Evidence, pod: Pod, direction: str) -> list[NetworkPolicy]:
    return [
        np
        for np in evidence.network_policies
        if np.meta.namespace == pod.namespace
        and direction in np.policy_types
        and np.pod_selector.matches(pod.meta.labels)
    ]


def _target_ports(service: Service, port: int | None) -> set[int | None]:
    """The pod ports a connection to `port` lands on (NetworkPolicy judges pod ports, after DNAT)."""
    out: set[int | None] = set()
    for sp in service.ports:
        if port is None or sp.port == port:
            target = sp.target_port if sp.target_port is not None else sp.port
            out.add(target if isinstance(target, int) else None)
    return out or {port}


def _explain(evidence: Evidence, pod: Pod, failure: _Failure) -> tuple[str, list[ObjectRef]]:
    """What the evidence says about a failure: (explanation, objects it names)."""
    target = _service_for(evidence, pod, failure.host) if failure.host else None
    dns_policies = _selecting(evidence, pod, "Egress")
    if failure.kind == "dns":
        dns_ok = not dns_policies or any(
            _rules_allow(
                np.egress, np.meta.namespace or "", "kube-system", [{"k8s-app": "kube-dns"}], [], {53}
            )
            for np in dns_policies
        )
        if not dns_ok:
            names = ", ".join(np.meta.name for np in dns_policies)
            return (
                f"NetworkPolicy {names} selects {pod.name} and allows no egress to DNS (port 53 of kube-dns)",
                [np.ref for np in dns_policies],
            )
    if target is None:
        return ("", [])
    namespace, name = target
    ref = ObjectRef("Service", name, namespace)
    service = evidence.service(namespace, name)
    if service is None:
        listed = not evidence.unlisted("services", namespace) and any(
            s.meta.namespace == namespace for s in evidence.services
        )
        if listed:
            return (f"Service {name} does not exist in namespace {namespace}", [ref])
        return ("", [])
    if (
        failure.port is not None
        and service.ports
        and all(p.port != failure.port for p in service.ports)
        and (failure.host == service.cluster_ip or not failure.host.replace(".", "").isdigit())
    ):
        have = ", ".join(str(p.port) for p in service.ports)
        return (f"Service {name} has no port {failure.port} (it has {have})", [ref])
    backends = [p for p in evidence.pods_selected_by(namespace, service.selector) if not p.meta.deleting]
    labels = [dict(p.meta.labels) for p in backends] or [dict(service.selector)]
    ips = [p.pod_ip for p in backends if p.pod_ip]
    ports = _target_ports(service, failure.port)
    egress = _selecting(evidence, pod, "Egress")
    if egress and not any(
        _rules_allow(np.egress, np.meta.namespace or "", namespace, labels, ips, ports) for np in egress
    ):
        names = ", ".join(np.meta.name for np in egress)
        return (
            f"NetworkPolicy {names} selects {pod.name} and allows no egress to Service {name} ({namespace})",
            [ref, *(np.ref for np in egress)],
        )
    if backends:
        ingress = [
            np
            for np in evidence.network_policies
            if np.meta.namespace == namespace
            and "Ingress" in np.policy_types
            and any(np.pod_selector.matches(b.meta.labels) for b in backends)
        ]
        source = [dict(pod.meta.labels)]
        source_ips = [pod.pod_ip] if pod.pod_ip else []
        if ingress and not any(
            _rules_allow(np.ingress, namespace, pod.namespace, source, source_ips, ports) for np in ingress
        ):
            names = ", ".join(np.meta.name for np in ingress)
            return (
                f"NetworkPolicy {names} selects the pods of Service {name} and allows no ingress "
                f"from {pod.name}",
                [ref, *(np.ref for np in ingress)],
            )
    endpoints = evidence.endpoints_for(namespace, name)
    if service.selector and endpoints is not None and not endpoints.ready:
        return (f"Service {name} has no ready endpoints", [ref])
    if failure.kind == "dns":
        return (
            f"Service {name} exists, yet its name does not resolve: is cluster DNS (CoreDNS) healthy?",
            [ref],
        )
    # Ready endpoints and nothing in the way: the evidence does not explain it (crash-loop quotes it).
    return ("", [])


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    grouped: dict[
        tuple[str, str, str], tuple[list[Pod], _Failure, str, list[ObjectRef], ObjectRef | None]
    ] = {}
    for pod in evidence.pods:
        if pod.meta.deleting or pod.phase == "Succeeded":
            continue
        for status in pod.init_container_statuses + pod.container_statuses:
            if not _in_trouble(evidence, pod, status):
                continue
            lines = [x for x in failing_logs(evidence, pod, status, settings) if x.strip()][-_TAIL:]
            failure = next((f for f in map(_parse, reversed(lines)) if f is not None), None)
            if failure is None or (failure.kind == "connect" and not failure.host):
                continue
            if _loopback(failure.host, pod):
                continue  # the pod's own process (a sidecar, a port not up yet): not the network
            explanation, objects = _explain(evidence, pod, failure)
            if not explanation:
                continue  # nothing in the evidence says why: the generic findings quote the line
            owner = evidence.owning_workload(pod)
            key = (
                pod.namespace,
                owner.ref.name if owner else pod.name,
                f"{failure.kind}:{failure.host}:{failure.port}",
            )
            entry = grouped.get(key)
            if entry is None:
                grouped[key] = ([pod], failure, explanation, objects, owner.ref if owner else None)
            elif pod not in entry[0]:
                entry[0].append(pod)
            break
    findings: list[Finding] = []
    for _key, (pods, failure, explanation, objects, top) in sorted(grouped.items()):
        target = failure.host + (f":{failure.port}" if failure.port is not None else "")
        what = "cannot resolve" if failure.kind == "dns" else "cannot connect to"
        who = f"{top.kind} {top.name}" if top is not None else f"pod {pods[0].name}"
        count = f" ({len(pods)} pods)" if len(pods) > 1 else ""
        lines = [f"pod {pods[0].name} log: {failure.line}"]
        lines.append(explanation)
        findings.append(
            Finding(
                code=CODE,
                severity=Severity.WARNING,
                summary=f"{who}{count} {what} {target or 'a name'}"
                + (f": {explanation}" if explanation else ""),
                objects=refs(top, *(p.ref for p in pods), *objects),
                evidence=tuple(lines),
            )
        )
    return findings
