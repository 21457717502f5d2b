"""Slack inside pitcrew's own aiohttp app (bot/app.py): /slack/events through Bolt, the outbox worker
and metrics, and `post_incident` as the pipeline calls it."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot import keys
from bot.app import create_app
from bot.config import Config, parse_config
from bot.slack import blocks as B
from bot.wiring.slack import post_incident
from tests.support.slack import (
    BOT_TOKEN,
    SIGNING_SECRET,
    SlackApiServer,
    block_actions_body,
    sample_findings,
    sign,
    slash_command_body,
)

pytestmark = pytest.mark.integration

TOKEN = "webhook-token-0123456789"
ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def make_config(tmp_path: Path, api: SlackApiServer | None) -> Config:
    data: dict[str, Any] = {
        "store": {"path": str(tmp_path / "pitcrew.db")},
        "webhook": {"bearer_token_env": "T_WEBHOOK"},
        "workers": {"concurrency": 1, "poll_interval_seconds": 0.2, "retry_delay_seconds": 0.05},
    }
    env = {"T_WEBHOOK": TOKEN, "T_SLACK_BOT": BOT_TOKEN, "T_SLACK_SIGNING": SIGNING_SECRET}
    if api is not None:
        data["slack"] = {
            "enabled": True,
            "bot_token_env": "T_SLACK_BOT",
            "signing_secret_env": "T_SLACK_SIGNING",
            "api_base_url": api.base_url,
            "default_channel": "C-ALERTS",
            "approvers": {"users": ["UALICE"]},
        }
    return parse_config(data, env=env)


def alert_payload(group_key: str = "g-wiring") -> dict[str, Any]:
    labels = {"alertname": "KubePodCrashLooping", "namespace": "monitoring", "severity": "warning"}
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "pitcrew",
        "groupLabels": {"alertname": "KubePodCrashLooping"},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {},
                "startsAt": "2026-11-25T08:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": "f1",
            }
        ],
    }


async def test_slack_disabled_means_no_events_endpoint(tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    async def nothing(incident_id: int) -> None:
        return None

    client = await aiohttp_client(create_app(make_config(tmp_path, None), processor=nothing))
    body = slash_command_body("help", response_url="http://127.0.0.1:9/x")
    resp = await client.post("/slack/events", data=body, headers=sign(body))
    assert resp.status == 404
    assert keys.SLACK not in client.app  # type: ignore[union-attr]


async def test_pipeline_posts_through_the_app_and_clicks_reach_bolt(
    tmp_path: Path, aiohttp_client: ClientFactory, slack_api: SlackApiServer
) -> None:
    app_holder: list[web.Application] = []

    async def diagnose_and_post(incident_id: int) -> None:
        # Stands in for bot.pipeline.process_incident: store a diagnosis, then post as the pipeline does.
        app = app_holder[0]
        await app[keys.STORE].save_diagnosis(incident_id, sample_findings(), dry_run_diff=None, error=None)
        assert await post_incident(app, incident_id)

    app = create_app(make_config(tmp_path, slack_api), processor=diagnose_and_post)
    app_holder.append(app)
    client = await aiohttp_client(app)

    resp = await client.post(
        "/webhooks/alertmanager", json=alert_payload(), headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert resp.status == 200
    await slack_api.wait_for(
        lambda a: len(a.ok_calls("chat.postMessage")) == 2, what="incident message and details reply"
    )
    assert B.ACTION_APPROVE in slack_api.ok_calls("chat.postMessage")[0].action_ids()

    body = slash_command_body("help", response_url=slack_api.response_url())
    resp = await client.post("/slack/events", data=body, headers=sign(body))
    assert resp.status == 200 and "/pitcrew status" in await resp.text()

    body = block_actions_body(
        B.ACTION_APPROVE, "1", user_id="UMALLORY", response_url=slack_api.response_url()
    )
    resp = await client.post(
        "/slack/events", data=body, headers=sign(body, timestamp=int(time.time()) - 3600)
    )
    assert resp.status == 401
    resp = await client.post("/slack/events", data=body, headers=sign(body))
    assert resp.status == 200
    await slack_api.wait_for(lambda a: bool(a.responses), what="denial")
    assert "not an approver" in slack_api.responses[0]["text"]

    metrics = await (await client.get("/metrics")).text()
    assert 'pitcrew_slack_requests_rejected_total{reason="stale"} 1' in metrics
    assert 'pitcrew_slack_outbox_deliveries_total{outcome="sent"} 2' in metrics
    assert "pitcrew_slack_outbox_backlog 0" in metrics


async def test_validate_command_checks_the_emulated_cluster(
    tmp_path: Path, aiohttp_client: ClientFactory, slack_api: SlackApiServer, kube_writes: Any, stack: Any
) -> None:
    kube, _ = kube_writes
    config = parse_config(
        {
            "store": {"path": str(tmp_path / "pitcrew.db")},
            "webhook": {"bearer_token_env": "T_WEBHOOK"},
            "cluster": {
                "kubeconfig": str(kube.kubeconfig),
                "in_cluster": False,
                "namespaces": ["monitoring"],
            },
            "validation": {
                "prometheus_url": stack.prometheus_url,
                "loki_url": stack.loki_url,
                "http_timeout_seconds": 2,
            },
            "slack": {
                "enabled": True,
                "bot_token_env": "T_SLACK_BOT",
                "signing_secret_env": "T_SLACK_SIGNING",
                "api_base_url": slack_api.base_url,
                "default_channel": "C-ALERTS",
            },
        },
        env={"T_WEBHOOK": TOKEN, "T_SLACK_BOT": BOT_TOKEN, "T_SLACK_SIGNING": SIGNING_SECRET},
    )

    async def nothing(incident_id: int) -> None:
        return None

    client = await aiohttp_client(create_app(config, processor=nothing))
    body = slash_command_body("validate monitoring", response_url=slack_api.response_url())
    resp = await client.post("/slack/events", data=body, headers=sign(body))
    assert resp.status == 200
    await slack_api.wait_for(lambda a: bool(a.responses), within=30, what="validation answer")
    answer = slack_api.responses[0]
    assert answer["text"].startswith("Validation of monitoring:")
    # The seed incident: Prometheus crash-looping, so the pod readiness check fails.
    assert "failed of" in answer["text"] and not answer["text"].startswith(
        "Validation of monitoring: 0 failed"
    )
    assert "prometheus-0" in json.dumps(answer["blocks"])
