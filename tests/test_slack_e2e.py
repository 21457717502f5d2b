"""End to end: a real Alertmanager fires -> pitcrew (its real app, pipeline and store) diagnoses the seed
incident from the emulated cluster -> the recording Slack server receives the incident message with
Approve -> signed clicks (an unauthorised user; two approvers at once) -> one remediation runs against
the emulator -> thread replies in order -> final message with Rollback -> Rollback restores it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import ClientSession, web

from bot import keys
from bot.app import create_app
from bot.config import Config, parse_config
from bot.model import WorkState
from bot.slack import blocks as B
from tests.support.alertmanager import Alertmanager
from tests.support.kube import KubeHarness
from tests.support.kube_writes import Kubelet, WriteSemantics, live_object
from tests.support.slack import (
    BOT_TOKEN,
    SIGNING_SECRET,
    ApiCall,
    SlackApiServer,
    block_actions_body,
    sign,
)
from tests.support.stackstubs import GRAFANA_TOKEN, Stack

pytestmark = pytest.mark.integration

WEBHOOK_TOKEN = "e2e-webhook-token-0123456789"
NS = "monitoring"


def make_config(
    tmp_path: Path, kube: KubeHarness, stack: Stack, api: SlackApiServer, am_url: str, port: int
) -> Config:
    return parse_config(
        {
            "server": {"listen_host": "127.0.0.1", "listen_port": port},
            "store": {"path": str(tmp_path / "pitcrew.db")},
            "webhook": {"bearer_token_env": "E2E_WEBHOOK"},
            "workers": {"concurrency": 1, "poll_interval_seconds": 0.2},
            "cluster": {"kubeconfig": str(kube.kubeconfig), "in_cluster": False, "namespaces": [NS]},
            "remediation": {"backup_dir": str(tmp_path / "backups"), "wait_ready_timeout_seconds": 30},
            "validation": {
                "prometheus_url": stack.prometheus_url,
                "loki_url": stack.loki_url,
                "grafana_url": stack.grafana_url,
                "grafana_token_env": "E2E_GRAFANA",
                "http_timeout_seconds": 5,
            },
            "slack": {
                "enabled": True,
                "bot_token_env": "E2E_SLACK_BOT",
                "signing_secret_env": "E2E_SLACK_SIGNING",
                "api_base_url": api.base_url,
                "default_channel": "C-ALERTS",
                "approvers": {"users": ["UALICE", "UBOB"]},
            },
            "alertmanager": {"url": am_url},
        },
        env={
            "E2E_WEBHOOK": WEBHOOK_TOKEN,
            "E2E_GRAFANA": GRAFANA_TOKEN,
            "E2E_SLACK_BOT": BOT_TOKEN,
            "E2E_SLACK_SIGNING": SIGNING_SECRET,
        },
    )


@contextlib.asynccontextmanager
async def serve(app: web.Application, port: int) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def thread(api: SlackApiServer, ts: str) -> list[ApiCall]:
    return [c for c in api.ok_calls("chat.postMessage") if c.thread_ts == ts]


def parent_versions(api: SlackApiServer, ts: str) -> list[ApiCall]:
    return [c for c in api.ok_calls("chat.update") if c.args.get("ts") == ts]


async def test_alert_to_approved_fix_in_slack(
    tmp_path: Path,
    kube_writes: tuple[KubeHarness, WriteSemantics],
    stack: Stack,
    slack_api: SlackApiServer,
    alertmanager_factory: Callable[..., Alertmanager],
) -> None:
    from tests.support.alertmanager import free_port

    kube, semantics = kube_writes
    sts_before = live_object(kube, "StatefulSet", "prometheus", NS)
    assert sts_before is not None
    port = free_port()
    am = alertmanager_factory(f"http://127.0.0.1:{port}/webhooks/alertmanager", WEBHOOK_TOKEN)
    config = make_config(tmp_path, kube, stack, slack_api, am.url, port)
    app = create_app(config)
    kubelet = Kubelet(kube, semantics, ready=True)
    kubelet.watch(NS, "prometheus-0")
    kubelet.watch(NS, "loki-0")

    async with serve(app, port) as base, kubelet, ClientSession() as http:
        am.post_alerts(
            [
                {
                    "labels": {"alertname": "PrometheusDown", "namespace": NS, "severity": "critical"},
                    "annotations": {"summary": "Prometheus is down"},
                }
            ]
        )
        # Alertmanager -> webhook -> store -> worker -> pipeline (diagnosis of the emulated cluster)
        # -> Slack message with Approve.
        await slack_api.wait_for(
            lambda a: any(B.ACTION_APPROVE in c.action_ids() for c in a.ok_calls("chat.postMessage")),
            within=60,
            what="incident message with Approve",
        )
        parent = next(c for c in slack_api.ok_calls("chat.postMessage") if B.ACTION_APPROVE in c.action_ids())
        assert parent.channel == "C-ALERTS" and parent.thread_ts is None
        assert "`pod/prometheus-0 -n monitoring`" in parent.text and "PrometheusDown" in parent.text
        store = app[keys.STORE]
        stored = await store.list_incidents(limit=5)
        assert len(stored) == 1
        incident_id = stored[0].id
        message = None
        for _ in range(200):  # the worker records the parent's ts just after Slack answers
            message = await store.get_slack_message(incident_id)
            if message is not None:
                break
            await asyncio.sleep(0.02)
        assert message is not None
        channel, ts = message
        assert channel == "C-ALERTS"
        await slack_api.wait_for(lambda a: bool(thread(a, ts)), what="details reply")
        assert "permission denied" in thread(slack_api, ts)[0].text
        approve_value = next(
            el["value"]
            for b in parent.args["blocks"]
            if b["type"] == "actions"
            for el in b["elements"]
            if el["action_id"] == B.ACTION_APPROVE
        )
        assert approve_value == str(incident_id)

        async def click(action: str, value: str, user: str) -> int:
            body = block_actions_body(
                action,
                value,
                user_id=user,
                channel_id=channel,
                message_ts=ts,
                response_url=slack_api.response_url(user),
            )
            async with http.post(f"{base}/slack/events", data=body.encode(), headers=sign(body)) as resp:
                return resp.status

        # An unauthorised user: an ephemeral explanation, nothing changes.
        assert await click(B.ACTION_APPROVE, approve_value, "UMALLORY") == 200
        await slack_api.wait_for(lambda a: bool(a.responses), what="denial")
        assert "not an approver" in slack_api.responses[0]["text"]
        assert await store.list_executions(incident_id) == []
        assert live_object(kube, "StatefulSet", "prometheus", NS) == sts_before

        # Two approvers at once, one of them twice: exactly one execution.
        statuses = await asyncio.gather(
            click(B.ACTION_APPROVE, approve_value, "UALICE"),
            click(B.ACTION_APPROVE, approve_value, "UBOB"),
            click(B.ACTION_APPROVE, approve_value, "UALICE"),
        )
        assert statuses == [200, 200, 200]
        await slack_api.wait_for(
            lambda a: any(B.ACTION_ROLLBACK in c.action_ids() for c in thread(a, ts)),
            within=90,
            what="final thread reply with Rollback",
        )
        executions = await store.list_executions(incident_id)
        assert len(executions) == 1 and executions[0].status == "succeeded", executions
        async with http.get(f"{base}/metrics") as resp:  # what pitcrew's own alert rules watch
            assert (
                'pitcrew_executions_total{namespace="monitoring",outcome="succeeded"} 1' in await resp.text()
            )

        # The thread: the details reply, one living status of the execution, one final reply.
        details, status, final = thread(slack_api, ts)
        assert "Details of incident" in details.text
        shown = json.dumps(slack_api.message(channel, status.response["ts"]), ensure_ascii=False)
        # Every step of the real executor, in order, each done; the backup ids; validation after them.
        marks = [shown.index(f"✅ {i}. *") for i in range(1, 5)]
        assert marks == sorted(marks), shown
        assert "backup `b-" in shown and shown.index("*validate*") > marks[-1]
        assert "✅ *Fixed* by <@UALICE>, <@UBOB> in " in final.text and "succeeded" not in shown
        assert B.ACTION_ROLLBACK in final.action_ids()

        await slack_api.wait_for(
            lambda a: B.ACTION_ROLLBACK in parent_versions(a, ts)[-1].action_ids(),
            what="parent final state",
        )
        final_parent = parent_versions(slack_api, ts)[-1]
        assert "✅ FIXED · PrometheusDown" in final_parent.text
        assert "Fixed by <@UALICE>, <@UBOB> in " in final_parent.text
        sts_after = live_object(kube, "StatefulSet", "prometheus", NS)
        assert sts_after is not None and sts_after["spec"] != sts_before["spec"]
        refreshed = await store.get_incident(incident_id)
        assert refreshed is not None and refreshed.work_state is WorkState.SUCCEEDED

        # Rollback, by an approver, from the final message.
        assert await click(B.ACTION_ROLLBACK, str(executions[0].id), "UBOB") == 200
        await slack_api.wait_for(
            lambda a: any("Rolled back" in c.text for c in parent_versions(a, ts)),
            within=60,
            what="rolled back",
        )
        restored = live_object(kube, "StatefulSet", "prometheus", NS)
        assert restored is not None
        assert json.dumps(restored["spec"], sort_keys=True) == json.dumps(sts_before["spec"], sort_keys=True)
        audit = [(e.actor, e.action) for e in await store.list_audit(incident_id=incident_id)]
        assert ("slack:UMALLORY", "approve denied") in audit


async def test_diagnose_command_posts_the_result_with_buttons_where_it_was_asked(
    tmp_path: Path,
    kube_writes: tuple[KubeHarness, WriteSemantics],
    stack: Stack,
    slack_api: SlackApiServer,
) -> None:
    from tests.support.alertmanager import free_port
    from tests.support.slack import slash_command_body

    kube, _ = kube_writes
    port = free_port()
    app = create_app(make_config(tmp_path, kube, stack, slack_api, "http://127.0.0.1:9", port))
    async with serve(app, port) as base, ClientSession() as http:
        body = slash_command_body(
            "diagnose monitoring", user_id="UALICE", channel_id="C-OPS", response_url=slack_api.response_url()
        )
        async with http.post(f"{base}/slack/events", data=body.encode(), headers=sign(body)) as resp:
            assert resp.status == 200
        await slack_api.wait_for(lambda a: bool(a.responses), what="acknowledgement")
        assert "Diagnosing monitoring" in slack_api.responses[0]["text"]
        await slack_api.wait_for(
            lambda a: any(
                c.channel == "C-OPS" and c.thread_ts is None for c in a.ok_calls("chat.postMessage")
            ),
            within=60,
            what="diagnosis posted in the asking channel",
        )
        posted = next(c for c in slack_api.ok_calls("chat.postMessage") if c.channel == "C-OPS")
        assert "`pod/prometheus-0 -n monitoring`" in posted.text
        await slack_api.wait_for(
            lambda a: any(c.thread_ts is not None for c in a.ok_calls("chat.postMessage")), what="details"
        )
        details = next(c for c in slack_api.ok_calls("chat.postMessage") if c.thread_ts is not None)
        assert "volume-permission-denied" in details.text
        assert B.ACTION_APPROVE in posted.action_ids() and B.ACTION_DETAILS in posted.action_ids()
