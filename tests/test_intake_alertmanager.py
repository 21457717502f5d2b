"""Integration with a real Alertmanager (Debian prometheus-alertmanager) on loopback.

Alerts are POSTed to Alertmanager's API v2; Alertmanager groups them and delivers version-4
webhooks to pitcrew with a bearer credential. pitcrew must store one incident per group with the
right alerts, resolve them, reject a wrong credential (counted in /metrics), and, killed with
SIGKILL in the middle of a burst, end up with every alert exactly once after Alertmanager retries.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot import keys
from bot.alertmanager import labels_fingerprint
from bot.app import create_app
from bot.config import parse_config
from bot.model import IncidentStatus
from tests.support.alertmanager import Alertmanager, free_port, http_json, wait_until

pytestmark = pytest.mark.integration

TOKEN = "am-webhook-token-9f8e7d6c"
REPO = Path(__file__).resolve().parent.parent
STARTS_AT = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat().replace("+00:00", "Z")


def am_alert(alertname: str, pod: str, *, ends_at: str | None = None) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "labels": {"alertname": alertname, "namespace": "monitoring", "pod": pod, "severity": "critical"},
        "annotations": {"summary": f"{alertname} on {pod}"},
        "startsAt": STARTS_AT,
        "generatorURL": "http://prometheus.test/graph",
    }
    if ends_at is not None:
        alert["endsAt"] = ends_at
    return alert


def past() -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)).isoformat().replace("+00:00", "Z")


async def poll(check: Callable[[], Any], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# pitcrew in-process (aiohttp test server on a real loopback port)
# ---------------------------------------------------------------------------------------------


async def test_alertmanager_groups_become_incidents_and_resolve(
    tmp_path: Path, aiohttp_client: Any, alertmanager_factory: Callable[..., Alertmanager]
) -> None:
    processed: list[int] = []

    async def processor(incident_id: int) -> None:
        processed.append(incident_id)

    config = parse_config(
        {
            "server": {"listen_host": "127.0.0.1"},
            "store": {"path": str(tmp_path / "pitcrew.db")},
            "webhook": {"bearer_token_env": "TOKEN"},
        },
        env={"TOKEN": TOKEN},
    )
    app: web.Application = create_app(config, processor=processor)
    client = await aiohttp_client(app)
    webhook_url = f"http://127.0.0.1:{client.server.port}/webhooks/alertmanager"
    am = await asyncio.to_thread(alertmanager_factory, webhook_url, TOKEN)
    store = app[keys.STORE]

    firing = [
        am_alert("PrometheusDown", "prometheus-0"),
        am_alert("PrometheusDown", "prometheus-1"),
        am_alert("LokiNotReady", "loki-0"),
    ]
    await asyncio.to_thread(am.post_alerts, firing)

    async def both_groups_stored() -> bool:
        incidents = await store.list_incidents()
        return sorted(len(i.alerts) for i in incidents) == [1, 2]

    await poll(both_groups_stored, within=30, what="two incidents from Alertmanager")
    incidents = {i.alertname: i for i in await store.list_incidents()}
    assert set(incidents) == {"PrometheusDown", "LokiNotReady"}
    prom = incidents["PrometheusDown"]
    assert prom.group_labels == {"alertname": "PrometheusDown", "namespace": "monitoring"}
    assert prom.receiver == "pitcrew"
    assert prom.external_url == am.url
    assert sorted(a.labels["pod"] for a in prom.alerts) == ["prometheus-0", "prometheus-1"]
    assert all(a.status == "firing" for a in prom.alerts)
    assert prom.status is IncidentStatus.FIRING
    # The fingerprints are Alertmanager's own (and the ones our fallback would compute).
    am_fingerprints = {a["fingerprint"] for a in await asyncio.to_thread(am.alerts)}
    stored = {a.fingerprint for i in incidents.values() for a in i.alerts}
    assert stored == am_fingerprints
    assert all(a.fingerprint == labels_fingerprint(a.labels) for i in incidents.values() for a in i.alerts)

    async def both_processed() -> bool:
        return sorted(processed) == sorted(i.id for i in incidents.values())

    await poll(both_processed, within=10, what="the workers to pick both incidents up")

    # The same alerts, ended: Alertmanager sends resolved notifications (send_resolved: true).
    ended = past()
    await asyncio.to_thread(am.post_alerts, [{**a, "endsAt": ended} for a in firing])

    async def all_resolved() -> bool:
        incidents = await store.list_incidents()
        return len(incidents) == 2 and all(i.status is IncidentStatus.RESOLVED for i in incidents)

    await poll(all_resolved, within=30, what="both incidents to be resolved")
    for incident in await store.list_incidents():
        assert all(a.status == "resolved" for a in incident.alerts)
        assert all(a.ends_at is not None for a in incident.alerts)
    assert len({i.id for i in await store.list_incidents()}) == 2  # still one incident per group

    # A second Alertmanager with a wrong credential: rejected with 401 and counted, nothing stored.
    assert (
        'pitcrew_webhooks_rejected_total{reason="unauthorized"} 0'
        in await (await client.get("/metrics")).text()
    )
    intruder = await asyncio.to_thread(alertmanager_factory, webhook_url, "wrong-token")
    await asyncio.to_thread(intruder.post_alerts, [am_alert("IntruderAlert", "x-0")])

    async def unauthorized_count() -> float:
        text = await (await client.get("/metrics")).text()
        line = next(
            x
            for x in text.splitlines()
            if x.startswith('pitcrew_webhooks_rejected_total{reason="unauthorized"}')
        )
        return float(line.rpartition(" ")[2])

    async def rejected() -> bool:
        return await unauthorized_count() >= 1

    await poll(rejected, within=30, what="the wrong credential to be rejected and counted")
    assert {i.alertname for i in await store.list_incidents()} == {"PrometheusDown", "LokiNotReady"}


# ---------------------------------------------------------------------------------------------
# pitcrew as a subprocess: SIGKILL during a burst, restart, nothing lost or duplicated
# ---------------------------------------------------------------------------------------------


class PitcrewProcess:
    def __init__(self, config_path: Path, port: int, log_path: Path) -> None:
        self.config_path = config_path
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "PITCREW_TEST_WEBHOOK_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "serve", "--config", str(self.config_path)],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"pitcrew exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                # /healthz, not /readyz: readiness also wants a Kubernetes API server, and the
                # webhook intake works without one.
                return http_json("GET", f"{self.url}/healthz", timeout=1)[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout=30, what="pitcrew to be ready")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def stop_quietly(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def pitcrew_process(tmp_path: Path) -> Iterator[PitcrewProcess]:
    port = free_port()
    config_path = tmp_path / "pitcrew.yaml"
    config_path.write_text(
        "server:\n"
        "  listen_host: 127.0.0.1\n"
        f"  listen_port: {port}\n"
        "  shutdown_timeout_seconds: 5\n"
        "logging:\n"
        "  format: json\n"
        "  level: info\n"
        "store:\n"
        f"  path: {tmp_path / 'pitcrew.db'}\n"
        "webhook:\n"
        "  bearer_token_env: PITCREW_TEST_WEBHOOK_TOKEN\n"
        "workers:\n"
        "  concurrency: 2\n"
    )
    process = PitcrewProcess(config_path, port, tmp_path / "pitcrew.log")
    yield process
    process.stop_quietly()


def stored_alerts(db: Path) -> list[tuple[str, str, str]]:
    """(group_key, fingerprint, status) of every stored alert, read straight from SQLite."""
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        try:
            rows = conn.execute(
                "SELECT i.group_key, a.fingerprint, a.status"
                " FROM alerts a JOIN incidents i ON i.id = a.incident_id"
            ).fetchall()
        except sqlite3.OperationalError:  # schema not created yet
            return []
    return [(str(g), str(f), str(s)) for g, f, s in rows]


def test_sigkill_during_a_burst_loses_and_duplicates_nothing(
    tmp_path: Path, pitcrew_process: PitcrewProcess, alertmanager_factory: Callable[..., Alertmanager]
) -> None:
    db = tmp_path / "pitcrew.db"
    pitcrew_process.start()
    am = alertmanager_factory(f"{pitcrew_process.url}/webhooks/alertmanager", TOKEN)

    # Many groups at once: Alertmanager delivers each group's notification concurrently, so the
    # burst lasts long enough for the kill below to land in the middle of it.
    groups = [f"Burst{n}" for n in range(160)]
    first = [am_alert(g, f"pod-{k}") for g in groups[:150] for k in range(2)]
    second = [am_alert(g, "pod-2") for g in groups[:150:3]]
    second += [am_alert(g, f"pod-{k}") for g in groups[150:] for k in range(3)]

    am.post_alerts(first)
    # Kill as soon as the first notifications land, while the others are being delivered.
    wait_until(lambda: len(stored_alerts(db)) > 0, timeout=30, interval=0.02, what="first deliveries")
    pitcrew_process.kill()
    stored_before_restart = len(stored_alerts(db))
    am.post_alerts(second)  # more groups and alerts while pitcrew is down: Alertmanager retries them
    time.sleep(1.0)
    pitcrew_process.start()

    sent = {a["fingerprint"]: a for a in am.alerts()}
    assert len(sent) == len(first) + len(second)
    print(
        f"alerts stored when pitcrew was killed: {stored_before_restart} of {len(first)} in the first burst"
    )

    def everything_stored() -> bool:
        return {f for _, f, _ in stored_alerts(db)} == set(sent)

    wait_until(everything_stored, timeout=90, interval=0.2, what="every alert to be stored after restart")
    assert pitcrew_process.terminate() == 0, pitcrew_process.log()[-3000:]  # graceful SIGTERM

    rows = stored_alerts(db)
    fingerprints = [f for _, f, _ in rows]
    assert len(fingerprints) == len(set(fingerprints)) == len(sent)  # every alert exactly once
    by_group: dict[str, set[str]] = {}
    for group_key, fingerprint, _ in rows:
        by_group.setdefault(group_key, set()).add(fingerprint)
    assert len(by_group) == len(groups)  # one incident per group
    for group_key, fps in by_group.items():
        names = {sent[f]["labels"]["alertname"] for f in fps}
        assert len(names) == 1 and f'alertname="{names.pop()}"' in group_key
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        (incidents,) = conn.execute("SELECT COUNT(*) FROM incidents").fetchone()
    assert incidents == len(groups)
