"""Leader election inside pitcrew's app (ha.enabled): two apps on one emulated API server with Lease
semantics; /readyz and /metrics tell each one's role; only the leader's scheduler posts; when the
leader shuts down it releases the Lease, the follower takes over and its catch-up does not post the
summary a second time. Both apps share one real PostgreSQL store, as replicas do."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot import keys
from bot.app import create_app
from bot.config import Config, HAConfig, Secret, StoreConfig
from bot.leader import LeaderElectionUnavailable
from tests.support.kube import KubeHarness
from tests.support.leases import LeaseServer
from tests.support.postgres import PostgresDatabase
from tests.support.schedule import degraded_namespace
from tests.support.slack import SlackApiServer
from tests.test_schedule_app import app_config, cron_a_minute_ago, no_processing

pytestmark = pytest.mark.integration

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def ha_config(base: Config, identity: str, db: PostgresDatabase, namespace: str | None = "pitcrew") -> Config:
    return dataclasses.replace(
        base,
        store=StoreConfig(url=db.url, password=Secret(db.password)),
        ha=HAConfig(
            enabled=True,
            lease_namespace=namespace,
            identity=identity,
            lease_duration_seconds=2,
            renew_interval_seconds=0.2,
        ),
    )


async def _metric(client: TestClient[Any, Any], name: str) -> str:
    text = await (await client.get("/metrics")).text()
    return next(line for line in text.splitlines() if line.startswith(name + " "))


async def test_one_leader_posts_and_hands_over_on_shutdown(
    tmp_path: Path,
    kube_leases: tuple[KubeHarness, LeaseServer],
    slack_api: SlackApiServer,
    aiohttp_client: ClientFactory,
    postgres_db: PostgresDatabase,
) -> None:
    kube, leases = kube_leases
    kube.seed(degraded_namespace("monitoring"))
    base = app_config(tmp_path, kube, slack_api, cron_a_minute_ago())
    app_a = create_app(ha_config(base, "pod-a", postgres_db), processor=no_processing)
    client_a = await aiohttp_client(app_a)
    app_b = create_app(ha_config(base, "pod-b", postgres_db), processor=no_processing)
    client_b = await aiohttp_client(app_b)
    assert leases.holder("pitcrew", "pitcrew-leader") == "pod-a"

    ready_a = await (await client_a.get("/readyz")).json()
    ready_b = await (await client_b.get("/readyz")).json()
    assert (ready_a["role"], ready_a["leader"], ready_a["identity"]) == ("leader", "pod-a", "pod-a")
    assert (ready_b["role"], ready_b["leader"], ready_b["identity"]) == ("follower", "pod-a", "pod-b")
    assert await _metric(client_a, "pitcrew_leader") == "pitcrew_leader 1"
    assert await _metric(client_b, "pitcrew_leader") == "pitcrew_leader 0"

    scheduler_a, scheduler_b = app_a[keys.SCHEDULER], app_b[keys.SCHEDULER]
    await scheduler_a.wait_idle()
    await scheduler_b.wait_idle()
    assert [r.outcome for r in scheduler_a.results] == ["posted"]
    assert [r.outcome for r in scheduler_b.results] == ["not-leader"]
    await slack_api.wait_for(
        lambda a: any(c.channel == "C-OPS" for c in a.ok_calls("chat.postMessage")), what="summary"
    )

    await client_a.close()  # releases the Lease
    assert leases.holder("pitcrew", "pitcrew-leader") is None
    for _ in range(50):
        if app_b[keys.LEADER].is_leader:
            break
        await asyncio.sleep(0.1)
    assert app_b[keys.LEADER].is_leader
    assert leases.holder("pitcrew", "pitcrew-leader") == "pod-b"
    assert await _metric(client_b, "pitcrew_leader") == "pitcrew_leader 1"
    await scheduler_b.wait_idle()
    # The new leader catches up on the fire time, finds it posted, and posts nothing.
    assert [r.outcome for r in scheduler_b.results] == ["not-leader", "already-posted"]
    await client_b.close()
    assert len([c for c in slack_api.ok_calls("chat.postMessage") if c.channel == "C-OPS"]) == 1


async def test_single_replica_is_the_leader_without_a_lease(
    tmp_path: Path,
    kube_leases: tuple[KubeHarness, LeaseServer],
    slack_api: SlackApiServer,
    aiohttp_client: ClientFactory,
) -> None:
    kube, leases = kube_leases
    client = await aiohttp_client(
        create_app(app_config(tmp_path, kube, slack_api, cron_a_minute_ago()), processor=no_processing)
    )
    assert await _metric(client, "pitcrew_leader") == "pitcrew_leader 1"
    assert "role" not in await (await client.get("/readyz")).json()
    assert leases.leases == {} and kube.count(resource="leases") == 0
    await client.close()


async def test_ha_without_a_known_namespace_stops_start_up(
    tmp_path: Path,
    kube_leases: tuple[KubeHarness, LeaseServer],
    slack_api: SlackApiServer,
    monkeypatch: pytest.MonkeyPatch,
    postgres_db: PostgresDatabase,
) -> None:
    kube, _ = kube_leases
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    config = ha_config(
        app_config(tmp_path, kube, slack_api, cron_a_minute_ago()), "pod-a", postgres_db, namespace=None
    )
    runner = web.AppRunner(create_app(config, processor=no_processing))
    with pytest.raises(LeaderElectionUnavailable, match=r"set ha\.lease_namespace"):
        await runner.setup()
    await runner.cleanup()
