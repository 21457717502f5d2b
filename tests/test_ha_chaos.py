"""Chaos with real parts: two real `pitcrew serve` processes on one real PostgreSQL, a real
Alertmanager whose receiver targets both. A burst of distinct alert groups -> every group exactly one
incident, every alert stored once; SIGKILL of one replica in the middle of the burst -> the other
keeps taking the deliveries and nothing is lost or duplicated. And with ha.enabled: SIGKILL of the
leader -> the other takes the Lease within its duration and the summary is still posted once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from tests.support.alertmanager import Alertmanager, free_port, wait_until
from tests.support.kube import KubeHarness
from tests.support.leases import LeaseServer
from tests.support.postgres import PostgresDatabase
from tests.support.schedule import degraded_namespace
from tests.support.slack import BOT_TOKEN, SIGNING_SECRET, SlackApiServer
from tests.test_intake_alertmanager import TOKEN, PitcrewProcess, am_alert
from tests.test_schedule_app import cron_a_minute_ago

pytestmark = pytest.mark.integration


def _replica(tmp_path: Path, name: str, db: PostgresDatabase) -> PitcrewProcess:
    port = free_port()
    config = tmp_path / f"{name}.yaml"
    config.write_text(
        "server:\n  listen_host: 127.0.0.1\n"
        f"  listen_port: {port}\n  shutdown_timeout_seconds: 5\n"
        "logging:\n  format: json\n  level: info\n"
        f"store:\n  url: {db.url}\n  password_env: PITCREW_TEST_PG_PASSWORD\n  pool_max_size: 4\n"
        "webhook:\n  bearer_token_env: PITCREW_TEST_WEBHOOK_TOKEN\n"
        "workers:\n  concurrency: 2\n"
    )
    return PitcrewProcess(config, port, tmp_path / f"{name}.log")


def _stored(db: PostgresDatabase) -> list[tuple[str, str]]:
    async def read() -> list[tuple[str, str]]:
        conn = await asyncpg.connect(db.url, password=db.password)
        try:
            rows = await conn.fetch(
                "SELECT i.group_key, a.fingerprint FROM alerts a JOIN incidents i ON i.id = a.incident_id"
            )
        except asyncpg.UndefinedTableError:
            return []
        finally:
            await conn.close()
        return [(str(r[0]), str(r[1])) for r in rows]

    return asyncio.run(read())


def test_burst_to_two_replicas_one_killed_each_group_one_incident(
    tmp_path: Path,
    postgres_db: PostgresDatabase,
    alertmanager_factory: Callable[..., Alertmanager],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PITCREW_TEST_PG_PASSWORD", postgres_db.password)
    replicas = [_replica(tmp_path, name, postgres_db) for name in ("a", "b")]
    try:
        for replica in replicas:
            replica.start()
        am = alertmanager_factory([f"{r.url}/webhooks/alertmanager" for r in replicas], TOKEN)
        groups = [f"Burst{n}" for n in range(80)]
        first = [am_alert(g, f"pod-{k}") for g in groups[:60] for k in range(2)]
        second = [am_alert(g, "pod-9") for g in groups]
        am.post_alerts(first)
        wait_until(lambda: len(_stored(postgres_db)) > 0, timeout=30, interval=0.05, what="first deliveries")
        replicas[0].kill()  # in the middle of the burst
        am.post_alerts(second)
        sent = {a["fingerprint"] for a in am.alerts()}
        assert len(sent) == len(first) + len(second)
        wait_until(
            lambda: {f for _, f in _stored(postgres_db)} == sent,
            timeout=90,
            interval=0.2,
            what="every alert stored by the surviving replica",
        )
        assert replicas[1].terminate() == 0, replicas[1].log()[-3000:]
    finally:
        for replica in replicas:
            replica.stop_quietly()
    rows = _stored(postgres_db)
    fingerprints = [f for _, f in rows]
    assert len(fingerprints) == len(set(fingerprints)) == len(sent)  # every alert exactly once
    assert len({g for g, _ in rows}) == len(groups)  # one incident per group, whoever received it


async def test_sigkill_of_the_leader_hands_the_lease_over_within_its_duration(
    tmp_path: Path,
    postgres_db: PostgresDatabase,
    kube_leases: tuple[KubeHarness, LeaseServer],
    slack_api: SlackApiServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two real `pitcrew serve` with ha.enabled on one PostgreSQL and the emulated API server: the
    first leads and posts the summary that was due; SIGKILL (no release) -> the second takes the Lease
    once it has seen it unrenewed for lease_duration_seconds, and its catch-up posts nothing again."""
    kube, leases = kube_leases
    kube.seed(degraded_namespace("monitoring"))
    for name, value in {
        "PITCREW_TEST_PG_PASSWORD": postgres_db.password,
        "T_SLACK_BOT": BOT_TOKEN,
        "T_SLACK_SIGNING": SIGNING_SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    replicas = []
    for name in ("pod-a", "pod-b"):
        replica = _replica(tmp_path, name, postgres_db)
        replica.config_path.write_text(
            replica.config_path.read_text()
            + f"cluster:\n  kubeconfig: {kube.kubeconfig}\n  in_cluster: false\n"
            "  request_timeout_seconds: 5\n"
            f"ha:\n  enabled: true\n  lease_namespace: pitcrew\n  identity: {name}\n"
            "  lease_duration_seconds: 3\n  renew_interval_seconds: 0.5\n"
            "slack:\n  enabled: true\n  bot_token_env: T_SLACK_BOT\n  signing_secret_env: T_SLACK_SIGNING\n"
            f"  api_base_url: {slack_api.base_url}\n  default_channel: C-ALERTS\n"
            f"schedules:\n  - name: daily\n    cron: '{cron_a_minute_ago()}'\n    channel: C-OPS\n"
            "    missed_grace_seconds: 600\n"
        )
        replicas.append(replica)
    try:
        await asyncio.to_thread(replicas[0].start)
        assert leases.holder("pitcrew", "pitcrew-leader") == "pod-a"
        await asyncio.to_thread(replicas[1].start)
        await slack_api.wait_for(
            lambda a: any(c.channel == "C-OPS" for c in a.ok_calls("chat.postMessage")), what="summary"
        )
        assert leases.holder("pitcrew", "pitcrew-leader") == "pod-a"
        await asyncio.to_thread(replicas[0].kill)
        killed = time.monotonic()
        while leases.holder("pitcrew", "pitcrew-leader") != "pod-b":
            assert time.monotonic() - killed < 3 + 2 * 0.5 + 2, "pod-b did not take the Lease in time"
            await asyncio.sleep(0.1)
        took = time.monotonic() - killed
        assert leases.leases[("pitcrew", "pitcrew-leader")]["spec"]["leaseTransitions"] == 1
        await asyncio.sleep(2)  # pod-b's catch-up of the summary runs now
        posted = [c for c in slack_api.ok_calls("chat.postMessage") if c.channel == "C-OPS"]
        assert len(posted) == 1, f"summary posted {len(posted)} times"
        assert await asyncio.to_thread(replicas[1].terminate) == 0
        assert leases.holder("pitcrew", "pitcrew-leader") is None  # released on shutdown
        print(f"pod-b took the Lease {took:.1f} s after pod-a was killed (lease duration 3 s)")
    finally:
        for replica in replicas:
            replica.stop_quietly()
