"""The HTTP app with a real store: webhook intake (grouping, dedup, resolution, bad input), health,
readiness, metrics, and the background workers (bounded concurrency, retries, restart)."""

from __future__ import annotations

import asyncio
import base64
import copy
import importlib.metadata
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot import keys
from bot.app import InsecureWebhookConfig, create_app
from bot.config import Config, parse_config
from bot.model import IncidentStatus, WorkState
from bot.store import Store

TOKEN = "webhook-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def make_config(tmp_path: Path, *, webhook: dict[str, Any] | None = None, **sections: Any) -> Config:
    data: dict[str, Any] = {
        "server": {"listen_host": "127.0.0.1", "listen_port": 8080, "max_body_bytes": 64 * 1024},
        "store": {"path": str(tmp_path / "pitcrew.db")},
        "webhook": {"bearer_token_env": "TEST_WEBHOOK_TOKEN"} if webhook is None else webhook,
        "workers": {"concurrency": 2, "poll_interval_seconds": 0.2, "retry_delay_seconds": 0.05},
    }
    for name, section in sections.items():
        data[name] = {**data.get(name, {}), **section}
    env = {"TEST_WEBHOOK_TOKEN": TOKEN, "TEST_WEBHOOK_PASSWORD": "pa:ss"}
    return parse_config(data, env=env)


class Recorder:
    """A processor that records the incident ids it is given and marks them diagnosed."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.app: web.Application | None = None

    async def __call__(self, incident_id: int) -> None:
        self.calls.append(incident_id)
        assert self.app is not None
        await self.app[keys.STORE].save_diagnosis(incident_id, (), dry_run_diff=None, error=None)


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 10.0, what: str = "it") -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def alert(
    name: str, pod: str, *, status: str = "firing", starts: str = "2026-11-24T10:00:00Z"
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "namespace": "monitoring", "pod": pod, "severity": "critical"},
        "annotations": {"summary": f"{name} on {pod}"},
        "startsAt": starts,
        "endsAt": "2026-11-24T10:10:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": f"fp-{name}-{pod}",
    }


def payload(name: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    firing = any(a["status"] == "firing" for a in alerts)
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": "pitcrew",
        "groupLabels": {"alertname": name},
        "commonLabels": {"alertname": name, "namespace": "monitoring"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: ClientFactory, recorder: Recorder) -> TestClient[Any, Any]:
    app = create_app(make_config(tmp_path), processor=recorder)
    recorder.app = app
    return await aiohttp_client(app)


async def post(client: TestClient[Any, Any], data: Any, headers: dict[str, str] | None = None) -> Any:
    return await client.post(
        "/webhooks/alertmanager", json=data, headers=AUTH if headers is None else headers
    )


def metric_samples(text: str) -> dict[str, float]:
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def scrape(client: TestClient[Any, Any]) -> dict[str, float]:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return metric_samples(await response.text())


# ---------------------------------------------------------------------------------------------
# Grouping, dedup, resolution
# ---------------------------------------------------------------------------------------------


async def test_one_incident_per_group_with_dedup_and_resolution(client: TestClient[Any, Any]) -> None:
    store: Store = client.app[keys.STORE]
    first = payload("PrometheusDown", alert("PrometheusDown", "prometheus-0"))

    response = await post(client, first)
    assert response.status == 200
    body = await response.json()
    assert body == {"incident_id": body["incident_id"], "created": True, "changed": True}
    incident_id = body["incident_id"]

    # The same payload again (Alertmanager re-delivery) changes nothing.
    again = await (await post(client, first)).json()
    assert again == {"incident_id": incident_id, "created": False, "changed": False}

    # A re-notification of the group with one more alert adds it; the known one is not duplicated.
    second = payload(
        "PrometheusDown", alert("PrometheusDown", "prometheus-0"), alert("PrometheusDown", "prometheus-1")
    )
    grown = await (await post(client, second)).json()
    assert grown == {"incident_id": incident_id, "created": False, "changed": True}
    incident = await store.get_incident(incident_id)
    assert incident is not None
    assert sorted(a.fingerprint for a in incident.alerts) == [
        "fp-PrometheusDown-prometheus-0",
        "fp-PrometheusDown-prometheus-1",
    ]
    assert incident.status is IncidentStatus.FIRING

    # Another group is another incident.
    other = await (await post(client, payload("LokiNotReady", alert("LokiNotReady", "loki-0")))).json()
    assert other["created"] is True and other["incident_id"] != incident_id

    # One alert resolved: still firing, that alert marked resolved.
    partly = payload(
        "PrometheusDown",
        alert("PrometheusDown", "prometheus-0", status="resolved"),
        alert("PrometheusDown", "prometheus-1"),
    )
    assert (await post(client, partly)).status == 200
    incident = await store.get_incident(incident_id)
    assert incident is not None
    statuses = {a.fingerprint: a.status for a in incident.alerts}
    assert statuses == {
        "fp-PrometheusDown-prometheus-0": "resolved",
        "fp-PrometheusDown-prometheus-1": "firing",
    }
    assert incident.status is IncidentStatus.FIRING

    # Every alert resolved: the incident is resolved.
    resolved = payload(
        "PrometheusDown",
        alert("PrometheusDown", "prometheus-0", status="resolved"),
        alert("PrometheusDown", "prometheus-1", status="resolved"),
    )
    assert (await post(client, resolved)).status == 200
    incident = await store.get_incident(incident_id)
    assert incident is not None
    assert incident.status is IncidentStatus.RESOLVED
    assert len(incident.alerts) == 2
    assert incident.group_key == '{}:{alertname="PrometheusDown"}'
    assert incident.external_url == "http://alertmanager:9093"

    async def none_pending() -> bool:
        return not await store.list_incidents(work_states=[WorkState.PENDING])

    await eventually(none_pending, what="the workers to process both incidents")
    samples = await scrape(client)
    assert samples["pitcrew_webhooks_received_total"] == 6
    assert samples['pitcrew_incidents{status="resolved",work_state="diagnosed"}'] == 1
    assert samples['pitcrew_incidents{status="firing",work_state="diagnosed"}'] == 1
    assert samples['pitcrew_webhook_duration_seconds_count{outcome="stored"}'] == 6


async def test_committed_incident_is_handed_to_the_processor(
    client: TestClient[Any, Any], recorder: Recorder
) -> None:
    body = await (await post(client, payload("PrometheusDown", alert("PrometheusDown", "p-0")))).json()

    async def processed() -> bool:
        return recorder.calls == [body["incident_id"]]

    await eventually(processed, what="the processor to get the incident")
    incident = await client.app[keys.STORE].get_incident(body["incident_id"])
    assert incident is not None and incident.work_state is WorkState.DIAGNOSED
    samples = await scrape(client)
    assert samples['pitcrew_incident_processing_duration_seconds_count{outcome="ok"}'] == 1


# ---------------------------------------------------------------------------------------------
# Bad input over HTTP: status, reason, counted, nothing stored
# ---------------------------------------------------------------------------------------------

GOOD = payload("PrometheusDown", alert("PrometheusDown", "prometheus-0"))


def bad_schema() -> bytes:
    data = copy.deepcopy(GOOD)
    data["alerts"][0]["labels"]["severity"] = 3
    return json.dumps(data).encode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("raw", "headers", "status", "reason", "metric"),
    [
        (json.dumps(GOOD).encode(), {}, 401, "missing Authorization header", "unauthorized"),
        (
            json.dumps(GOOD).encode(),
            {"Authorization": "Bearer nope"},
            401,
            "wrong bearer token",
            "unauthorized",
        ),
        (json.dumps(GOOD).encode(), {"Authorization": basic("am", "x")}, 401, "unsupported", "unauthorized"),
        (b"x" * (64 * 1024 + 1), AUTH, 413, "body is 65537 bytes, limit is 65536", "too_large"),
        (b'{"version": "4", ', AUTH, 400, "invalid JSON: Expecting property name", "invalid_json"),
        (
            json.dumps({**GOOD, "version": "3"}).encode(),
            AUTH,
            400,
            'version: unsupported "3"',
            "unknown_version",
        ),
        (bad_schema(), AUTH, 422, "alerts[0].labels.severity: expected string, got number", "invalid_schema"),
    ],
)
async def test_bad_input_over_http(
    client: TestClient[Any, Any], raw: bytes, headers: dict[str, str], status: int, reason: str, metric: str
) -> None:
    response = await client.post(
        "/webhooks/alertmanager", data=raw, headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status == status
    error = (await response.json())["error"]
    assert error.startswith(reason), error
    assert TOKEN not in error
    samples = await scrape(client)
    assert samples[f'pitcrew_webhooks_rejected_total{{reason="{metric}"}}'] == 1
    assert sum(v for k, v in samples.items() if k.startswith("pitcrew_webhooks_rejected_total")) == 1
    assert await client.app[keys.STORE].list_incidents() == []


async def test_chunked_body_over_the_limit_is_413(client: TestClient[Any, Any]) -> None:
    async def chunks() -> Any:
        for _ in range(20):
            yield b" " * 8192  # 160 KiB of whitespace, no Content-Length

    response = await client.post("/webhooks/alertmanager", data=chunks(), headers=AUTH)
    assert response.status == 413
    assert "over the limit of 65536 bytes" in (await response.json())["error"]
    assert await client.app[keys.STORE].list_incidents() == []


async def test_basic_auth(tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    config = make_config(
        tmp_path, webhook={"basic_username": "am", "basic_password_env": "TEST_WEBHOOK_PASSWORD"}
    )
    client = await aiohttp_client(create_app(config, processor=Recorder()))
    assert (await post(client, GOOD, {"Authorization": basic("am", "pa:ss")})).status == 200
    assert (await post(client, GOOD, {"Authorization": basic("am", "pa:sS")})).status == 401
    assert (await post(client, GOOD, AUTH)).status == 401  # no bearer token configured


async def test_no_webhook_auth_refused_unless_insecure(tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    config = make_config(tmp_path, webhook={})
    with pytest.raises(InsecureWebhookConfig, match="--insecure-no-webhook-auth"):
        create_app(config)
    client = await aiohttp_client(create_app(config, processor=Recorder(), insecure_no_webhook_auth=True))
    assert (await post(client, GOOD, {})).status == 200


async def test_store_failure_is_503_and_counted(client: TestClient[Any, Any]) -> None:
    # A closed store is a real failure to commit: Alertmanager must retry, so 5xx, not 2xx.
    await client.app[keys.STORE].close()
    response = await post(client, GOOD)
    assert response.status == 503
    samples = await scrape(client)
    assert samples['pitcrew_webhooks_rejected_total{reason="store_error"}'] == 1
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["checks"]["store"] == "store is closed"


# ---------------------------------------------------------------------------------------------
# Health, readiness, metrics
# ---------------------------------------------------------------------------------------------


async def test_health_ready_and_metrics(client: TestClient[Any, Any]) -> None:
    health = await client.get("/healthz")
    assert health.status == 200 and (await health.json()) == {"status": "ok"}
    ready = await client.get("/readyz")
    # This app has no kubeconfig: the store is fine, and readiness says why the cluster is not.
    assert ready.status == 503
    checks = (await ready.json())["checks"]
    assert checks["store"] == "ok"
    assert checks["cluster"].startswith("cannot load kubeconfig")
    assert "--kubeconfig" not in checks["cluster"]  # serve has no such flag: never suggest it
    text = await (await client.get("/metrics")).text()
    assert "# TYPE pitcrew_webhooks_received_total counter" in text
    assert "# TYPE pitcrew_incidents gauge" in text
    assert "# TYPE pitcrew_webhook_duration_seconds histogram" in text
    for reason in ("unauthorized", "too_large", "invalid_json", "invalid_schema", "unknown_version"):
        assert f'pitcrew_webhooks_rejected_total{{reason="{reason}"}} 0' in text
    # Known label values are exported at 0 from the start: dashboards and alerts see 0, not "no data".
    lines = text.splitlines()
    for outcome in ("ok", "failed", "skipped"):
        assert f'pitcrew_incidents_processed_total{{outcome="{outcome}"}} 0' in lines
    for outcome in ("succeeded", "failed", "rolled-back", "refused"):
        assert f'pitcrew_executions_total{{namespace="monitoring",outcome="{outcome}"}} 0' in lines
    assert "pitcrew_incident_processing_failures_total 0" in lines
    assert f'pitcrew_build_info{{version="{importlib.metadata.version("pitcrew")}"}} 1' in lines


async def test_readiness_probe_added_by_another_resource(client: TestClient[Any, Any]) -> None:
    async def backend_down() -> str | None:
        return "backend unreachable: connection refused"

    client.app[keys.READINESS_PROBES].append(("example", backend_down))
    ready = await client.get("/readyz")
    assert ready.status == 503
    body = await ready.json()
    assert body["ready"] is False
    assert body["checks"]["store"] == "ok"
    assert body["checks"]["example"] == "backend unreachable: connection refused"


# ---------------------------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------------------------


async def test_processor_failure_is_retried_with_backoff(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    calls: list[int] = []
    app_box: list[web.Application] = []

    async def flaky(incident_id: int) -> None:
        calls.append(incident_id)
        if len(calls) == 1:
            raise RuntimeError("cluster unreachable")
        await app_box[0][keys.STORE].save_diagnosis(incident_id, (), dry_run_diff=None, error=None)

    app = create_app(make_config(tmp_path), processor=flaky)
    app_box.append(app)
    client = await aiohttp_client(app)
    incident_id = (await (await post(client, GOOD)).json())["incident_id"]

    async def diagnosed() -> bool:
        incident = await app[keys.STORE].get_incident(incident_id)
        return incident is not None and incident.work_state is WorkState.DIAGNOSED

    await eventually(diagnosed, what="the retried processing to succeed")
    assert calls == [incident_id, incident_id]
    samples = await scrape(client)
    assert samples["pitcrew_incident_processing_failures_total"] == 1


async def test_processor_failing_every_time_gives_up_after_max_attempts(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    calls: list[int] = []

    async def broken(incident_id: int) -> None:
        calls.append(incident_id)
        raise RuntimeError(f"boom {TOKEN}")

    config = make_config(tmp_path, workers={"max_attempts": 3})
    app = create_app(config, processor=broken)
    client = await aiohttp_client(app)
    incident_id = (await (await post(client, GOOD)).json())["incident_id"]
    store: Store = app[keys.STORE]

    async def given_up() -> bool:
        incident = await store.get_incident(incident_id)
        return incident is not None and incident.work_state is not WorkState.PENDING

    await eventually(given_up, what="the workers to give up")
    incident = await store.get_incident(incident_id)
    assert incident is not None
    assert incident.diagnosis_error is not None
    assert incident.diagnosis_error.startswith("processing failed after 3 attempts: RuntimeError: boom")
    assert calls == [incident_id] * 3  # bounded, no hot loop
    audit = await store.list_audit(incident_id=incident_id)
    assert [e.action for e in audit] == ["processing-failed"]


async def test_concurrency_is_bounded(tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    release = asyncio.Event()
    running: set[int] = set()
    peak = 0
    done: list[int] = []
    app_box: list[web.Application] = []

    async def slow(incident_id: int) -> None:
        nonlocal peak
        running.add(incident_id)
        peak = max(peak, len(running))
        try:
            await release.wait()
            await app_box[0][keys.STORE].save_diagnosis(incident_id, (), dry_run_diff=None, error=None)
            done.append(incident_id)
        finally:
            running.discard(incident_id)

    app = create_app(make_config(tmp_path, workers={"concurrency": 2}), processor=slow)
    app_box.append(app)
    client = await aiohttp_client(app)
    ids = []
    for n in range(5):
        ids.append(
            (await (await post(client, payload(f"Alert{n}", alert(f"Alert{n}", "p")))).json())["incident_id"]
        )

    async def two_running() -> bool:
        return len(running) == 2

    await eventually(two_running, what="two incidents in flight")
    await asyncio.sleep(0.3)  # more polls happen; still only two
    assert len(running) == 2
    release.set()

    async def all_done() -> bool:
        return sorted(done) == sorted(ids)

    await eventually(all_done, what="every incident processed")
    assert peak == 2


async def test_shutdown_cancels_processing_and_restart_picks_pending_up(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    started = asyncio.Event()
    cancelled: list[int] = []

    async def hangs(incident_id: int) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(incident_id)
            raise

    config = make_config(tmp_path)
    first = await aiohttp_client(create_app(config, processor=hangs))
    incident_id = (await (await post(first, GOOD)).json())["incident_id"]
    await asyncio.wait_for(started.wait(), timeout=10)
    await first.close()  # runs the cleanup contexts: workers cancelled and awaited, store closed
    assert cancelled == [incident_id]

    recorder = Recorder()
    app = create_app(config, processor=recorder)
    recorder.app = app
    await aiohttp_client(app)

    async def picked_up() -> bool:
        return recorder.calls == [incident_id]

    await eventually(picked_up, what="the pending incident to be processed after restart")


async def test_dispatcher_does_not_spin_while_a_retry_runs(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    attempts: list[int] = []
    second_attempt = asyncio.Event()
    release = asyncio.Event()

    async def fails_then_blocks(incident_id: int) -> None:
        attempts.append(incident_id)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")
        second_attempt.set()
        await release.wait()

    config = make_config(tmp_path, workers={"concurrency": 1})
    app = create_app(config, processor=fails_then_blocks)
    client = await aiohttp_client(app)
    assert (await post(client, GOOD)).status == 200
    await asyncio.wait_for(second_attempt.wait(), timeout=10)
    workers = app[keys.WORKERS]
    rounds_before = workers.dispatch_rounds
    await asyncio.sleep(0.5)  # the retry is running and every slot is busy: nothing to do but wait
    # A few polls (poll interval 0.2 s here) at most; a spinning dispatcher makes thousands of rounds.
    assert workers.dispatch_rounds - rounds_before <= 10
    release.set()
