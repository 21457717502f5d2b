"""Gathering: `build_summary(deps, ...)` reads the summary's inputs through their adapters (cluster or
bundle, store, validate) and never raises for an unreachable cluster or store: what failed becomes
part of the summary."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.evidence import Evidence, Scope
from bot.model import CheckResult, Incident, IncidentStatus

if TYPE_CHECKING:
    from bot.cluster import Cluster
    from bot.config import Config, ScheduleConfig
    from bot.store import Execution, StoreBackend
from bot.summary.model import (
    COLLECT_TIMEOUT_SECONDS,
    DEFAULT_LOOKBACK_SECONDS,
    STORE_QUERY_LIMIT,
    HealthSummary,
    SummaryState,
)
from bot.summary.rules import summarize


@dataclass(frozen=True)
class SummaryDeps:
    """What building a summary reads. `cluster` None with `snapshot_dir` None means: connect with
    `config.cluster` for this summary and close afterwards. `store` None: no incidents section."""

    config: Config
    store: StoreBackend | None = None
    cluster: Cluster | None = None
    snapshot_dir: str | None = None
    # Called after a summary is queued in the outbox (the Slack service's "send now" nudge).
    on_enqueued: Callable[[], None] | None = None


def state_key(schedule_name: str) -> str:
    return f"summary:{schedule_name}:state"


def baseline_schedule(config: Config, namespaces: Sequence[str]) -> ScheduleConfig | None:
    """The schedule an on-demand summary compares with: the first covering all its namespaces."""
    for schedule in config.schedules:
        if set(namespaces) <= set(schedule.namespaces):
            return schedule
    return None


async def load_state(store: StoreBackend | None, schedule_name: str | None) -> SummaryState | None:
    """The previous summary's state; a missing or unreadable record means no baseline."""
    if store is None or schedule_name is None:
        return None
    text = await store.get_kv(state_key(schedule_name))
    if text is None:
        return None
    try:
        return SummaryState.from_json(text)
    except ValueError:
        return None


async def _collect(
    deps: SummaryDeps, namespaces: Sequence[str]
) -> tuple[Evidence | None, str | None, Cluster | None, str]:
    """Evidence, or why there is none; the cluster to validate with; the source label."""
    if deps.snapshot_dir is not None:
        from bot.snapshot import BundleError, read_bundle

        source = f"snapshot {deps.snapshot_dir}"
        try:
            evidence = await asyncio.to_thread(read_bundle, deps.snapshot_dir, namespaces=namespaces)
        except (BundleError, OSError) as exc:
            return None, f"cannot read bundle {deps.snapshot_dir}: {exc}", None, source
        if not (evidence.pods or evidence.events or evidence.services or evidence.workloads or evidence.pvcs):
            # A mistyped -n (or a bundle of other namespaces) would otherwise read as "all healthy".
            wanted = ", ".join(namespaces)
            return (
                None,
                f"the bundle {deps.snapshot_dir} holds no objects in namespace {wanted}",
                None,
                source,
            )
        return evidence, None, None, source
    if deps.cluster is None:
        return None, "no cluster connection", None, "cluster"
    from bot.cluster import ClusterError

    try:
        evidence = await asyncio.wait_for(
            deps.cluster.collect(Scope(namespaces=tuple(namespaces))), COLLECT_TIMEOUT_SECONDS
        )
    except TimeoutError:
        return None, f"collection timed out after {COLLECT_TIMEOUT_SECONDS:.0f} s", None, "cluster"
    except ClusterError as exc:  # nothing could be read ("cannot reach the Kubernetes API at ...")
        return None, str(exc), None, "cluster"
    except Exception as exc:  # the adapter reports failures in evidence.errors; anything else lands here
        return None, f"{type(exc).__name__}: {exc}", None, "cluster"
    # Every list call failed: nothing at all was read, so the cluster is unreachable (or forbidden).
    nothing_read = not (
        evidence.pods or evidence.services or evidence.workloads or evidence.nodes or evidence.pvcs
    )
    if nothing_read and evidence.errors:
        return None, f"cluster unreachable: {evidence.errors[0]}", None, "cluster"
    return evidence, None, deps.cluster, "cluster"


class _CollectedCluster:
    """The cluster as validation sees it, answering `collect` with the evidence this summary already
    read (one collection per summary, not two); everything else goes to the real adapter."""

    def __init__(self, cluster: Cluster, evidence: Evidence) -> None:
        self._cluster = cluster
        self._evidence = evidence

    async def collect(self, scope: Scope) -> Evidence:
        if set(scope.namespaces) <= set(self._evidence.namespaces):
            return self._evidence
        return await self._cluster.collect(scope)

    async def read_log_since(
        self, namespace: str, pod: str, container: str, *, since_seconds: int
    ) -> tuple[str, ...]:
        return await self._cluster.read_log_since(namespace, pod, container, since_seconds=since_seconds)

    async def service_proxy_get(
        self,
        namespace: str,
        service: str,
        port: int | str,
        path: str,
        params: Mapping[str, str] | None = None,
    ) -> tuple[int, str]:
        return await self._cluster.service_proxy_get(namespace, service, port, path, params)


async def _checks(
    deps: SummaryDeps,
    cluster: Cluster | None,
    evidence: Evidence | None,
    namespaces: Sequence[str],
    reason: str,
) -> tuple[tuple[CheckResult, ...], str | None]:
    if cluster is None or evidence is None:
        return (), reason
    from bot.validate import validate

    try:
        # since=None: a summary is not checking a fix, so restarts and log errors only warn.
        results = await validate(
            list(namespaces), cluster=_CollectedCluster(cluster, evidence), config=deps.config, since=None
        )
    except Exception as exc:
        return (), f"validation could not run: {type(exc).__name__}: {exc}"
    return tuple(results), None


async def _store_rows(
    store: StoreBackend | None, since: float
) -> tuple[list[Incident], list[Execution], dict[int, tuple[str, str]], str | None]:
    if store is None:
        return [], [], {}, "no store configured"
    try:
        recent = await store.list_incidents(since=since, limit=STORE_QUERY_LIMIT)
        firing = await store.list_incidents(status=IncidentStatus.FIRING, limit=STORE_QUERY_LIMIT)
        executions = await store.list_executions(limit=STORE_QUERY_LIMIT)
        incidents = list({i.id: i for i in (*firing, *recent)}.values())
        wanted = {i.id for i in incidents} | {e.incident_id for e in executions if e.incident_id is not None}
        messages: dict[int, tuple[str, str]] = {}
        for incident_id in sorted(wanted):
            location = await store.get_slack_message(incident_id)
            if location is not None:
                messages[incident_id] = location
    except Exception as exc:
        return [], [], {}, f"store unreadable: {type(exc).__name__}: {exc}"
    return incidents, executions, messages, None


async def build_summary(
    deps: SummaryDeps,
    *,
    namespaces: Sequence[str] | None = None,
    schedule: ScheduleConfig | None = None,
    now: float | None = None,
) -> HealthSummary:
    """Gather and summarize. With `schedule`: its namespaces and its previous state; without: the given
    namespaces (default `config.cluster.namespaces`) compared with the first schedule covering them.
    Never raises for an unreachable cluster, bundle or store: the summary says what failed."""
    generated_at = time.time() if now is None else now
    scope = tuple(namespaces or (schedule.namespaces if schedule else deps.config.cluster.namespaces))
    baseline = schedule or baseline_schedule(deps.config, scope)
    title = schedule.name if schedule is not None else "on demand"
    try:
        previous = await load_state(deps.store, baseline.name if baseline else None)
    except Exception:
        previous = None
    since = previous.at if previous is not None else generated_at - DEFAULT_LOOKBACK_SECONDS

    own_cluster: Cluster | None = None
    connect_error: str | None = None
    if deps.cluster is None and deps.snapshot_dir is None:
        own_cluster, connect_error = _connect(deps.config)
    try:
        gather_deps = deps if own_cluster is None else dataclasses.replace(deps, cluster=own_cluster)
        evidence: Evidence | None = None
        error: str | None = connect_error
        cluster: Cluster | None = None
        source = "cluster"
        if connect_error is None:
            evidence, error, cluster, source = await _collect(gather_deps, scope)
        not_run = (
            "not run: offline snapshot"
            if deps.snapshot_dir is not None
            else "not run: the cluster could not be read"
        )
        checks, checks_note = await _checks(gather_deps, cluster, evidence, scope, not_run)
    finally:
        if own_cluster is not None:
            await own_cluster.close()
    incidents, executions, messages, store_note = await _store_rows(deps.store, since)
    return summarize(
        title=title,
        namespaces=scope,
        generated_at=generated_at,
        evidence=evidence,
        collection_error=error,
        source=source,
        checks=checks,
        checks_note=checks_note,
        incidents=incidents,
        executions=executions,
        slack_messages=messages,
        previous=previous,
        store_note=store_note,
        timezone=schedule.timezone if schedule is not None else "UTC",
    )


def _connect(config: Config) -> tuple[Cluster | None, str | None]:
    from bot.cluster import Cluster, ClusterError

    try:
        return Cluster.from_config(config.cluster), None
    except ClusterError as exc:
        return None, str(exc)
