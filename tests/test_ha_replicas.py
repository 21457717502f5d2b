"""Two pitcrew apps (replicas) on one real PostgreSQL, each receiving every webhook, as when
Alertmanager's receiver targets both: each group is one incident, every delivery is answered 200
after its commit, and each incident is diagnosed by exactly one replica (the store's claims)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot import keys
from bot.app import create_app
from bot.config import Config, parse_config
from bot.model import WorkState
from tests.support.postgres import PostgresDatabase
from tests.test_intake_app import AUTH, TOKEN, Recorder, alert, eventually, payload

pytestmark = pytest.mark.integration

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def replica_config(db: PostgresDatabase) -> Config:
    return parse_config(
        {
            "server": {"listen_host": "127.0.0.1", "max_body_bytes": 64 * 1024},
            "store": {"url": db.url, "password_env": "T_PG_PASSWORD", "pool_max_size": 5},
            "webhook": {"bearer_token_env": "T_WEBHOOK"},
            "workers": {"concurrency": 2, "poll_interval_seconds": 0.2, "retry_delay_seconds": 0.05},
        },
        env={"T_WEBHOOK": TOKEN, "T_PG_PASSWORD": db.password},
    )


async def test_every_group_is_one_incident_diagnosed_once_across_replicas(
    tmp_path: Path, postgres_db: PostgresDatabase, aiohttp_client: ClientFactory
) -> None:
    recorders = [Recorder(), Recorder()]
    clients = []
    for recorder in recorders:
        app = create_app(replica_config(postgres_db), processor=recorder)
        recorder.app = app
        clients.append(await aiohttp_client(app))
    bodies = [payload(f"Alert{g}", alert(f"Alert{g}", f"pod-{g}")) for g in range(20)]
    # Every group to both replicas, twice (Alertmanager's retries), all at once.
    responses = await asyncio.gather(
        *(
            c.post("/webhooks/alertmanager", json=b, headers=AUTH)
            for _ in range(2)
            for b in bodies
            for c in clients
        )
    )
    assert [r.status for r in responses] == [200] * 80
    answers = [await r.json() for r in responses]
    by_group: dict[str, set[int]] = {}
    for index, answer in enumerate(answers):
        by_group.setdefault(bodies[(index // 2) % 20]["groupKey"], set()).add(answer["incident_id"])
    assert len(by_group) == 20 and all(len(ids) == 1 for ids in by_group.values())
    assert sum(a["created"] for a in answers) == 20
    # 200 only after the commit: the other replica reads every incident the moment it has its answer.
    store = clients[1].app[keys.STORE]
    incident_ids = {i for ids in by_group.values() for i in ids}
    for incident_id in incident_ids:
        assert await store.get_incident(incident_id) is not None

    async def all_diagnosed() -> bool:
        states = {i.work_state for i in await store.list_incidents(limit=100)}
        return states == {WorkState.DIAGNOSED}

    await eventually(all_diagnosed, what="every incident diagnosed")
    calls = recorders[0].calls + recorders[1].calls
    assert sorted(calls) == sorted(incident_ids)  # each incident diagnosed exactly once
    ready = await (await clients[0].get("/readyz")).json()
    assert ready["checks"]["store"] == "ok"
    for client in clients:
        await client.close()


def test_serve_on_an_unreachable_postgresql_stops_at_start_with_the_reason(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    import os
    import subprocess
    import sys

    from tests.support.alertmanager import free_port

    config = tmp_path / "c.yaml"
    config.write_text(
        f"server:\n  listen_host: 127.0.0.1\n  listen_port: {free_port()}\n"
        f"store:\n  url: {postgres_db.url}\n  password_env: T_PG\n"
        "webhook:\n  bearer_token_env: T_WEBHOOK\n"
    )
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "T_PG": "wrong-password-zz", "T_WEBHOOK": TOKEN, "PYTHONPATH": str(repo)}
    run = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=repo,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1
    output = run.stdout + run.stderr
    assert f"start-up failed: cannot connect to {postgres_db.url}: password authentication failed" in output
    assert "wrong-password-zz" not in output and "Traceback" not in output
