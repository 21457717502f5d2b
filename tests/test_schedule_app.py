"""The scheduler inside pitcrew's own aiohttp app: started by its cleanup context after the store and
Slack, a run missed just before start-up posted once through the outbox to the Slack stand-in, the
`/pitcrew summary` command answered with the same summary, and everything stopped on shutdown."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot import keys
from bot.app import create_app
from bot.config import Config, parse_config
from bot.schedule import last_run_key
from tests.support.kube import KubeHarness
from tests.support.schedule import degraded_namespace
from tests.support.slack import BOT_TOKEN, SIGNING_SECRET, SlackApiServer, sign, slash_command_body

pytestmark = pytest.mark.integration

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def app_config(
    tmp_path: Path, kube: KubeHarness, api: SlackApiServer, cron: str, slack: bool = True
) -> Config:
    return parse_config(
        {
            "store": {"path": str(tmp_path / "pitcrew.db")},
            "webhook": {"bearer_token_env": "T_WEBHOOK"},
            "cluster": {
                "kubeconfig": str(kube.kubeconfig),
                "in_cluster": False,
                "request_timeout_seconds": 5,
            },
            "validation": {"http_timeout_seconds": 2},
            "slack": {
                "enabled": slack,
                "bot_token_env": "T_SLACK_BOT",
                "signing_secret_env": "T_SLACK_SIGNING",
                "api_base_url": api.base_url,
                "default_channel": "C-ALERTS",
            },
            "schedules": [
                {
                    "name": "daily",
                    "cron": cron,
                    "timezone": "UTC",
                    "channel": "C-OPS",
                    "namespaces": ["monitoring"],
                    "missed_grace_seconds": 600,
                }
            ],
        },
        env={
            "T_WEBHOOK": "webhook-token-0123456789",
            "T_SLACK_BOT": BOT_TOKEN,
            "T_SLACK_SIGNING": SIGNING_SECRET,
        },
    )


async def no_processing(incident_id: int) -> None:
    """The incident pipeline is not under test here."""


def cron_a_minute_ago() -> str:
    """A daily cron whose latest fire time was about a minute before now: due once, within grace."""
    earlier = datetime.now(UTC) - timedelta(minutes=1)
    return f"{earlier.minute} {earlier.hour} * * *"


async def test_missed_run_is_posted_at_start_up_and_summary_command_answers(
    tmp_path: Path, kube: KubeHarness, slack_api: SlackApiServer, aiohttp_client: ClientFactory
) -> None:
    kube.seed(degraded_namespace("monitoring"))
    app = create_app(app_config(tmp_path, kube, slack_api, cron_a_minute_ago()), processor=no_processing)
    client = await aiohttp_client(app)
    scheduler = app[keys.SCHEDULER]
    await scheduler.wait_idle()
    assert [r.outcome for r in scheduler.results] == ["posted"]
    await slack_api.wait_for(
        lambda a: any(c.channel == "C-OPS" for c in a.ok_calls("chat.postMessage")), what="scheduled summary"
    )
    (posted,) = [c for c in slack_api.ok_calls("chat.postMessage") if c.channel == "C-OPS"]
    assert posted.args["text"].startswith("monitoring: ") and "problems" in posted.args["text"]
    assert "StatefulSet prometheus: 0/1 ready" in posted.text
    assert await app[keys.STORE].get_kv(last_run_key("daily")) is not None

    # On demand, from Slack: the same summary, posted to the channel the command came from.
    body = slash_command_body("summary", channel_id="C-ALERTS", response_url=slack_api.response_url())
    resp = await client.post("/slack/events", data=body, headers=sign(body))
    assert resp.status == 200
    await slack_api.wait_for(
        lambda a: any(c.channel == "C-ALERTS" for c in a.ok_calls("chat.postMessage")),
        what="on-demand summary",
    )
    (on_demand,) = [c for c in slack_api.ok_calls("chat.postMessage") if c.channel == "C-ALERTS"]
    assert "StatefulSet prometheus: 0/1 ready" in on_demand.text

    await client.close()
    assert not scheduler.scheduler.running


async def test_no_scheduler_when_slack_is_disabled(
    tmp_path: Path, kube: KubeHarness, slack_api: SlackApiServer, aiohttp_client: ClientFactory
) -> None:
    app = create_app(
        app_config(tmp_path, kube, slack_api, cron_a_minute_ago(), slack=False), processor=no_processing
    )
    client = await aiohttp_client(app)
    assert keys.SCHEDULER not in app
    assert await app[keys.STORE].get_kv(last_run_key("daily")) is None
    await client.close()
    assert slack_api.ok_calls("chat.postMessage") == []
