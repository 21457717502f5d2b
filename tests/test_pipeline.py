"""The incident pipeline inside the real app: webhook -> store -> worker -> evidence from the emulated
cluster (real `kubernetes` client over a socket) -> diagnosis -> server-side dry run -> stored result.

The emulator writes like a real API server here (tests/support/kube_writes.py): `dryRun=All` answers
without persisting, which kmock alone does not do.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import kmock
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot import keys
from bot.app import create_app
from bot.config import Config, parse_config
from bot.history import load_history, render_json
from bot.history import render_text as render_history_text
from bot.model import Incident, IncidentStatus, WorkState
from bot.pipeline import process_incident
from tests.support.kube import KubeHarness, describe_request
from tests.support.kube_writes import WriteSemantics, live_object

TOKEN = "pipeline-webhook-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def make_config(tmp_path: Path, kubeconfig: Path) -> Config:
    return parse_config(
        {
            "store": {"path": str(tmp_path / "pitcrew.db")},
            "webhook": {"bearer_token_env": "PIPELINE_TOKEN"},
            "workers": {
                "concurrency": 2,
                "poll_interval_seconds": 0.2,
                "retry_delay_seconds": 0.05,
                "max_attempts": 2,
            },
            "cluster": {
                "kubeconfig": str(kubeconfig),
                "namespaces": ["monitoring"],
                "request_timeout_seconds": 2,
            },
        },
        env={"PIPELINE_TOKEN": TOKEN},
    )


def seed_alert_payload(status: str = "firing", ends_at: str = "0001-01-01T00:00:00Z") -> dict[str, Any]:
    labels = {"alertname": "KubePodCrashLooping", "namespace": "monitoring", "pod": "prometheus-0"}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="KubePodCrashLooping"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "pitcrew",
        "groupLabels": {"alertname": "KubePodCrashLooping"},
        "commonLabels": {**labels, "severity": "critical"},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [
            {
                "status": status,
                "labels": {**labels, "severity": "critical"},
                "annotations": {"summary": "prometheus-0 is crash looping"},
                "startsAt": "2025-10-09T21:50:00Z",
                "endsAt": ends_at,
                "generatorURL": "http://prometheus/graph",
                "fingerprint": "aa11",
            }
        ],
    }


async def wait_for(
    client: TestClient[Any, Any], incident_id: int, done: Callable[[Incident], bool], within: float = 20.0
) -> Incident:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        incident = await client.app[keys.STORE].get_incident(incident_id)
        if incident is not None and done(incident):
            return incident
        await asyncio.sleep(0.1)
    pytest.fail(f"incident {incident_id} did not reach the expected state within {within} s")


async def test_seed_incident_is_diagnosed_and_dry_run_without_changing_the_cluster(
    tmp_path: Path, aiohttp_client: ClientFactory, kube_writes: tuple[KubeHarness, WriteSemantics]
) -> None:
    kube, _ = kube_writes
    statefulset_before = live_object(kube, "StatefulSet", "prometheus", "monitoring")
    configmap_before = live_object(kube, "ConfigMap", "loki-config", "monitoring")
    client = await aiohttp_client(create_app(make_config(tmp_path, kube.kubeconfig)))

    ready = await client.get("/readyz")
    assert ready.status == 200, await ready.text()
    assert (await ready.json())["checks"] == {"store": "ok", "cluster": "ok"}

    answer = await client.post("/webhooks/alertmanager", json=seed_alert_payload(), headers=AUTH)
    assert answer.status == 200
    incident_id = (await answer.json())["incident_id"]

    incident = await wait_for(client, incident_id, lambda i: i.work_state is WorkState.DIAGNOSED)
    codes = {f.code for f in incident.findings}
    assert codes == {"volume-permission-denied", "loki-frontend-worker-all-in-one", "service-no-endpoints"}
    assert incident.diagnosis_error is None
    diff = incident.dry_run_diff or ""
    assert "securityContext" in diff and "runAsUser: 65534" in diff
    assert "#   frontend_address" in diff or "# frontend_worker" in diff
    # A dry run is only a dry run: the emulated API server still holds the diagnosed objects.
    assert live_object(kube, "StatefulSet", "prometheus", "monitoring") == statefulset_before
    assert live_object(kube, "ConfigMap", "loki-config", "monitoring") == configmap_before
    assert kube.count(verb="patch", resource="statefulsets") >= 1
    audit = await client.app[keys.STORE].list_audit(incident_id=incident_id)
    assert [e.action for e in audit if e.action == "diagnosed"] == ["diagnosed"]


async def test_unreachable_cluster_keeps_the_alert_and_records_why(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig.yaml"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "gone", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "gone", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    client = await aiohttp_client(create_app(make_config(tmp_path, kubeconfig)))
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["checks"]["cluster"] == "Kubernetes API server not reachable"

    answer = await client.post("/webhooks/alertmanager", json=seed_alert_payload(), headers=AUTH)
    assert answer.status == 200  # accepted and kept, whatever the cluster does
    incident_id = (await answer.json())["incident_id"]
    incident = await wait_for(client, incident_id, lambda i: i.work_state is WorkState.DIAGNOSED)
    assert incident.findings == ()
    # Nothing could be read: a failed diagnosis (retried, then given up), never "no problems found".
    assert incident.diagnosis_error == (
        "processing failed after 2 attempts: ClusterError: "
        f"cannot reach the Kubernetes API at http://127.0.0.1:{port}: connection refused"
    )
    assert [a.fingerprint for a in incident.alerts] == ["aa11"]
    await assert_recorded_as_failed(client, incident_id, incident.diagnosis_error)


async def assert_recorded_as_failed(client: TestClient[Any, Any], incident_id: int, error: str) -> None:
    """The failure is in `history` (text and JSON) and counted as failed in /metrics, never as ok."""
    history = await load_history(client.app[keys.STORE], limit=5)
    (entry,) = [e for e in json.loads(render_json(history))["incidents"] if e["id"] == incident_id]
    assert entry["diagnosis"] == {"outcome": "failed", "error": error}
    assert f"    diagnosis FAILED: {error}" in render_history_text(history).splitlines()
    metrics = (await (await client.get("/metrics")).text()).splitlines()
    assert 'pitcrew_incidents_processed_total{outcome="failed"} 1' in metrics
    assert 'pitcrew_incidents_processed_total{outcome="ok"} 0' in metrics
    assert not [
        m
        for m in metrics
        if m.startswith("pitcrew_incident_processing_duration_seconds_count") and 'outcome="ok"' in m
    ]


async def test_forbidden_everywhere_is_a_failed_diagnosis_not_a_healthy_one(
    tmp_path: Path, aiohttp_client: ClientFactory, kube: KubeHarness
) -> None:
    async def forbid_every_list(request: kmock.Request, harness: KubeHarness) -> None:
        if describe_request(request).verb == "list":
            raise kmock.KubernetesError(status=403, reason="Forbidden", message="forbidden", details={})
        return None

    kube.middlewares.insert(0, forbid_every_list)
    client = await aiohttp_client(create_app(make_config(tmp_path, kube.kubeconfig)))
    answer = await client.post("/webhooks/alertmanager", json=seed_alert_payload(), headers=AUTH)
    incident_id = (await answer.json())["incident_id"]
    incident = await wait_for(client, incident_id, lambda i: i.work_state is WorkState.DIAGNOSED)
    error = incident.diagnosis_error or ""
    assert error.startswith(f"cannot diagnose: the Kubernetes API at {kube.url} refused every read: ")
    assert error.endswith("refused every read: forbidden")
    audit = await client.app[keys.STORE].list_audit(incident_id=incident_id)
    assert [e.action for e in audit] == ["diagnosis failed"]  # a 403 is permanent: not retried
    await assert_recorded_as_failed(client, incident_id, error)


async def test_no_usable_kubeconfig_is_recorded_at_once_not_retried(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    client = await aiohttp_client(create_app(make_config(tmp_path, tmp_path / "missing-kubeconfig")))
    answer = await client.post("/webhooks/alertmanager", json=seed_alert_payload(), headers=AUTH)
    assert answer.status == 200
    incident_id = (await answer.json())["incident_id"]
    incident = await wait_for(client, incident_id, lambda i: i.work_state is WorkState.DIAGNOSED)
    assert (incident.diagnosis_error or "").startswith("cannot diagnose: cannot load kubeconfig")
    audit = await client.app[keys.STORE].list_audit(incident_id=incident_id)
    assert [e.action for e in audit] == ["diagnosis failed"]  # once: retrying cannot help
    assert client.app[keys.WORKERS].waiting_for_retry == frozenset()


async def test_alerts_resolved_before_diagnosis_get_no_plan(
    tmp_path: Path, aiohttp_client: ClientFactory, kube_writes: tuple[KubeHarness, WriteSemantics]
) -> None:
    kube, _ = kube_writes
    gate = asyncio.Event()
    app: web.Application

    async def after_gate(incident_id: int) -> None:
        # The real pipeline, held back until both notifications are stored.
        await gate.wait()
        await process_incident(app, incident_id)

    app = create_app(make_config(tmp_path, kube.kubeconfig), processor=after_gate)
    client = await aiohttp_client(app)
    first = await client.post("/webhooks/alertmanager", json=seed_alert_payload(), headers=AUTH)
    incident_id = (await first.json())["incident_id"]
    resolved = seed_alert_payload("resolved", ends_at="2025-10-09T22:10:00Z")
    assert (await client.post("/webhooks/alertmanager", json=resolved, headers=AUTH)).status == 200
    gate.set()
    incident = await wait_for(client, incident_id, lambda i: i.work_state is WorkState.DIAGNOSED)
    assert incident.status is IncidentStatus.RESOLVED
    assert incident.findings == ()
    assert "resolved before diagnosis" in (incident.diagnosis_error or "")
    assert kube.count(verb="list", resource="pods") == 0  # the cluster was not even read
