"""Chaos with real parts: two real `pitcrew serve` processes on one real PostgreSQL, a real
Alertmanager whose receiver targets both. A burst of distinct alert groups -> every group exactly one
incident, every alert stored once; SIGKILL of one replica in the middle of the burst -> the other
keeps taking the deliveries and nothing is lost or duplicated."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from tests.support.alertmanager import Alertmanager, free_port, wait_until
from tests.support.postgres import PostgresDatabase
from tests.test_intake_alertmanager import TOKEN, PitcrewProcess, am_alert

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
