"""deploy/alertmanager/receiver.yaml, as shipped, drives a real Alertmanager into pitcrew: the route sends
the monitoring namespace's alerts to pitcrew (and nothing else), the bearer token is read from
`credentials_file`, and resolved notifications arrive (`send_resolved`). pitcrew runs in-process with
deploy/config.yaml (moved to loopback and a temp dir). Only the addresses and Alertmanager's wait times
are changed from the snippet."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from bot import keys
from bot.app import WEBHOOK_PATH, create_app
from bot.config import parse_config
from bot.model import IncidentStatus
from tests.support.alertmanager import ALERTMANAGER_BIN, Alertmanager, free_port, http_json, wait_until
from tests.support.deploy import DEPLOY_DIR

pytestmark = pytest.mark.integration

TOKEN = "deploy-e2e-webhook-token-3c1f"


def _alert(alertname: str, namespace: str, ends_at: str | None = None) -> dict[str, Any]:
    started = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    alert: dict[str, Any] = {
        "labels": {
            "alertname": alertname,
            "namespace": namespace,
            "service": "prometheus",
            "severity": "critical",
        },
        "annotations": {"summary": f"{alertname} in {namespace}"},
        "startsAt": started,
    }
    if ends_at:
        alert["endsAt"] = ends_at
    return alert


def _alertmanager_yml(webhook_url: str, token_file: Path) -> dict[str, Any]:
    """The user's whole config: their own receiver at the root, the shipped snippet merged in."""
    snippet = yaml.safe_load((DEPLOY_DIR / "alertmanager" / "receiver.yaml").read_text())
    (route,) = snippet["route"]["routes"]
    route.update(group_wait="1s", group_interval="1s")
    (receiver,) = snippet["receivers"]
    (hook,) = receiver["webhook_configs"]
    hook["url"] = webhook_url
    hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    return {
        "route": {"receiver": "people", "group_wait": "1s", "group_interval": "1s", "routes": [route]},
        "receivers": [{"name": "people"}, receiver],
    }


@pytest.fixture
def start_alertmanager(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], Alertmanager]]:
    started: list[Alertmanager] = []

    def start(config: dict[str, Any]) -> Alertmanager:
        workdir = tmp_path / "alertmanager"
        workdir.mkdir()
        config_path = workdir / "alertmanager.yml"
        config_path.write_text(json.dumps(config))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log_path = workdir / "alertmanager.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    ALERTMANAGER_BIN,
                    f"--config.file={config_path}",
                    f"--storage.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    f"--web.external-url={url}",
                    "--cluster.listen-address=",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        am = Alertmanager(url=url, process=process, log_path=log_path)
        started.append(am)

        def ready() -> bool:
            if process.poll() is not None:
                pytest.fail(f"Alertmanager exited with {process.returncode}:\n{am.log()[-3000:]}")
            try:
                return http_json("GET", f"{url}/-/ready", timeout=1)[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout=20, what="Alertmanager to be ready")
        return am

    yield start
    for am in started:
        am.stop()


async def _poll(check: Callable[[], Awaitable[bool]], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)


async def test_shipped_receiver_delivers_monitoring_alerts_to_pitcrew(
    tmp_path: Path, aiohttp_client: Any, start_alertmanager: Callable[[dict[str, Any]], Alertmanager]
) -> None:
    raw = yaml.safe_load((DEPLOY_DIR / "config.yaml").read_text())
    raw["server"]["listen_host"] = "127.0.0.1"
    raw["store"]["path"] = str(tmp_path / "pitcrew.db")
    raw["remediation"]["backup_dir"] = str(tmp_path / "backups")
    raw["slack"]["enabled"] = False  # Slack has its own tests; this one is about Alertmanager
    config = parse_config(
        raw, env={"PITCREW_WEBHOOK_TOKEN": TOKEN, "SLACK_BOT_TOKEN": "x", "SLACK_SIGNING_SECRET": "x"}
    )
    processed: list[int] = []

    async def processor(incident_id: int) -> None:
        processed.append(incident_id)

    app: web.Application = create_app(config, processor=processor)
    client = await aiohttp_client(app)
    token_file = tmp_path / "webhook-token"
    token_file.write_text(TOKEN + "\n")  # as `kubectl create secret` + a mounted file would give it
    webhook_url = f"http://127.0.0.1:{client.server.port}{WEBHOOK_PATH}"
    am = await asyncio.to_thread(start_alertmanager, _alertmanager_yml(webhook_url, token_file))
    store = app[keys.STORE]

    ours = _alert("KubeServiceNoEndpoints", "monitoring")
    theirs = _alert("KubeServiceNoEndpoints", "payments")
    await asyncio.to_thread(am.post_alerts, [ours, theirs])

    async def stored() -> bool:
        return len(await store.list_incidents()) == 1

    await _poll(stored, within=30, what="the monitoring alert to reach pitcrew")
    (incident,) = await store.list_incidents()
    assert incident.receiver == "pitcrew"
    assert [a.labels["namespace"] for a in incident.alerts] == ["monitoring"]
    # Alertmanager routed the other namespace's alert to the people's receiver only.
    routed = {
        a["labels"]["namespace"]: sorted(r["name"] for r in a["receivers"])
        for a in await asyncio.to_thread(am.alerts)
    }
    assert routed == {"monitoring": ["pitcrew"], "payments": ["people"]}
    metrics = await (await client.get("/metrics")).text()
    assert 'pitcrew_webhooks_rejected_total{reason="unauthorized"} 0' in metrics

    ended = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)).isoformat().replace("+00:00", "Z")
    await asyncio.to_thread(am.post_alerts, [_alert("KubeServiceNoEndpoints", "monitoring", ends_at=ended)])

    async def resolved() -> bool:
        (current,) = await store.list_incidents()
        return current.status is IncidentStatus.RESOLVED

    await _poll(resolved, within=30, what="the resolved notification (send_resolved: true)")
