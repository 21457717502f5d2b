"""Validation: the seed's validate script as checks, each pass / warn / fail with a one-line detail.

Checks (names are what handlers list in `Plan.validation`; `checks=None` runs them all):
- `pods-ready`       every pod in the namespaces is Ready (completed pods aside)
- `restarts`         no container restarted since the fix (without a fix time: warns on many restarts)
- `endpoints`        every Service with a selector has ready endpoints
- `pvcs-bound`       every PersistentVolumeClaim is Bound
- `http-health`      Prometheus /-/healthy and /-/ready, Loki /ready, Grafana /api/health
- `dns`              the Services resolve (only when running in a cluster; warns otherwise)
- `logs`             no new error lines in container logs since the fix (warns: errors may be benign)
- `prometheus-up`    Prometheus `up` query: fails if any target is down
- `loki-query`       Loki query_range for each namespace answers
- `grafana-datasources`  each Grafana datasource's health (only when a Grafana token is configured)

HTTP goes to the direct URLs in `validation.*_url` when set, else through the API server's service
proxy to the Service named like the component in the namespaces. Exit codes of `pitcrew validate`
are the seed's: 0 when everything passes or warns, 1 when anything fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import aiohttp

from bot.evidence import Evidence, Pod, Scope, Service
from bot.model import CheckResult, CheckStatus, ObjectRef

if TYPE_CHECKING:
    from bot.config import Config

CHECKS: tuple[str, ...] = (
    "pods-ready",
    "restarts",
    "endpoints",
    "pvcs-bound",
    "http-health",
    "dns",
    "logs",
    "prometheus-up",
    "loki-query",
    "grafana-datasources",
)

Component = Literal["prometheus", "loki", "grafana"]
HEALTH_PATHS: tuple[tuple[Component, str], ...] = (
    ("prometheus", "/-/healthy"),
    ("prometheus", "/-/ready"),
    ("loki", "/ready"),
    ("grafana", "/api/health"),
)
# Lines that are errors by the conventions of the stack's own logs (logfmt, JSON, klog, Go panics).
ERROR_LINE = re.compile(
    r"""level=(error|fatal|panic)\b|"level"\s*:\s*"(error|fatal|panic)"|^\s*[EF]\d{4}\s|\b(ERROR|FATAL)\b|^panic:"""
)
# What the cluster checks judge; failing to list these fails validation.
_JUDGED = ("pods ", "services ", "endpoints ", "persistentvolumeclaims ")
RESTARTS_WARN_AT = 3
LOG_WINDOW_WITHOUT_FIX_SECONDS = 300
MAX_LOG_CONTAINERS = 50
DNS_TIMEOUT_SECONDS = 5.0


class ValidationCluster(Protocol):
    """What validation reads from the cluster (implemented by `bot.cluster.Cluster`)."""

    async def collect(self, scope: Scope) -> Evidence: ...

    async def read_log_since(
        self, namespace: str, pod: str, container: str, *, since_seconds: int
    ) -> tuple[str, ...]: ...

    async def service_proxy_get(
        self,
        namespace: str,
        service: str,
        port: int | str,
        path: str,
        params: Mapping[str, str] | None = None,
    ) -> tuple[int, str]: ...


@dataclass(frozen=True)
class HttpAnswer:
    status: int | None  # None: not reached
    text: str
    via: str  # the URL or "service proxy monitoring/prometheus:9090"
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def describe(self) -> str:
        if self.status is None:
            return f"unreachable via {self.via}: {self.error}"
        first_line = self.text.strip().splitlines()[0][:120] if self.text.strip() else ""
        return f"HTTP {self.status}" + (f" {first_line}" if first_line else "")


def _result(name: str, status: CheckStatus, detail: str, objects: Iterable[ObjectRef] = ()) -> CheckResult:
    return CheckResult(name=name, status=status, detail=detail, objects=tuple(objects))


class _Context:
    """Everything a check may need, fetched once per validation."""

    def __init__(
        self,
        namespaces: Sequence[str],
        evidence: Evidence,
        cluster: ValidationCluster,
        config: Config,
        since: float | None,
        session: aiohttp.ClientSession,
        focus: Sequence[ObjectRef] = (),
    ) -> None:
        self.namespaces = tuple(namespaces)
        self.evidence = evidence
        self.cluster = cluster
        self.config = config
        self.since = since
        self.session = session
        self.focus = tuple(focus)
        self.focus_pods = focus_pods(evidence, focus) if focus else None

    def direct_url(self, component: Component) -> str | None:
        url: str | None = getattr(self.config.validation, f"{component}_url")
        return url.rstrip("/") if url else None

    def service_for(self, component: Component) -> tuple[Service, int | str] | None:
        """The Service a component is reached through: named exactly like it, else containing it."""
        candidates = [s for s in self.evidence.services if (s.meta.namespace or "") in self.namespaces]
        exact = [s for s in candidates if s.meta.name == component]
        loose = [s for s in candidates if component in s.meta.name and not s.meta.name.endswith("-headless")]
        for service in exact + loose:
            if service.ports:
                named = [p for p in service.ports if p.name in ("http", "web", "http-web", "service")]
                return service, (named or list(service.ports))[0].port
        return None

    async def http_get(
        self,
        component: Component,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        token: str | None = None,
    ) -> HttpAnswer:
        direct = self.direct_url(component)
        if direct is not None:
            url = direct + path
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            try:
                async with self.session.get(url, params=params, headers=headers) as response:
                    return HttpAnswer(response.status, await response.text(errors="replace"), url)
            except (aiohttp.ClientError, TimeoutError, UnicodeError) as exc:
                return HttpAnswer(None, "", url, error=str(exc) or type(exc).__name__)
        found = self.service_for(component)
        if found is None:
            where = ", ".join(self.namespaces)
            return HttpAnswer(
                None,
                "",
                "nothing",
                error=f"no validation.{component}_url and no {component} Service in {where}",
            )
        service, port = found
        via = f"service proxy {service.meta.namespace}/{service.meta.name}:{port}"
        try:
            status, text = await self.cluster.service_proxy_get(
                service.meta.namespace or "", service.meta.name, port, path, params
            )
        except Exception as exc:
            return HttpAnswer(None, "", via, error=str(exc))
        return HttpAnswer(status, text, via)


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------


def focus_pods(evidence: Evidence, focus: Sequence[ObjectRef]) -> set[tuple[str, str]]:
    """(namespace, name) of the pods a change touched: pods named in `focus`, pods of focused
    workloads (by selector, so a recreated pod still counts), pods mounting a focused ConfigMap."""
    wanted: set[tuple[str, str]] = set()
    for ref in focus:
        ns = ref.namespace or ""
        if ref.kind == "Pod":
            wanted.add((ns, ref.name))
        elif ref.kind in ("StatefulSet", "Deployment", "DaemonSet", "ReplicaSet"):
            workload = evidence.workload(ref.kind, ns, ref.name)
            if workload is not None:
                wanted.update((ns, p.name) for p in evidence.pods_selected_by(ns, workload.selector))
        elif ref.kind == "ConfigMap":
            for pod in evidence.pods_in(ns):
                spec = pod.spec
                mounts = any(v.config_map == ref.name for v in spec.volumes)
                env = any(
                    r.kind == "ConfigMap" and r.name == ref.name
                    for c in spec.containers + spec.init_containers
                    for r in c.env_refs
                )
                if mounts or env:
                    wanted.add((ns, pod.name))
    return wanted


def _pods(ctx: _Context) -> list[Pod]:
    pods = [p for ns in ctx.namespaces for p in ctx.evidence.pods_in(ns) if p.phase not in ("Succeeded",)]
    if ctx.focus_pods is not None:
        pods = [p for p in pods if (p.namespace, p.name) in ctx.focus_pods]
    return pods


def _not_ready_reason(pod: Pod) -> str:
    for status in pod.container_statuses:
        if not status.ready and status.state.reason:
            return status.state.reason
    return pod.phase or "not Ready"


async def check_pods_ready(ctx: _Context) -> list[CheckResult]:
    pods = _pods(ctx)
    # A pod the change restarted that has not come back is the worst case, not "nothing to check".
    missing = [
        ref
        for ref in ctx.focus
        if ref.kind == "Pod" and ctx.evidence.pod(ref.namespace or "", ref.name) is None
    ]
    if missing:
        names = ", ".join(ref.name for ref in missing)
        return [_result("pods-ready", "fail", f"pods not found after the change: {names}", missing)]
    if not pods:
        return [_result("pods-ready", "warn", f"no pods in {', '.join(ctx.namespaces)}")]
    not_ready = [p for p in pods if not p.ready or p.meta.deleting]
    if not_ready:
        names = ", ".join(f"{p.name} ({_not_ready_reason(p)})" for p in not_ready[:10])
        return [
            _result(
                "pods-ready",
                "fail",
                f"{len(not_ready)} of {len(pods)} pods not Ready: {names}",
                (p.ref for p in not_ready),
            )
        ]
    return [_result("pods-ready", "pass", f"{len(pods)} pods Ready")]


async def check_restarts(ctx: _Context) -> list[CheckResult]:
    pods = _pods(ctx)
    if ctx.since is not None:
        since = datetime.fromtimestamp(ctx.since, tz=UTC)
        restarted = []
        for pod in pods:
            for status in pod.container_statuses:
                finished = status.last_state.finished_at if status.last_state else None
                if finished is not None and finished.astimezone(UTC) > since:
                    code = status.last_state.exit_code if status.last_state else None
                    restarted.append((pod, f"{pod.name}/{status.name} (exit {code})"))
        if restarted:
            return [
                _result(
                    "restarts",
                    "fail",
                    f"restarted since the fix: {', '.join(t for _, t in restarted[:10])}",
                    (p.ref for p, _ in restarted),
                )
            ]
        return [_result("restarts", "pass", f"no container restarted since the fix ({len(pods)} pods)")]
    many = [
        (pod, f"{pod.name}/{s.name} ({s.restart_count})")
        for pod in pods
        for s in pod.container_statuses
        if s.restart_count >= RESTARTS_WARN_AT
    ]
    if many:
        return [
            _result(
                "restarts",
                "warn",
                f"high restart counts: {', '.join(t for _, t in many[:10])}",
                (p.ref for p, _ in many),
            )
        ]
    return [_result("restarts", "pass", f"restart counts below {RESTARTS_WARN_AT} ({len(pods)} pods)")]


async def check_endpoints(ctx: _Context) -> list[CheckResult]:
    services = [s for s in ctx.evidence.services if (s.meta.namespace or "") in ctx.namespaces and s.selector]
    if ctx.focus_pods is not None:
        # Only the Services in front of the pods the change touched.
        services = [
            s
            for s in services
            if any(
                (p.namespace, p.name) in ctx.focus_pods
                for p in ctx.evidence.pods_selected_by(s.meta.namespace or "", s.selector)
            )
        ]
    if not services:
        return [_result("endpoints", "warn", f"no Services with selectors in {', '.join(ctx.namespaces)}")]
    empty = []
    for service in services:
        endpoints = ctx.evidence.endpoints_for(service.meta.namespace or "", service.meta.name)
        if endpoints is None or not endpoints.ready:
            empty.append(service)
    if empty:
        names = ", ".join(s.meta.name for s in empty)
        return [_result("endpoints", "fail", f"no ready endpoints: {names}", (s.ref for s in empty))]
    return [_result("endpoints", "pass", f"{len(services)} Services have ready endpoints")]


async def check_pvcs_bound(ctx: _Context) -> list[CheckResult]:
    pvcs = [c for c in ctx.evidence.pvcs if (c.meta.namespace or "") in ctx.namespaces]
    if not pvcs:
        return [_result("pvcs-bound", "pass", "no PersistentVolumeClaims")]
    unbound = [c for c in pvcs if c.phase != "Bound"]
    if unbound:
        names = ", ".join(f"{c.meta.name} ({c.phase or 'no phase'})" for c in unbound)
        return [_result("pvcs-bound", "fail", f"not Bound: {names}", (c.ref for c in unbound))]
    return [_result("pvcs-bound", "pass", f"{len(pvcs)} PersistentVolumeClaims Bound")]


async def check_http_health(ctx: _Context) -> list[CheckResult]:
    async def one(component: Component, path: str) -> CheckResult:
        answer = await ctx.http_get(component, path)
        detail = f"{component} {path}: {answer.describe()}"
        if answer.status is None and answer.via == "nothing":
            return _result("http-health", "warn", detail)
        if component == "grafana" and answer.ok:
            try:
                database = json.loads(answer.text).get("database")
            except (ValueError, AttributeError):
                database = None
            if database not in (None, "ok"):
                return _result("http-health", "fail", f"{detail} (database: {database})")
        return _result("http-health", "pass" if answer.ok else "fail", detail)

    return list(await asyncio.gather(*(one(c, p) for c, p in HEALTH_PATHS)))


async def check_dns(ctx: _Context) -> list[CheckResult]:
    if not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return [
            _result(
                "dns", "warn", "skipped: not running in a cluster (cluster DNS is not reachable from here)"
            )
        ]
    services = [s for s in ctx.evidence.services if (s.meta.namespace or "") in ctx.namespaces]
    loop = asyncio.get_running_loop()

    async def resolves(service: Service) -> str | None:
        name = f"{service.meta.name}.{service.meta.namespace}.svc.cluster.local"
        try:
            await asyncio.wait_for(loop.getaddrinfo(name, None, type=socket.SOCK_STREAM), DNS_TIMEOUT_SECONDS)
        except (OSError, TimeoutError) as exc:
            return f"{name} ({exc.__class__.__name__})"
        return None

    failures = [f for f in await asyncio.gather(*(resolves(s) for s in services)) if f]
    if failures:
        return [_result("dns", "fail", f"do not resolve: {', '.join(failures)}")]
    return [_result("dns", "pass", f"{len(services)} Services resolve")]


async def check_logs(ctx: _Context) -> list[CheckResult]:
    window = int(time.time() - ctx.since) + 1 if ctx.since is not None else LOG_WINDOW_WITHOUT_FIX_SECONDS
    targets = [(p, c.name) for p in _pods(ctx) for c in p.spec.containers][:MAX_LOG_CONTAINERS]

    async def errors_in(pod: Pod, container: str) -> tuple[str, list[str]] | str:
        try:
            lines = await ctx.cluster.read_log_since(pod.namespace, pod.name, container, since_seconds=window)
        except Exception as exc:
            return f"{pod.name}/{container}: {exc}"
        return f"{pod.name}/{container}", [line for line in lines if ERROR_LINE.search(line)]

    results = await asyncio.gather(*(errors_in(p, c) for p, c in targets))
    unreadable = [r for r in results if isinstance(r, str)]
    with_errors = [(name, lines) for r in results if not isinstance(r, str) for name, lines in [r] if lines]
    since_text = "since the fix" if ctx.since is not None else f"in the last {window}s"
    if with_errors:
        count = sum(len(lines) for _, lines in with_errors)
        name, lines = with_errors[0]
        return [
            _result(
                "logs",
                "warn",
                f"{count} error lines {since_text} in {len(with_errors)} containers; "
                f"{name}: {lines[0][:160]}",
            )
        ]
    if unreadable:
        return [_result("logs", "warn", f"could not read {len(unreadable)} logs: {unreadable[0][:160]}")]
    return [_result("logs", "pass", f"no error lines {since_text} in {len(targets)} containers")]


def _json_body(answer: HttpAnswer) -> Any:
    try:
        return json.loads(answer.text)
    except ValueError:
        return None


async def check_prometheus_up(ctx: _Context) -> list[CheckResult]:
    answer = await ctx.http_get("prometheus", "/api/v1/query", {"query": "up"})
    if not answer.ok:
        return [
            _result(
                "prometheus-up",
                "warn" if answer.via == "nothing" else "fail",
                f"up query: {answer.describe()}",
            )
        ]
    body = _json_body(answer)
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else "not JSON"
        return [_result("prometheus-up", "fail", f"up query failed: {error}")]
    series = body.get("data", {}).get("result") or []
    down = []
    for item in series:
        value = (item.get("value") or [None, None])[1]
        if value != "1":
            labels = item.get("metric", {})
            down.append(f"{labels.get('job', '?')}/{labels.get('instance', '?')}")
    if not series:
        return [_result("prometheus-up", "warn", "up query returned no targets")]
    if down:
        return [
            _result(
                "prometheus-up", "fail", f"{len(down)} of {len(series)} targets down: {', '.join(down[:10])}"
            )
        ]
    return [_result("prometheus-up", "pass", f"{len(series)} targets up")]


async def check_loki_query(ctx: _Context) -> list[CheckResult]:
    async def one(namespace: str) -> CheckResult:
        query = f'{{namespace="{namespace}"}}'
        answer = await ctx.http_get("loki", "/loki/api/v1/query_range", {"query": query, "limit": "10"})
        if not answer.ok:
            return _result(
                "loki-query", "warn" if answer.via == "nothing" else "fail", f"{query}: {answer.describe()}"
            )
        body = _json_body(answer)
        if not isinstance(body, dict) or body.get("status") != "success":
            return _result("loki-query", "fail", f"{query}: unexpected answer {answer.describe()}")
        streams = body.get("data", {}).get("result") or []
        if not streams:
            return _result("loki-query", "warn", f"{query}: no log lines in the default range")
        return _result("loki-query", "pass", f"{query}: {len(streams)} streams")

    return list(await asyncio.gather(*(one(ns) for ns in ctx.namespaces)))


async def check_grafana_datasources(ctx: _Context) -> list[CheckResult]:
    token_secret = ctx.config.validation.grafana_token
    if token_secret is None:
        return []  # the check needs Grafana's API, which needs a token
    if ctx.direct_url("grafana") is None:
        return [
            _result(
                "grafana-datasources",
                "warn",
                "skipped: needs validation.grafana_url (the API server's proxy does not pass the token on)",
            )
        ]
    token = token_secret.reveal()
    answer = await ctx.http_get("grafana", "/api/datasources", token=token)
    if not answer.ok:
        return [_result("grafana-datasources", "fail", f"datasource list: {answer.describe()}")]
    sources = _json_body(answer)
    if not isinstance(sources, list):
        return [_result("grafana-datasources", "fail", "datasource list: not a JSON list")]

    async def health(source: Mapping[str, Any]) -> CheckResult:
        name = str(source.get("name", "?"))
        uid = str(source.get("uid", ""))
        reply = await ctx.http_get("grafana", f"/api/datasources/uid/{uid}/health", token=token)
        body = _json_body(reply)
        message = body.get("message", "") if isinstance(body, dict) else ""
        ok = reply.ok and isinstance(body, dict) and str(body.get("status", "")).upper() == "OK"
        detail = f"{name}: {message or reply.describe()}"
        return _result("grafana-datasources", "pass" if ok else "fail", detail)

    if not sources:
        return [_result("grafana-datasources", "warn", "Grafana has no datasources")]
    return list(await asyncio.gather(*(health(s) for s in sources if isinstance(s, Mapping))))


CHECK_FUNCTIONS: Mapping[str, Callable[[_Context], Awaitable[list[CheckResult]]]] = {
    "pods-ready": check_pods_ready,
    "restarts": check_restarts,
    "endpoints": check_endpoints,
    "pvcs-bound": check_pvcs_bound,
    "http-health": check_http_health,
    "dns": check_dns,
    "logs": check_logs,
    "prometheus-up": check_prometheus_up,
    "loki-query": check_loki_query,
    "grafana-datasources": check_grafana_datasources,
}


async def validate(
    namespaces: Sequence[str],
    *,
    cluster: ValidationCluster,
    config: Config,
    since: float | None,
    checks: Sequence[str] | None = None,
    focus: Sequence[ObjectRef] = (),
) -> list[CheckResult]:
    """Run the checks (all, or the named ones) for the namespaces. `since` is when the fix began
    (unix seconds): restarts and log errors after it count against the fix. `focus` (the objects a
    plan changed) narrows the pod and Service checks to what the change touched, so a fix is not
    judged by an unrelated broken pod in the same namespace; empty means the whole namespaces."""
    names = list(checks) if checks is not None else list(CHECKS)
    unknown = [n for n in names if n not in CHECK_FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown validation checks: {', '.join(unknown)} (known: {', '.join(CHECKS)})")
    namespaces = tuple(dict.fromkeys(namespaces)) or tuple(config.cluster.namespaces)
    evidence = await cluster.collect(Scope(namespaces=namespaces))
    timeout = aiohttp.ClientTimeout(total=config.validation.http_timeout_seconds)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        ctx = _Context(namespaces, evidence, cluster, config, since, session, focus)

        async def run(name: str) -> list[CheckResult]:
            try:
                return await CHECK_FUNCTIONS[name](ctx)
            except Exception as exc:  # one broken check is a failed line, not a crashed validation
                return [_result(name, "fail", f"check could not run: {type(exc).__name__}: {exc}")]

        results = await asyncio.gather(*(run(n) for n in names))
    out = [r for group in results for r in group]
    if evidence.errors:
        # Objects the checks judge could not be listed: health is unproven, which is a failure
        # (an unreachable API server must not validate as "no pods, no problems").
        unread = [e for e in evidence.errors if any(e.startswith(f"cannot list {r}") for r in _JUDGED)]
        status: CheckStatus = "fail" if unread else "warn"
        shown = "; ".join((unread or list(evidence.errors))[:3])
        out.append(_result("evidence", status, f"could not read everything: {shown}"))
    return out


def worst(results: Iterable[CheckResult]) -> CheckStatus:
    statuses = {r.status for r in results}
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"


def render_text(results: Sequence[CheckResult]) -> str:
    marks = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}
    lines = [f"{marks[r.status]}  {r.name:<20} {r.detail}" for r in results]
    counts = {s: sum(1 for r in results if r.status == s) for s in ("pass", "warn", "fail")}
    lines.append(f"{counts['pass']} passed, {counts['warn']} warnings, {counts['fail']} failed")
    return "\n".join(lines) + "\n"


def render_json(results: Sequence[CheckResult]) -> str:
    return json.dumps(
        [
            {"name": r.name, "status": r.status, "detail": r.detail, "objects": [str(o) for o in r.objects]}
            for r in results
        ],
        indent=2,
    )
