"""Coalesced evidence collection: incidents of the same namespaces share one snapshot, so API calls grow
with namespaces, not with alerts. Unit tests with a fake clock, then the real app against the emulator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot import keys
from bot.app import create_app
from bot.evidence import Evidence, Scope
from bot.model import WorkState
from bot.snapshot_cache import SnapshotCache
from tests.support.kube import KubeHarness
from tests.support.kube_writes import WriteSemantics
from tests.test_pipeline import AUTH, make_config, seed_alert_payload

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


class Collector:
    def __init__(self, *, fail: int = 0) -> None:
        self.scopes: list[tuple[str, ...]] = []
        self.release = asyncio.Event()
        self.fail = fail

    async def __call__(self, scope: Scope) -> Evidence:
        self.scopes.append(scope.namespaces)
        await self.release.wait()
        if self.fail:
            self.fail -= 1
            raise RuntimeError("API server away")
        return Evidence(namespaces=scope.namespaces)


async def test_concurrent_incidents_of_one_namespace_share_one_collection() -> None:
    collect = Collector()
    now = [0.0]
    cache = SnapshotCache(collect, window_seconds=10, clock=lambda: now[0])
    waiting = [asyncio.ensure_future(cache.get(Scope(("shop",)))) for _ in range(50)]
    await asyncio.sleep(0)
    collect.release.set()
    results = await asyncio.gather(*waiting)
    assert collect.scopes == [("shop",)]
    assert all(r is results[0] for r in results)
    assert (cache.collections, cache.shared) == (1, 49)
    # Within the window, a finished collection is still shared; after it, the namespace is read again.
    now[0] = 9.9
    assert await cache.get(Scope(("shop",))) is results[0]
    now[0] = 10.0
    assert await cache.get(Scope(("shop",))) is not results[0]
    assert collect.scopes == [("shop",), ("shop",)]


async def test_other_namespaces_collect_on_their_own_and_order_does_not_matter() -> None:
    collect = Collector()
    collect.release.set()
    cache = SnapshotCache(collect, window_seconds=10, clock=lambda: 0.0)
    await cache.get(Scope(("a", "b")))
    await cache.get(Scope(("b", "a")))
    await cache.get(Scope(("a",)))
    assert collect.scopes == [("a", "b"), ("a",)]


async def test_a_failed_collection_is_not_shared_afterwards() -> None:
    collect = Collector(fail=1)
    collect.release.set()
    cache = SnapshotCache(collect, window_seconds=10, clock=lambda: 0.0)
    with pytest.raises(RuntimeError, match="API server away"):
        await cache.get(Scope(("shop",)))
    assert (await cache.get(Scope(("shop",)))).namespaces == ("shop",)  # the retry collects again
    assert len(collect.scopes) == 2


def test_a_negative_window_is_refused() -> None:
    with pytest.raises(ValueError, match="window_seconds"):
        SnapshotCache(Collector(), window_seconds=-1)


def _payload(i: int) -> dict[str, Any]:
    payload = seed_alert_payload()
    payload["groupKey"] = f'{{}}:{{alertname="KubePodCrashLooping", n="{i}"}}'
    payload["alerts"][0]["fingerprint"] = f"{i:016x}"
    payload["alerts"][0]["labels"] = {**payload["alerts"][0]["labels"], "n": str(i)}
    return payload


@pytest.mark.integration
async def test_an_alert_storm_in_one_namespace_collects_evidence_once_or_twice(
    tmp_path: Path, aiohttp_client: ClientFactory, kube_writes: tuple[KubeHarness, WriteSemantics]
) -> None:
    kube, _ = kube_writes
    client = await aiohttp_client(create_app(make_config(tmp_path, kube.kubeconfig)))
    storm = 30
    answers = await asyncio.gather(
        *(client.post("/webhooks/alertmanager", json=_payload(i), headers=AUTH) for i in range(storm))
    )
    assert [a.status for a in answers] == [200] * storm
    ids = {json.loads(await a.text())["incident_id"] for a in answers}
    assert len(ids) == storm  # distinct groups: distinct incidents, each stored and acknowledged
    store = client.app[keys.STORE]
    for _ in range(300):
        incidents = [await store.get_incident(i) for i in ids]
        if all(i is not None and i.work_state is not WorkState.PENDING for i in incidents):
            break
        await asyncio.sleep(0.1)
    assert all(i is not None and i.work_state is WorkState.DIAGNOSED for i in incidents)
    assert all(i is not None and {f.code for f in i.findings} for i in incidents)
    pod_lists = kube.count(verb="list", resource="pods", namespace="monitoring")
    snapshots = client.app[keys.SNAPSHOTS]
    # 30 incidents, one namespace: one collection (two if the storm outlasted the 10 s window).
    assert 1 <= pod_lists == snapshots.collections <= 2
    assert snapshots.collections + snapshots.shared == storm
    metrics = await (await client.get("/metrics")).text()
    assert f"pitcrew_evidence_collections_total {snapshots.collections}" in metrics
    assert f"pitcrew_evidence_collections_shared_total {snapshots.shared}" in metrics
