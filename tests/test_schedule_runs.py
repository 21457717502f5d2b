"""Scheduled summaries end to end on loopback: the kmock Kubernetes emulator as the cluster, the real
SQLite store (outbox, kv, locks), the Prometheus/Loki/Grafana stand-ins for validation, and the
recording Slack Web API for delivery. Jobs are triggered directly with an explicit `now`: nothing
waits on the clock."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Config, ConfigError, parse_config
from bot.schedule import (
    LOCK_TTL_SECONDS,
    ScheduleConfigError,
    SummaryScheduler,
    last_run_key,
    post_summary,
    run_schedule,
)
from bot.slack.limits import check_message
from bot.slack.outbox import OutboxWorker
from bot.store import Store
from bot.summary import SummaryDeps, build_summary, state_key
from tests.support.kube import KubeHarness
from tests.support.schedule import degraded_namespace, healthy_namespace, pod
from tests.support.slack import BOT_TOKEN, SlackApiServer
from tests.support.stackstubs import GRAFANA_TOKEN, Stack
from tests.support.store import FakeClock, make_alert, make_payload

pytestmark = pytest.mark.integration

CHANNEL = "C-OPS"
# 09:00 in Paris on 2026-11-25 is 08:00 UTC (CET, UTC+1).
FIRE = datetime(2026, 11, 25, 8, 0, tzinfo=UTC).timestamp()
DAY = 86400.0


def make_config(kubeconfig: str, stack: Stack | None = None, **schedule: Any) -> Config:
    validation: dict[str, Any] = {"http_timeout_seconds": 5}
    if stack is not None:
        validation.update(
            prometheus_url=stack.prometheus_url,
            loki_url=stack.loki_url,
            grafana_url=stack.grafana_url,
            grafana_token_env="GRAFANA_TOKEN",
        )
    return parse_config(
        {
            "cluster": {"kubeconfig": kubeconfig, "in_cluster": False, "request_timeout_seconds": 5},
            "validation": validation,
            "slack": {"default_channel": "C-ALERTS"},
            "schedules": [
                {
                    "name": "daily",
                    "cron": "0 9 * * *",
                    "timezone": "Europe/Paris",
                    "channel": CHANNEL,
                    "namespaces": ["monitoring"],
                    "missed_grace_seconds": 600,
                    **schedule,
                }
            ],
        },
        env={"GRAFANA_TOKEN": GRAFANA_TOKEN},
    )


def closed_port_kubeconfig(tmp_path: Path) -> str:
    """A kubeconfig whose API server does not listen: connection refused, at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "dead-kubeconfig.yaml"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "dead", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": "u"}}],
                "current-context": "dead",
            }
        ),
        encoding="utf-8",
    )
    return str(path)


async def queued(store: Store) -> list[dict[str, Any]]:
    """Every outbox item queued so far (chat.postMessage arguments), oldest first. The store hands out
    one item per thread at a time, so each is marked sent as it is read; later calls see only new ones."""
    out: list[dict[str, Any]] = []
    for _ in range(100):
        items = await store.due_outbox(now=1e12, limit=100)
        if not items:
            break
        for item in items:
            assert item.method == "chat.postMessage"
            out.append(json.loads(item.payload_json))
            await store.mark_outbox_sent(item.id, "{}")
    return out


def assert_slack_would_accept(message: dict[str, Any]) -> None:
    assert check_message(message) == [], check_message(message)


# ---------------------------------------------------------------------------------------------
# Emulated clusters: healthy, degraded, unreachable
# ---------------------------------------------------------------------------------------------


async def test_job_posts_a_healthy_summary(kube: KubeHarness, stack: Stack, tmp_store: Store) -> None:
    kube.seed(healthy_namespace("monitoring"))
    config = make_config(str(kube.kubeconfig), stack, cron="* * * * *")
    scheduler = SummaryScheduler(SummaryDeps(config=config, store=tmp_store), config.schedules)
    job = scheduler.jobs["daily"]
    result = await job.func(*job.args, now=FIRE + 5)  # what apscheduler calls at the fire time
    assert result is not None and result.outcome == "posted"
    assert result.fire_time == FIRE

    (message,) = await queued(tmp_store)
    assert message["channel"] == CHANNEL
    assert message["text"] == "monitoring: all healthy", json.dumps(message["blocks"])
    assert_slack_would_accept(message)
    assert "pods 3/3" in json.dumps(message["blocks"]) or "(3/3 pods)" in json.dumps(message["blocks"])
    # The run is recorded, with the baseline for the next summary.
    assert await tmp_store.get_kv(last_run_key("daily")) == repr(FIRE)
    assert json.loads(await tmp_store.get_kv(state_key("daily")) or "{}")["at"] == FIRE + 5


async def test_degraded_cluster_with_incident_links(
    kube: KubeHarness, stack: Stack, tmp_store: Store
) -> None:
    kube.seed(degraded_namespace("monitoring"))
    stack.set_healthy(False)
    created = await tmp_store.record_webhook(
        make_payload(
            '{}:{alertname="PrometheusDown"}',
            [make_alert("a1", labels={"statefulset": "prometheus"})],
        )
    )
    await tmp_store.set_slack_message(created.incident_id, "C-ALERTS", "1800000000.000100")
    config = make_config(str(kube.kubeconfig), stack)
    deps = SummaryDeps(config=config, store=tmp_store)

    summary = await build_summary(deps, schedule=config.schedules[0], now=FIRE)
    kinds = {p.kind for p in summary.problems}
    assert {"workload-replicas", "service-no-endpoints", "pvc-not-bound", "check-failed"} <= kinds
    assert summary.glance == f"monitoring: {len(summary.problems)} problems"
    assert any(c.name == "http-health" and c.status == "fail" for c in summary.checks)
    prometheus = next(p for p in summary.problems if str(p.object) == "monitoring/StatefulSet/prometheus")
    assert prometheus.incident_id == created.incident_id
    assert [i.id for i in summary.incidents_open] == [created.incident_id]

    await post_summary(deps, config.schedules[0], summary=summary)
    (message,) = await queued(tmp_store)
    assert_slack_would_accept(message)
    blocks = json.dumps(message["blocks"])
    assert (
        f"<https://slack.com/archives/C-ALERTS/p1800000000000100|incident #{created.incident_id}>" in blocks
    )
    assert "StatefulSet prometheus: 0/1 ready (prometheus-0: CrashLoopBackOff)" in blocks


async def test_restarts_since_the_previous_run(kube: KubeHarness, stack: Stack, tmp_store: Store) -> None:
    kube.seed([pod("prometheus-0", restarts=9)])
    config = make_config(str(kube.kubeconfig), stack)
    deps = SummaryDeps(config=config, store=tmp_store)
    first = await run_schedule(deps, config.schedules[0], now=FIRE + 1, window_seconds=600, owner="a")
    assert first.outcome == "posted"
    kube.seed([pod("prometheus-0", restarts=12)])  # three more restarts during the day
    second = await run_schedule(deps, config.schedules[0], now=FIRE + DAY + 1, window_seconds=600, owner="a")
    assert second.outcome == "posted"
    first_message, second_message = await queued(tmp_store)
    assert "prometheus-0 +9" in json.dumps(first_message["blocks"])
    assert "prometheus-0 +3" in json.dumps(second_message["blocks"])
    assert "(no previous summary)" in json.dumps(first_message["blocks"])
    # Since the first run, in the schedule's time zone.
    assert "since 2026-11-25 09:00 CET" in json.dumps(second_message["blocks"])


async def test_unreachable_cluster_is_still_posted(tmp_path: Path, tmp_store: Store) -> None:
    config = make_config(closed_port_kubeconfig(tmp_path))
    deps = SummaryDeps(config=config, store=tmp_store)
    result = await run_schedule(deps, config.schedules[0], now=FIRE + 1, window_seconds=600, owner="a")
    assert result.outcome == "posted"
    (message,) = await queued(tmp_store)
    assert_slack_would_accept(message)
    assert message["text"].startswith(
        "monitoring: unknown, the cluster could not be read (cannot reach the Kubernetes API at http://"
    )
    assert message["text"].endswith(": connection refused)")  # one reason, no urllib3 dump
    blocks = json.dumps(message["blocks"])
    assert "Could not read the cluster" in blocks
    assert "Connection refused" in blocks or "connection refused" in blocks.lower()
    assert "not run: the cluster could not be read" in blocks  # validation
    assert "*Incidents*: 0 opened" in blocks  # the store part is still there


async def test_forbidden_namespace_is_reported_not_hidden(
    kube: KubeHarness, stack: Stack, tmp_store: Store
) -> None:
    kube.seed(healthy_namespace("monitoring"))
    kube.forbid("pods", namespace="logging")
    config = make_config(str(kube.kubeconfig), stack, namespaces=["monitoring", "logging"])
    summary = await build_summary(SummaryDeps(config=config, store=tmp_store), schedule=config.schedules[0])
    monitoring, logging = summary.namespace_health
    assert monitoring.readable and not logging.readable
    assert summary.glance.startswith("monitoring, logging: 1 problem (incomplete")
    assert "forbidden" in logging.problems[0].detail


# ---------------------------------------------------------------------------------------------
# Missed runs, restarts, replicas
# ---------------------------------------------------------------------------------------------


async def test_missed_run_within_grace_is_posted_once_at_start(
    kube: KubeHarness, tmp_store_opener: Callable[..., Awaitable[Store]]
) -> None:
    kube.seed(healthy_namespace("monitoring"))
    config = make_config(str(kube.kubeconfig))
    store = await tmp_store_opener()
    first = SummaryScheduler(SummaryDeps(config=config, store=store), config.schedules, owner="pod-a")
    (result,) = await first.catch_up(now=FIRE + 300)  # pitcrew came back 5 minutes late
    assert (result.outcome, result.fire_time) == ("posted", FIRE)
    assert len(await queued(store)) == 1

    # pitcrew restarts (new process, new lock owner, store reopened): the same run is not posted again.
    await store.close()
    store = await tmp_store_opener()
    second = SummaryScheduler(SummaryDeps(config=config, store=store), config.schedules, owner="pod-a2")
    (again,) = await second.catch_up(now=FIRE + 420)
    assert again.outcome == "already-posted"
    # Nor by the job when it fires late for the same time.
    job = second.jobs["daily"]
    late = await job.func(*job.args, now=FIRE + 30)
    assert late is not None and late.outcome == "already-posted"
    assert await queued(store) == []  # nothing new since the first post
    await store.close()


async def test_a_run_whose_record_cannot_be_written_queues_nothing(
    kube: KubeHarness, tmp_store: Store
) -> None:
    """The message and the "posted" record are one transaction: if recording the run fails (here a
    real SQLite error, as a full disk would raise), the message is not queued either, so the next
    attempt posts it once instead of twice."""
    kube.seed(healthy_namespace("monitoring"))
    config = make_config(str(kube.kubeconfig))
    scheduler = SummaryScheduler(SummaryDeps(config=config, store=tmp_store), config.schedules, owner="pod-a")
    with sqlite3.connect(tmp_store.path) as conn:
        conn.execute(
            "CREATE TRIGGER fail_last_run BEFORE INSERT ON kv WHEN NEW.key LIKE 'schedule:%:last_run'"
            " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    assert await scheduler.catch_up(now=FIRE + 60) == []  # the run failed (logged, not raised)
    assert await queued(tmp_store) == []
    assert await tmp_store.get_kv(state_key("daily")) is None

    with sqlite3.connect(tmp_store.path) as conn:
        conn.execute("DROP TRIGGER fail_last_run")
    (retry,) = await scheduler.catch_up(now=FIRE + 120)
    assert retry.outcome == "posted"
    assert len(await queued(tmp_store)) == 1
    assert await tmp_store.get_kv(last_run_key("daily")) == repr(FIRE)


async def test_missed_run_outside_grace_is_skipped(kube: KubeHarness, tmp_store: Store) -> None:
    config = make_config(str(kube.kubeconfig))
    scheduler = SummaryScheduler(SummaryDeps(config=config, store=tmp_store), config.schedules)
    (result,) = await scheduler.catch_up(now=FIRE + 601)  # grace is 600 s
    assert result.outcome == "not-due"
    assert await queued(tmp_store) == []
    assert await tmp_store.get_kv(last_run_key("daily")) is None


async def test_start_catches_up_and_schedules_the_next_fire_time(kube: KubeHarness, tmp_store: Store) -> None:
    kube.seed(healthy_namespace("monitoring"))
    config = make_config(str(kube.kubeconfig))
    scheduler = SummaryScheduler(SummaryDeps(config=config, store=tmp_store), config.schedules)
    await scheduler.start(now=FIRE + 60)
    try:
        await scheduler.wait_idle()
        assert [r.outcome for r in scheduler.results] == ["posted"]
        next_run = scheduler.jobs["daily"].next_run_time
        assert next_run.hour == 9 and str(next_run.tzinfo) == "Europe/Paris"
    finally:
        await scheduler.stop()
    assert not scheduler.scheduler.running
    assert len(await queued(tmp_store)) == 1


async def test_only_one_replica_posts(kube: KubeHarness, tmp_store: Store, store_clock: FakeClock) -> None:
    kube.seed(healthy_namespace("monitoring"))
    config = make_config(str(kube.kubeconfig))
    deps = SummaryDeps(config=config, store=tmp_store)
    schedule = config.schedules[0]
    # Another replica holds this run's lock (it is posting right now): this one stands down.
    assert await tmp_store.try_lock(f"schedule:daily:{FIRE:.0f}", "pod-b", LOCK_TTL_SECONDS)
    blocked = await run_schedule(deps, schedule, now=FIRE + 2, window_seconds=600, owner="pod-a")
    assert blocked.outcome == "locked"
    assert await queued(tmp_store) == []
    # pod-b died without posting; once its lock expires, the next attempt within grace posts.
    store_clock.advance(LOCK_TTL_SECONDS + 1)
    posted = await run_schedule(deps, schedule, now=FIRE + 400, window_seconds=600, owner="pod-a")
    assert posted.outcome == "posted"
    # Two replicas firing the same run together: exactly one message in all.
    replicas = [SummaryScheduler(deps, config.schedules, owner=name) for name in ("pod-c", "pod-d")]
    results = await asyncio.gather(*(r.fire("daily", now=FIRE + DAY + 1) for r in replicas))
    outcomes = sorted(r.outcome for r in results if r is not None)
    assert outcomes in (["already-posted", "posted"], ["locked", "posted"])
    assert len(await queued(tmp_store)) == 2  # one per fire time


async def test_catch_up_and_job_in_one_process_post_once(kube: KubeHarness, tmp_store: Store) -> None:
    """Started right at a fire time: the start-up catch-up and the job run together, same process."""
    kube.seed(healthy_namespace("monitoring"))
    config = make_config(str(kube.kubeconfig))
    scheduler = SummaryScheduler(SummaryDeps(config=config, store=tmp_store), config.schedules, owner="pod-a")
    job_result, catch_up_results = await asyncio.gather(
        scheduler.fire("daily", now=FIRE + 3), scheduler.catch_up(now=FIRE + 3)
    )
    assert job_result is not None
    outcomes = sorted([job_result.outcome, *(r.outcome for r in catch_up_results)])
    assert outcomes in (["already-posted", "posted"], ["locked", "posted"])
    assert len(await queued(tmp_store)) == 1


async def test_delivered_to_slack_through_the_outbox(
    kube: KubeHarness, tmp_store: Store, slack_api: SlackApiServer
) -> None:
    kube.seed(degraded_namespace("monitoring"))
    config = make_config(str(kube.kubeconfig))
    woken: list[bool] = []
    deps = SummaryDeps(config=config, store=tmp_store, on_enqueued=lambda: woken.append(True))
    await post_summary(deps, config.schedules[0], now=FIRE)
    assert woken == [True]
    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack_api.base_url)
    worker = OutboxWorker(tmp_store, client, clock=lambda: 1e12)  # the store's clock is a fixed FakeClock
    assert await worker.deliver_due() == 1
    (call,) = slack_api.ok_calls("chat.postMessage")
    assert call.channel == CHANNEL
    assert call.args["text"].startswith("monitoring: ") and call.args["text"].endswith(" problems")
    assert "StatefulSet loki: 0/1 ready" in call.text


# ---------------------------------------------------------------------------------------------
# Bad schedules
# ---------------------------------------------------------------------------------------------


def test_bad_cron_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        make_config(str(tmp_path / "kubeconfig"), cron="0 25 * * *")
    assert any(
        p.startswith("schedules[0].cron: invalid crontab expression '0 25 * * *'")
        for p in info.value.problems
    )
    with pytest.raises(ConfigError) as info:
        make_config(str(tmp_path / "kubeconfig"), cron="every day")
    assert any(p.startswith("schedules[0].cron:") for p in info.value.problems)


async def test_schedule_without_any_channel_is_refused(kube: KubeHarness, tmp_store: Store) -> None:
    config = parse_config(
        {"schedules": [{"name": "nightly", "cron": "0 2 * * *", "namespaces": ["monitoring"]}]}, env={}
    )
    deps = SummaryDeps(config=config, store=tmp_store)
    result = await run_schedule(
        deps,
        config.schedules[0],
        now=datetime(2026, 11, 25, 2, 0, 30, tzinfo=UTC).timestamp(),
        window_seconds=600,
        owner="a",
    )
    assert result.outcome == "no-channel"
    with pytest.raises(ScheduleConfigError, match="no channel"):
        await post_summary(deps, config.schedules[0])
    assert await queued(tmp_store) == []
