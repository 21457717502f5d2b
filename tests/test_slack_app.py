"""pitcrew's Slack app through Bolt's real request handling: signed slash commands, button clicks and
modal submissions over HTTP, against a real store and the recording Slack Web API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web

from bot.alertmanager_api import AlertmanagerApi
from bot.metrics import MetricsRegistry
from bot.model import WorkState
from bot.slack import blocks as B
from bot.slack.approvers import ApprovalPolicy, ApproverRule
from bot.slack.messages import IncidentMessages
from bot.slack.service import MAX_QUEUED_MANUAL_DIAGNOSES, SlackMetrics, SlackService
from bot.slack.settings import SlackSettings
from bot.store import Store
from tests.support.slack import (
    BOT_TOKEN,
    SIGNING_SECRET,
    ApiCall,
    ScriptedExecutor,
    SlackApiServer,
    block_actions_body,
    resolved_payload_for,
    seed_incident,
    serve_on_loopback,
    sign,
    slash_command_body,
    view_submission_body,
)

pytestmark = pytest.mark.integration

POLICY = ApprovalPolicy(default=ApproverRule(users=frozenset({"UALICE", "UBOB"}), groups=frozenset({"SOPS"})))


@dataclass
class Clock:
    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    api: SlackApiServer
    store: Store
    service: SlackService
    executor: ScriptedExecutor
    registry: MetricsRegistry
    url: str
    http: ClientSession
    clock: Clock

    async def post(self, body: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        async with self.http.post(self.url, data=body.encode(), headers=headers or sign(body)) as resp:
            return resp.status, await resp.text()

    async def click(self, action_id: str, value: str, user: str = "UALICE", **kwargs: Any) -> int:
        body = block_actions_body(
            action_id, value, user_id=user, response_url=self.api.response_url(user), **kwargs
        )
        status, _ = await self.post(body)
        return status

    async def command(self, text: str, user: str = "UALICE") -> tuple[int, str]:
        return await self.post(
            slash_command_body(text, user_id=user, response_url=self.api.response_url("cmd"))
        )

    async def posted(self, incident_id: int) -> tuple[str, str]:
        await self.api.wait_for(lambda a: bool(a.ok_calls("chat.postMessage")), what="incident post")
        message = None
        for _ in range(100):
            message = await self.store.get_slack_message(incident_id)
            if message:
                break
            await asyncio.sleep(0.02)
        assert message is not None
        return message


def thread(api: SlackApiServer, ts: str) -> list[ApiCall]:
    return [c for c in api.ok_calls("chat.postMessage") if c.thread_ts == ts]


def parent_updates(api: SlackApiServer, ts: str) -> list[ApiCall]:
    return [c for c in api.ok_calls("chat.update") if c.args.get("ts") == ts]


@contextlib.asynccontextmanager
async def make_env(
    api: SlackApiServer, tmp_path: Path, *, alertmanager_url: str | None = None, **settings_kwargs: Any
) -> AsyncIterator[Env]:
    clock = Clock()
    am_api = AlertmanagerApi(alertmanager_url) if alertmanager_url else None
    store = await Store.open(str(tmp_path / "pitcrew.db"))
    settings = SlackSettings(
        bot_token=BOT_TOKEN,
        signing_secret=SIGNING_SECRET,
        default_channel="C-ALERTS",
        api_base_url=api.base_url,
        policy=settings_kwargs.pop("policy", POLICY),
        alertmanager_url="http://127.0.0.1:9",
        **settings_kwargs,
    )
    registry = MetricsRegistry()
    executor = ScriptedExecutor(store)
    service = SlackService(
        settings,
        store,
        executor=executor,
        metrics=SlackMetrics.register(registry, store),
        sync_interval_seconds=0.1,
        clock=clock,
        alertmanager=am_api,
    )
    app = web.Application()
    app.router.add_post("/slack/events", service.handle_http)
    runner, port = await serve_on_loopback(app)
    await service.start()
    http = ClientSession()
    try:
        yield Env(
            api, store, service, executor, registry, f"http://127.0.0.1:{port}/slack/events", http, clock
        )
    finally:
        await http.close()
        await service.stop()
        await runner.cleanup()
        await store.close()
        if am_api is not None:
            await am_api.close()


@pytest.fixture
async def env(slack_api: SlackApiServer, tmp_path: Path) -> AsyncIterator[Env]:
    async with make_env(slack_api, tmp_path) as e:
        yield e


# ---------------------------------------------------------------------------------------------
# The incident message
# ---------------------------------------------------------------------------------------------


async def test_incident_posted_once_then_updated_in_place(env: Env) -> None:
    incident_id = await seed_incident(env.store)
    await env.service.post_incident(incident_id)
    channel, ts = await env.posted(incident_id)
    first = env.api.ok_calls("chat.postMessage")[0]
    assert channel == "C-ALERTS" and first.thread_ts is None
    assert B.ACTION_APPROVE in first.action_ids()
    assert "*Root cause:* `pod/prometheus-0 -n monitoring`" in first.text
    # The details (evidence, plan, commands, diff) are one thread reply, posted with the message.
    await env.api.wait_for(lambda a: bool(thread(a, ts)), what="details reply")
    (details,) = thread(env.api, ts)
    assert "prometheus-storage-permission" in details.text and "permission denied" in details.text

    # Re-notification of the same group: the same message is updated, never a second post.
    await env.service.post_incident(incident_id)
    await env.api.wait_for(lambda a: bool(parent_updates(a, ts)), what="chat.update")
    assert len([c for c in env.api.ok_calls("chat.postMessage") if c.thread_ts is None]) == 1

    # Resolution (through the store's real intake) updates the message and notes it in the thread.
    await env.store.record_webhook(resolved_payload_for())
    await env.api.wait_for(lambda a: any("Resolved" in c.text for c in thread(a, ts)), what="resolved note")
    await env.api.wait_for(lambda a: "RESOLVED" in parent_updates(a, ts)[-1].text, what="resolved header")
    assert B.ACTION_APPROVE not in parent_updates(env.api, ts)[-1].action_ids()


async def test_routing_by_severity(slack_api: SlackApiServer, tmp_path: Path) -> None:
    from bot.slack.settings import Route

    routes = (Route(channel="C-CRIT", severity="critical"), Route(channel="C-OPS", namespace="other"))
    async with make_env(slack_api, tmp_path, routes=routes) as env:
        incident_id = await seed_incident(env.store)
        await env.service.post_incident(incident_id)
        channel, _ = await env.posted(incident_id)
        assert channel == "C-CRIT"


# ---------------------------------------------------------------------------------------------
# Approve, execution thread, rollback
# ---------------------------------------------------------------------------------------------


async def test_signed_approve_runs_the_plan_with_one_living_status_and_one_final_reply(env: Env) -> None:
    incident_id = await seed_incident(env.store, severity="warning")
    await env.service.post_incident(incident_id)
    _, ts = await env.posted(incident_id)
    await env.api.wait_for(lambda a: len(thread(a, ts)) == 1, what="details reply")

    assert await env.click(B.ACTION_APPROVE, str(incident_id)) == 200
    await env.api.wait_for(
        lambda a: any(B.ACTION_ROLLBACK in c.action_ids() for c in thread(a, ts)),
        what="final reply with Rollback",
    )
    await env.api.wait_for(
        lambda a: "Fixed by <@UALICE> in " in parent_updates(a, ts)[-1].text, what="parent final"
    )
    # Counted per execution on the recording server: one living status (posted once, then edited
    # in place) and one final reply; the outcome is said once.
    replies = thread(env.api, ts)[1:]
    assert len(replies) <= 4
    status, final = replies
    assert "Fix in progress" in status.text
    edits = [c for c in env.api.ok_calls("chat.update") if c.args.get("ts") == status.response["ts"]]
    assert len(edits) >= 3, "the status follows the steps"
    last = env.api.message("C-ALERTS", status.response["ts"])
    shown = json.dumps(last, ensure_ascii=False)
    assert "Fix: steps of execution e-1" in shown and "backup `b-1`" in shown
    assert "✅ 3. *wait-ready* `pod/prometheus-0 -n monitoring`" in shown
    assert "✅ *validate* 1 checks passed" in shown
    assert "✅ *Fixed* by <@UALICE> in " in final.text and "prometheus-ready" in final.text
    assert B.ACTION_ROLLBACK in final.action_ids()
    said = [shown, *(c.text for c in replies[1:])]
    assert sum(t.count("succeeded") + t.count("*Fixed*") for t in said) == 1
    assert "slack:" not in shown + final.text

    final_parent = parent_updates(env.api, ts)[-1]
    assert "✅ FIXED · KubePodCrashLooping" in final_parent.text
    assert B.ACTION_ROLLBACK in final_parent.action_ids()
    assert B.ACTION_APPROVE not in final_parent.action_ids()
    assert B.ACTION_REJECT not in final_parent.action_ids()
    # While it ran, the parent said FIXING.
    assert any(c.text.startswith("⚙️ FIXING") for c in parent_updates(env.api, ts))
    assert env.executor.started == [1]
    decisions = await env.store.list_decisions(incident_id)
    assert [(d.user_id, d.decision) for d in decisions] == [("UALICE", "approve")]

    # Rollback, authorised like Approve.
    execution_id = env.executor.started[0]
    assert await env.click(B.ACTION_ROLLBACK, str(execution_id), user="UMALLORY") == 200
    await env.api.wait_for(lambda a: any("Not done" in r.get("text", "") for r in a.responses), what="denial")
    assert env.executor.rollbacks == []
    assert await env.click(B.ACTION_ROLLBACK, str(execution_id), user="UBOB") == 200
    await env.api.wait_for(
        lambda a: any("Rolled back" in c.text for c in parent_updates(a, ts)), what="rolled back"
    )
    assert env.executor.rollbacks == [execution_id]
    incident = await env.store.get_incident(incident_id)
    assert incident is not None and incident.work_state is WorkState.ROLLED_BACK


async def test_same_click_twice_and_two_users_at_once_start_one_execution(env: Env) -> None:
    env.executor.hold = asyncio.Event()
    incident_id = await seed_incident(env.store, severity="warning")
    await env.service.post_incident(incident_id)
    await env.posted(incident_id)
    statuses = await asyncio.gather(
        *(env.click(B.ACTION_APPROVE, str(incident_id), user=u) for u in ("UALICE", "UALICE", "UBOB", "UBOB"))
    )
    assert statuses == [200, 200, 200, 200]
    for _ in range(200):
        if len(await env.store.list_executions(incident_id)) == 1 and len(env.api.responses) >= 4:
            break
        await asyncio.sleep(0.02)
    env.executor.hold.set()
    await env.service.drain()
    assert len(await env.store.list_executions(incident_id)) == 1
    assert len(env.executor.started) == 1
    audit = [e.action for e in await env.store.list_audit(incident_id=incident_id)]
    assert audit.count("approved") == 4


async def test_target_locked_by_another_incident_is_explained_in_the_thread(env: Env) -> None:
    # Another incident's execution holds the same StatefulSet: this approval cannot run now, and the
    # approver must read why in the thread (not just "Approved. Executing...").
    env.executor.hold = asyncio.Event()
    first = await seed_incident(env.store, group="g1", severity="warning")
    second = await seed_incident(env.store, group="g2", severity="warning")
    await env.service.post_incident(first)
    await env.service.post_incident(second)
    await env.posted(first)
    _, ts = await env.posted(second)
    assert await env.click(B.ACTION_APPROVE, str(first)) == 200
    for _ in range(200):
        if env.executor.started:
            break
        await asyncio.sleep(0.02)
    assert env.executor.started, "the first execution did not start"
    assert await env.click(B.ACTION_APPROVE, str(second)) == 200
    await env.api.wait_for(
        lambda a: any(
            "Not executed" in c.text and "locked by running execution" in c.text for c in thread(a, ts)
        ),
        what="thread note explaining the refusal",
    )
    env.executor.hold.set()
    await env.service.drain()
    assert await env.store.list_executions(second) == []


async def test_unauthorised_click_changes_nothing_and_is_audited(env: Env) -> None:
    incident_id = await seed_incident(env.store, severity="warning")
    await env.service.post_incident(incident_id)
    await env.posted(incident_id)
    updates_before = len(env.api.ok_calls("chat.update"))

    assert await env.click(B.ACTION_APPROVE, str(incident_id), user="UMALLORY") == 200
    await env.api.wait_for(lambda a: bool(a.responses), what="ephemeral answer")
    answer = env.api.responses[0]
    assert answer["response_type"] == "ephemeral" and "not an approver" in answer["text"]
    await env.service.drain()
    incident = await env.store.get_incident(incident_id)
    assert incident is not None and incident.work_state is WorkState.DIAGNOSED
    assert await env.store.list_decisions(incident_id) == []
    assert await env.store.list_executions(incident_id) == []
    assert env.executor.started == []
    assert len(env.api.ok_calls("chat.update")) == updates_before
    audit = await env.store.list_audit(incident_id=incident_id)
    assert [(e.actor, e.action) for e in audit] == [("slack:UMALLORY", "approve denied")]


async def test_per_namespace_approvers_guard_the_namespace_the_plan_changes(
    slack_api: SlackApiServer, tmp_path: Path
) -> None:
    # The alert is labelled `other`, but the plan patches objects in `monitoring`, whose rule says UBOB.
    policy = ApprovalPolicy(
        default=POLICY.default, per_namespace={"monitoring": ApproverRule(users=frozenset({"UBOB"}))}
    )
    async with make_env(slack_api, tmp_path, policy=policy) as env:
        incident_id = await seed_incident(env.store, severity="warning", namespace="other")
        await env.service.post_incident(incident_id)
        await env.posted(incident_id)
        assert await env.click(B.ACTION_APPROVE, str(incident_id), user="UALICE") == 200
        await env.api.wait_for(lambda a: bool(a.responses), what="refusal")
        assert "not an approver for namespace monitoring" in env.api.responses[0]["text"]
        await env.service.drain()
        assert env.executor.started == [] and await env.store.list_decisions(incident_id) == []
        assert await env.click(B.ACTION_APPROVE, str(incident_id), user="UBOB") == 200
        await env.api.wait_for(lambda a: len(a.responses) >= 2, what="approval")
        await env.service.drain()
        assert env.executor.started == [1]


async def test_group_membership_authorises(env: Env) -> None:
    env.api.usergroups["SOPS"] = ["UCAROL"]
    incident_id = await seed_incident(env.store, severity="warning")
    await env.service.post_incident(incident_id)
    await env.posted(incident_id)
    assert await env.click(B.ACTION_APPROVE, str(incident_id), user="UCAROL") == 200
    await env.api.wait_for(lambda a: bool(a.responses), what="answer")
    await env.service.drain()
    assert env.executor.started == [1]
    assert env.api.ok_calls("usergroups.users.list")[0].args["usergroup"] == "SOPS"
    # Membership is cached briefly: a second click does not ask Slack again.
    assert await env.click(B.ACTION_DETAILS, str(incident_id), user="UCAROL") == 200
    assert await env.click(B.ACTION_APPROVE, str(incident_id), user="UCAROL") == 200
    await env.api.wait_for(lambda a: len(a.responses) >= 2, what="answers")
    assert env.api.ok_calls("views.open")  # Details opened its modal
    assert any("nothing to approve now" in r["text"] for r in env.api.responses)
    assert len(env.api.ok_calls("usergroups.users.list")) == 1


async def test_critical_plan_needs_two_distinct_approvers(slack_api: SlackApiServer, tmp_path: Path) -> None:
    policy = ApprovalPolicy(default=POLICY.default, two_for_critical=True)
    async with make_env(slack_api, tmp_path, policy=policy) as env:
        incident_id = await seed_incident(env.store, severity="critical")
        await env.service.post_incident(incident_id)
        _, parent_ts = await env.posted(incident_id)
        assert await env.click(B.ACTION_APPROVE, str(incident_id), user="UALICE") == 200
        assert await env.click(B.ACTION_APPROVE, str(incident_id), user="UALICE") == 200  # same person again
        await env.api.wait_for(lambda a: len(a.responses) >= 2, what="answers")
        await env.service.drain()
        assert env.executor.started == []
        assert all("needs 2 distinct approvers" in r["text"] for r in env.api.responses)
        await env.api.wait_for(
            lambda a: any("(1 so far: <@UALICE>)" in c.text for c in parent_updates(a, parent_ts)),
            what="waiting for second",
        )
        assert await env.click(B.ACTION_APPROVE, str(incident_id), user="UBOB") == 200
        await env.api.wait_for(lambda a: len(a.responses) >= 3, what="third answer")
        await env.service.drain()
        assert env.executor.started == [1]


async def test_expired_approval_says_so(env: Env) -> None:
    incident_id = await seed_incident(env.store, severity="warning")
    await env.service.post_incident(incident_id)
    _, ts = await env.posted(incident_id)
    env.clock.now += 3601  # default expiry is an hour
    # The message says so by itself (the sync loop re-renders it when the offer expires)...
    await env.api.wait_for(
        lambda a: any("Approval expired" in c.text for c in parent_updates(a, ts)), what="expiry"
    )
    assert B.ACTION_APPROVE not in parent_updates(env.api, ts)[-1].action_ids()
    # ...and a click on the old button is refused with the reason.
    assert await env.click(B.ACTION_APPROVE, str(incident_id)) == 200
    await env.api.wait_for(lambda a: bool(a.responses), what="answer")
    assert "expired" in env.api.responses[0]["text"]
    await env.api.wait_for(
        lambda a: any("Approval expired" in c.text for c in parent_updates(a, ts)), what="expired"
    )
    assert B.ACTION_APPROVE not in parent_updates(env.api, ts)[-1].action_ids()
    assert env.executor.started == []


async def test_expiry_is_still_rendered_after_a_restart(env: Env) -> None:
    # The expiry schedule lives in memory: a restarted pitcrew must find the open offers again.
    incident_id = await seed_incident(env.store, severity="warning")
    await env.service.post_incident(incident_id)
    await env.posted(incident_id)
    await env.service.stop()  # pitcrew goes down; its in-memory schedule with it
    restarted = IncidentMessages(env.store, env.service.settings, clock=env.clock)
    await restarted.restore_offers()
    env.clock.now += 3601
    await restarted.sync(env.clock.now - 1)
    queued = await env.store.due_outbox(env.clock.now + 1, 50)
    assert any("Approval expired" in item.payload_json for item in queued), [i.payload_json for i in queued]


# ---------------------------------------------------------------------------------------------
# Reject (modal) and Details
# ---------------------------------------------------------------------------------------------


async def test_reject_opens_a_modal_and_submission_records_who_and_why(env: Env) -> None:
    incident_id = await seed_incident(env.store, severity="warning")
    await env.service.post_incident(incident_id)
    _, ts = await env.posted(incident_id)
    assert await env.click(B.ACTION_REJECT, str(incident_id), user="UBOB") == 200
    await env.api.wait_for(lambda a: bool(a.ok_calls("views.open")), what="views.open")
    view = env.api.ok_calls("views.open")[0].args["view"]
    assert view["callback_id"] == B.REJECT_MODAL

    values = {
        B.REJECT_REASON_BLOCK: {
            B.REJECT_REASON_INPUT: {"type": "plain_text_input", "value": "not during the demo"}
        }
    }
    body = view_submission_body(B.REJECT_MODAL, view["private_metadata"], values, user_id="UBOB")
    status, text = await env.post(body)
    assert status == 200 and text == ""
    await env.api.wait_for(
        lambda a: any("Rejected by <@UBOB>" in c.text for c in parent_updates(a, ts)), what="rejected"
    )
    assert "not during the demo" in parent_updates(env.api, ts)[-1].text
    decisions = await env.store.list_decisions(incident_id)
    assert [(d.user_id, d.decision, d.reason) for d in decisions] == [
        ("UBOB", "reject", "not during the demo")
    ]
    await env.api.wait_for(lambda a: bool(a.ok_calls("chat.postEphemeral")), what="ephemeral confirmation")

    # Approving a rejected incident does nothing.
    assert await env.click(B.ACTION_APPROVE, str(incident_id)) == 200
    await env.api.wait_for(lambda a: any("rejected" in r["text"] for r in a.responses), what="refusal")
    assert env.executor.started == []


async def test_details_opens_a_modal_with_the_clicks_trigger_id(env: Env) -> None:
    incident_id = await seed_incident(env.store)
    assert await env.click(B.ACTION_DETAILS, str(incident_id)) == 200
    await env.api.wait_for(lambda a: bool(a.ok_calls("views.open")), what="details modal")
    (call,) = env.api.ok_calls("views.open")
    assert call.args["trigger_id"] == f"trigger-{B.ACTION_DETAILS}-UALICE"
    view = json.dumps(call.args["view"], ensure_ascii=False)
    assert "permission denied" in view and "kubectl delete pod/prometheus-0 -n monitoring" in view
    assert "runAsUser: 65534" in view
    # The Silence link button's click is acknowledged (Slack shows an error otherwise).
    assert await env.click(B.ACTION_SILENCE, str(incident_id)) == 200


# ---------------------------------------------------------------------------------------------
# Signatures
# ---------------------------------------------------------------------------------------------


async def test_forged_and_stale_signatures_are_rejected_and_counted(env: Env) -> None:
    incident_id = await seed_incident(env.store, severity="warning")
    body = block_actions_body(B.ACTION_APPROVE, str(incident_id), response_url=env.api.response_url())
    forged = sign(body, secret="not-the-secret")
    stale = sign(body, timestamp=int(time.time()) - 600)
    tampered = sign(body)
    assert (await env.post(body, forged))[0] == 401
    assert (await env.post(body, stale))[0] == 401
    assert (await env.post(body.replace("UALICE", "UBOB"), tampered))[0] == 401
    assert (await env.post(body, {"Content-Type": "application/x-www-form-urlencoded"}))[0] == 401
    metrics = await env.registry.render()
    assert 'pitcrew_slack_requests_rejected_total{reason="invalid_signature"} 3' in metrics
    assert 'pitcrew_slack_requests_rejected_total{reason="stale"} 1' in metrics
    await env.service.drain()
    assert await env.store.list_decisions(incident_id) == []
    assert env.executor.started == []
    assert env.api.responses == []


# ---------------------------------------------------------------------------------------------
# Slash command
# ---------------------------------------------------------------------------------------------


async def test_help_and_malformed_commands_get_usage_in_the_ack(env: Env) -> None:
    status, text = await env.command("help")
    assert status == 200 and "/pitcrew silence INCIDENT DURATION" in text
    status, text = await env.command("frobnicate now")
    assert status == 200 and "unknown subcommand 'frobnicate'" in text and "Usage" in text
    status, text = await env.command("silence 3 forever")
    assert status == 200 and "not a duration" in text


async def test_history_lists_executions_as_rollback_takes_them(env: Env) -> None:
    incident_id = await seed_incident(env.store)
    execution = await env.store.start_execution(incident_id, "cli", ["monitoring/StatefulSet/p"], "{}")
    await env.command("history 5")
    await env.api.wait_for(lambda a: bool(a.responses), what="history answer")
    # `/pitcrew rollback e-N` (and the CLI's `pitcrew rollback e-N`) take what this shows.
    assert f"execution e-{execution.id} · incident #{incident_id}" in json.dumps(
        env.api.responses[0], ensure_ascii=False
    )
    # People are mentions, never pitcrew's internal actor ids.
    other = await seed_incident(env.store, group="g2")
    await env.store.start_execution(other, "slack:UALICE,UBOB", ["monitoring/StatefulSet/q"], "{}")
    await env.command("history 5")
    await env.api.wait_for(lambda a: len(a.responses) >= 2, what="second history answer")
    text = json.dumps(env.api.responses[1], ensure_ascii=False)
    assert "by <@UALICE>, <@UBOB>" in text and "slack:UALICE" not in text and "by cli" in text


async def test_status_history_and_diagnose_commands(env: Env) -> None:
    incident_id = await seed_incident(env.store)
    status, text = await env.command("status")
    assert status == 200 and text == ""
    await env.api.wait_for(lambda a: bool(a.responses), what="status answer")
    assert f"#{incident_id} KubePodCrashLooping" in json.dumps(env.api.responses[0])

    await env.command("history 5")
    await env.api.wait_for(lambda a: len(a.responses) >= 2, what="history answer")
    assert "Last 0 execution(s)" in env.api.responses[1]["text"]

    await env.command("diagnose monitoring/StatefulSet/prometheus")
    await env.api.wait_for(lambda a: len(a.responses) >= 3, what="diagnose answer")
    assert "Diagnosing monitoring/StatefulSet/prometheus" in env.api.responses[2]["text"]
    pending = await env.store.list_incidents(work_states=[WorkState.PENDING])
    assert (
        len(pending) == 1
        and pending[0].common_labels["statefulset"] == "prometheus"
        and pending[0].common_labels["namespace"] == "monitoring"
    )
    assert await env.store.get_kv(f"slack.channel.{pending[0].id}") == "C-OPS"


async def test_queued_manual_diagnoses_are_bounded(env: Env) -> None:
    # Anyone may ask for a diagnosis (read-only); a flood of them is not queued without bound.
    limit = MAX_QUEUED_MANUAL_DIAGNOSES
    for n in range(limit + 2):
        await env.command("diagnose monitoring", user=f"U{n}")
        await env.api.wait_for(lambda a, n=n: len(a.responses) > n, what=f"answer {n}")
    texts = [r["text"] for r in env.api.responses]
    assert all(t.startswith("Diagnosing monitoring") for t in texts[:limit]), texts
    assert all("already queued" in t for t in texts[limit:]), texts
    assert len(await env.store.list_incidents(work_states=[WorkState.PENDING])) == limit


async def test_rollback_command_checks_authorisation(env: Env) -> None:
    await env.command("rollback e-99", user="UALICE")
    await env.api.wait_for(lambda a: bool(a.responses), what="answer")
    assert "Execution 99 does not exist" in env.api.responses[0]["text"]

    incident_id = await seed_incident(env.store, severity="warning")
    await env.service.post_incident(incident_id)
    await env.posted(incident_id)
    assert await env.click(B.ACTION_APPROVE, str(incident_id)) == 200
    await env.api.wait_for(lambda a: len(a.responses) >= 2, what="approval")
    await env.service.drain()
    (execution,) = await env.store.list_executions(incident_id)
    (backup,) = await env.store.list_backups(execution.id)
    # Not an approver: refused by execution id and by backup id, audited, nothing rolled back.
    for ref in (f"e-{execution.id}", backup.id):
        await env.command(f"rollback {ref}", user="UMALLORY")
    await env.api.wait_for(lambda a: len(a.responses) >= 4, what="refusals")
    assert all("not an approver" in r["text"] for r in env.api.responses[2:4]), env.api.responses
    await env.service.drain()
    assert env.executor.rollbacks == []
    audit = [(e.actor, e.action) for e in await env.store.list_audit(incident_id=incident_id)]
    assert audit.count(("slack:UMALLORY", "rollback denied")) == 2
    # By incident number, as the message shows it (and as `pitcrew rollback N` takes it).
    await env.command(f"rollback {incident_id}", user="UBOB")
    await env.api.wait_for(lambda a: len(a.responses) >= 5, what="rollback answer")
    assert "Rolling back execution" in env.api.responses[4]["text"]
    await env.service.drain()
    assert env.executor.rollbacks == [execution.id]


async def test_rollback_of_an_execution_without_incident_checks_its_targets_namespaces(
    slack_api: SlackApiServer, tmp_path: Path
) -> None:
    # A CLI run (or a rollback) has no incident: the namespaces it changed decide who may undo it.
    guarded = ApprovalPolicy(
        default=ApproverRule(users=frozenset({"UALICE"})),
        per_namespace={"guarded": ApproverRule(users=frozenset({"UBOB"}))},
    )
    async with make_env(slack_api, tmp_path, policy=guarded) as env:
        execution = await env.store.start_execution(None, "cli", ["guarded/ConfigMap/loki-config"], "{}")
        backup_id = await env.store.save_backup(execution.id, "guarded/ConfigMap/loki-config", "object", "{}")
        await env.store.finish_execution(execution.id, "succeeded", "done")
        for ref in (f"e-{execution.id}", backup_id):
            await env.command(f"rollback {ref}", user="UALICE")
        await env.api.wait_for(lambda a: len(a.responses) >= 2, what="refusals")
        texts = [r["text"] for r in env.api.responses]
        assert all("not an approver for namespace guarded" in t for t in texts), texts
        await env.command(f"rollback e-{execution.id}", user="UBOB")
        await env.api.wait_for(lambda a: len(a.responses) >= 3, what="rollback answer")
        assert "Rolling back execution" in env.api.responses[2]["text"]
        await env.service.drain()
        assert env.executor.rollbacks == [execution.id]


def test_parse_of_signed_body_helpers() -> None:
    body = slash_command_body("status", response_url="http://127.0.0.1:1/response/x")
    assert urllib.parse.parse_qs(body)["text"] == ["status"]


async def test_silence_command_creates_an_alertmanager_silence(
    slack_api: SlackApiServer, tmp_path: Path, alertmanager_factory: Any
) -> None:
    am = alertmanager_factory("http://127.0.0.1:9/unused", "unused-token")
    async with make_env(slack_api, tmp_path, alertmanager_url=am.url) as env:
        incident_id = await seed_incident(env.store)
        await env.service.post_incident(incident_id)
        _, ts = await env.posted(incident_id)
        status, _ = await env.command(f"silence {incident_id} 2h", user="UBOB")
        assert status == 200
        await env.api.wait_for(lambda a: bool(a.responses), what="silence answer")
        answer = env.api.responses[0]["text"]
        assert f"Silenced incident #{incident_id} for 2h" in answer, answer
        async with env.http.get(f"{am.url}/api/v2/silences") as resp:
            silences = await resp.json()
        assert len(silences) == 1
        silence = silences[0]
        assert silence["createdBy"] == "slack:ubob"
        assert f"incident #{incident_id}" in silence["comment"]
        matchers = {m["name"]: m["value"] for m in silence["matchers"]}
        assert matchers == {
            "alertname": "KubePodCrashLooping",
            "namespace": "monitoring",
            "severity": "critical",
        }
        await env.api.wait_for(lambda a: any("Silenced for 2h" in c.text for c in thread(a, ts)), what="note")

        # Alertmanager down: a clear answer, nothing else breaks.
        am.stop()
        await env.command(f"silence {incident_id} 1h")
        await env.api.wait_for(lambda a: len(a.responses) >= 2, what="second answer")
        assert "Could not create the silence" in env.api.responses[1]["text"]
        await env.command("silence 999 1h")
        await env.api.wait_for(lambda a: len(a.responses) >= 3, what="third answer")
        assert "Incident #999 does not exist" in env.api.responses[2]["text"]


async def test_silence_command_checks_authorisation(
    slack_api: SlackApiServer, tmp_path: Path, alertmanager_factory: Any
) -> None:
    am = alertmanager_factory("http://127.0.0.1:9/unused", "unused-token")
    async with make_env(slack_api, tmp_path, alertmanager_url=am.url) as env:
        incident_id = await seed_incident(env.store)
        status, _ = await env.command(f"silence {incident_id} 2h", user="UMALLORY")
        assert status == 200
        await env.api.wait_for(lambda a: bool(a.responses), what="silence refusal")
        assert "not an approver" in env.api.responses[0]["text"], env.api.responses
        async with env.http.get(f"{am.url}/api/v2/silences") as resp:
            assert await resp.json() == []
        audit = [(e.actor, e.action) for e in await env.store.list_audit(incident_id=incident_id)]
        assert audit == [("slack:UMALLORY", "silence denied")]


async def test_truncated_diff_is_posted_whole_in_the_thread_once(env: Env) -> None:
    diff = "\n".join(f"+      line {i}: value-{i}" for i in range(400))
    incident_id = await seed_incident(env.store, dry_run_diff=diff)
    await env.service.post_incident(incident_id)
    _, ts = await env.posted(incident_id)
    await env.api.wait_for(
        lambda a: any(c.args["text"] == "Dry-run diff" for c in thread(a, ts)), what="full diff"
    )
    await env.service.post_incident(incident_id)  # a re-post does not repeat it
    await env.api.wait_for(lambda a: bool(parent_updates(a, ts)), what="update")
    details, whole = thread(env.api, ts)
    assert "truncated; the whole diff follows in the thread" in details.text
    assert "line 0: value-0" in whole.text and "line 399: value-399" in whole.text


async def test_unauthorised_reject_changes_nothing(env: Env) -> None:
    incident_id = await seed_incident(env.store, severity="warning")
    # The click: an ephemeral explanation instead of the reason modal, audited.
    assert await env.click(B.ACTION_REJECT, str(incident_id), user="UMALLORY") == 200
    await env.api.wait_for(lambda a: bool(a.responses), what="ephemeral refusal of the click")
    answer = env.api.responses[0]
    assert answer["response_type"] == "ephemeral" and "not an approver" in answer["text"]
    await env.service.drain()
    assert env.api.ok_calls("views.open") == []
    audit = [(e.actor, e.action) for e in await env.store.list_audit(incident_id=incident_id)]
    assert audit == [("slack:UMALLORY", "reject denied")]
    # A submission without the modal (forged metadata, signed) is refused as well.
    values = {B.REJECT_REASON_BLOCK: {B.REJECT_REASON_INPUT: {"type": "plain_text_input", "value": "no"}}}
    meta = json.dumps({"incident_id": incident_id, "channel": "C-ALERTS"})
    status, _ = await env.post(view_submission_body(B.REJECT_MODAL, meta, values, user_id="UMALLORY"))
    assert status == 200
    await env.api.wait_for(lambda a: bool(a.ok_calls("chat.postEphemeral")), what="ephemeral refusal")
    assert "not an approver" in env.api.ok_calls("chat.postEphemeral")[0].args["text"]
    incident = await env.store.get_incident(incident_id)
    assert incident is not None and incident.work_state is WorkState.DIAGNOSED
    assert await env.store.list_decisions(incident_id) == []


@pytest.mark.parametrize("body", ["payload=%7Bnot-json", "payload=%5B1%2C2%5D", "payload=%22text%22"])
async def test_malformed_bodies_get_a_clear_400(env: Env, body: str) -> None:
    status, text = await env.post(body, sign(body))
    assert status == 400 and "malformed Slack request body" in text
    # Forged or stale, a malformed body is refused like any other such request: 401, counted, and
    # nothing said about the body.
    forged = [
        {"Content-Type": "application/x-www-form-urlencoded"},
        sign(body, secret="not-the-secret"),
        sign(body, timestamp=int(time.time()) - 600),
    ]
    for headers in forged:
        status, text = await env.post(body, headers)
        assert status == 401 and "malformed" not in text
    metrics = await env.registry.render()
    assert 'pitcrew_slack_requests_rejected_total{reason="invalid_signature"} 2' in metrics
    assert 'pitcrew_slack_requests_rejected_total{reason="stale"} 1' in metrics
    assert env.api.responses == [] and env.executor.started == []


@pytest.mark.parametrize(
    "timestamp", ["not-a-number", "", "1700000000.5", "0x6553f100", "+1700000000", "1_700_000_000"]
)
async def test_malformed_request_timestamp_is_401_not_500(env: Env, timestamp: str) -> None:
    """Bolt's verification calls int() on the header and raises ValueError (a 500) on these forms."""
    incident_id = await seed_incident(env.store, severity="warning")
    body = block_actions_body(B.ACTION_APPROVE, str(incident_id), response_url=env.api.response_url())
    headers = sign(body)
    headers["X-Slack-Request-Timestamp"] = timestamp
    status, text = await env.post(body, headers)
    assert status == 401, text
    # The same for a body Bolt cannot parse (the path that checks the signature itself).
    bad = "payload=%7Bnot-json"
    headers = sign(bad)
    headers["X-Slack-Request-Timestamp"] = timestamp
    assert (await env.post(bad, headers))[0] == 401
    metrics = await env.registry.render()
    assert 'pitcrew_slack_requests_rejected_total{reason="invalid_signature"} 2' in metrics
    await env.service.drain()
    assert await env.store.list_decisions(incident_id) == [] and env.executor.started == []
