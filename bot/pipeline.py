"""What happens to an incident after intake: collect evidence, diagnose, dry-run the plan, store the
result, tell Slack. One call per pending incident, made by `bot.workers`.

Nothing here changes the cluster: the dry run is server-side (`dryRun=All`) and the real execution
waits for an approval (`bot.remediation.execute`, started from Slack or the CLI).

This module also owns the cluster and hosts cleanup contexts, since the pipeline is their first user
in the service (Slack commands and the scheduler reuse them through `keys.CLUSTER` / `keys.HOSTS`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from bot import keys
from bot.cluster import Cluster, ClusterError
from bot.diagnose import diagnose_collected, settings_from_config
from bot.evidence import Scope
from bot.hosts import Hosts
from bot.metrics import ProcessOutcome
from bot.model import (
    AUDIT_DIAGNOSED,
    AUDIT_DIAGNOSIS_FAILED,
    AUDIT_DIAGNOSIS_SKIPPED,
    IncidentStatus,
    WorkState,
)
from bot.remediation import DryRunFailed, dry_run
from bot.snapshot_cache import SnapshotCache
from bot.wiring.slack import post_incident

_log = logging.getLogger(__name__)


async def process_incident(app: web.Application, incident_id: int) -> ProcessOutcome | None:
    """Diagnose one pending incident and publish the result. Raising makes the worker retry later
    (with backoff, then it records the failure): only temporary trouble should raise. Returns how it
    ended ("failed": recorded as not diagnosable, never counted as ok; None: nothing to do)."""
    store = app[keys.STORE]
    config = app[keys.CONFIG]
    incident = await store.get_incident(incident_id)
    if incident is None or incident.work_state is not WorkState.PENDING:
        return None
    if incident.status is IncidentStatus.RESOLVED:
        # Resolved before we got to it: nothing to fix, and no Approve button for a healed cluster.
        reason = "alerts resolved before diagnosis; nothing to do"
        await store.save_diagnosis(incident_id, (), dry_run_diff=None, error=reason)
        await store.audit("pitcrew", AUDIT_DIAGNOSIS_SKIPPED, incident_id=incident_id, detail=reason)
        await post_incident(app, incident_id)
        return "skipped"

    cluster = app.get(keys.CLUSTER)
    if cluster is None:
        return await _cannot_diagnose(app, incident_id, app.get(keys.CLUSTER_ERROR) or "no Kubernetes client")
    scope = Scope.from_alerts(incident.alerts, config.cluster.namespaces)
    try:
        # An alert storm's incidents of the same namespaces share one collection.
        _, diagnosis = await diagnose_collected(
            await app[keys.SNAPSHOTS].get(scope),
            incident.alerts,
            settings=settings_from_config(config),
            hosts=app.get(keys.HOSTS),
        )
    except ClusterError as exc:
        if exc.temporary:
            raise  # the worker retries with backoff (and records the failure if it persists)
        return await _cannot_diagnose(app, incident_id, str(exc))
    notes = [*diagnosis.collection_errors, *diagnosis.handler_errors]

    diff: str | None = None
    if any(f.has_automatic_plan for f in diagnosis.findings):
        try:
            diff = await dry_run([f for f in diagnosis.findings if f.has_automatic_plan], cluster)
        except DryRunFailed as exc:
            # The plan is still shown, but the reader must know the API server did not accept it.
            notes.append(f"dry run failed: {exc}")

    await store.save_diagnosis(
        incident_id, diagnosis.findings, dry_run_diff=diff, error="; ".join(notes) or None
    )
    codes = ", ".join(f.code for f in diagnosis.findings) or "none"
    await store.audit(
        "pitcrew",
        AUDIT_DIAGNOSED,
        incident_id=incident_id,
        detail=f"{len(diagnosis.findings)} finding(s): {codes}",
    )
    _log.info("incident %d diagnosed: %s", incident_id, codes)
    await post_incident(app, incident_id)
    return "ok"


async def _cannot_diagnose(app: web.Application, incident_id: int, reason: str) -> ProcessOutcome:
    """A failure retrying cannot fix: the alert is still shown in Slack, saying why it is unexplained."""
    await app[keys.STORE].save_diagnosis(
        incident_id, (), dry_run_diff=None, error=f"cannot diagnose: {reason}"
    )
    await app[keys.STORE].audit("pitcrew", AUDIT_DIAGNOSIS_FAILED, incident_id=incident_id, detail=reason)
    _log.error("incident %d: cannot diagnose: %s", incident_id, reason)
    await post_incident(app, incident_id)
    return "failed"


async def cluster_ctx(app: web.Application) -> AsyncIterator[None]:
    """The service's one Kubernetes client; /readyz also reports whether the API server answers.

    Made lazily: the kubeconfig is loaded and the client imported at the first cluster call (a
    diagnosis, a Slack command, /readyz), so an idle service does not carry it. A kubeconfig that
    cannot be loaded does not stop the service (webhooks are still accepted and kept): /readyz says
    why, and diagnoses fail with that reason until it is fixed."""
    app[keys.CLUSTER] = cluster = Cluster.from_config(app[keys.CONFIG].cluster, lazy=True)

    async def reachable() -> str | None:
        try:
            await cluster.connected()
        except ClusterError as exc:
            return str(exc)
        return None if await cluster.ping() else "Kubernetes API server not reachable"

    app[keys.READINESS_PROBES].append(("cluster", reachable))
    metrics = app[keys.METRICS]
    collections = metrics.counter(
        "pitcrew_evidence_collections_total",
        "Evidence collections from the Kubernetes API (incidents of the same namespaces share one).",
    )
    shared = metrics.counter(
        "pitcrew_evidence_collections_shared_total",
        "Diagnoses that used a collection another incident of the same namespaces had started.",
    )
    app[keys.SNAPSHOTS] = snapshots = SnapshotCache(
        cluster.collect, on_collect=collections.inc, on_share=shared.inc
    )
    try:
        yield
    finally:
        await snapshots.close()
        await cluster.close()


async def hosts_ctx(app: web.Application) -> AsyncIterator[None]:
    """SSH hosts for host-command steps (connections are opened per operation, so nothing to close)."""
    hosts = app[keys.CONFIG].hosts
    if hosts:
        app[keys.HOSTS] = Hosts(hosts)
    yield
