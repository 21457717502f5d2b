"""Leader election on a coordination.k8s.io/v1 Lease, through bot.cluster against the kmock emulator
with Lease semantics (tests/support/leases.py): acquire, renew, take over an expired Lease, lose a
resourceVersion race, release on shutdown, ride out and then give up on an API outage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.cluster import Cluster
from bot.leader import LeaderElector, LeaseNamespaceUnknown, resolve_lease_namespace
from tests.support.kube import KubeHarness
from tests.support.leases import LeaseServer

NS, NAME = "pitcrew", "pitcrew-leader"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest_asyncio.fixture
async def cluster(kube_leases: tuple[KubeHarness, LeaseServer]) -> AsyncIterator[Cluster]:
    kube, _ = kube_leases
    async with kube.cluster() as c:
        yield c


@pytest.fixture
def leases(kube_leases: tuple[KubeHarness, LeaseServer]) -> LeaseServer:
    return kube_leases[1]


def elector(
    cluster: Cluster,
    identity: str,
    clock: Clock,
    changes: list[tuple[str, bool]] | None = None,
) -> LeaderElector:
    async def on_change(leading: bool) -> None:
        if changes is not None:
            changes.append((identity, leading))

    return LeaderElector(
        cluster,
        namespace=NS,
        name=NAME,
        identity=identity,
        lease_duration_seconds=15,
        renew_interval_seconds=5,
        on_change=on_change,
        monotonic=clock,
    )


async def test_first_replica_creates_and_holds_the_lease(cluster: Cluster, leases: LeaseServer) -> None:
    clock, changes = Clock(), []
    a, b = elector(cluster, "pod-a", clock, changes), elector(cluster, "pod-b", clock, changes)
    assert await a.try_acquire_or_renew() is True
    assert await b.try_acquire_or_renew() is False
    assert leases.holder(NS, NAME) == "pod-a"
    spec = leases.leases[(NS, NAME)]["spec"]
    assert spec["leaseDurationSeconds"] == 15 and spec["leaseTransitions"] == 0
    assert changes == [("pod-a", True)]
    assert b.status().holder == "pod-a" and not b.is_leader

    first_renew = spec["renewTime"]
    await asyncio.sleep(0.01)
    clock.t += 5
    assert await a.try_acquire_or_renew() is True
    renewed = leases.leases[(NS, NAME)]["spec"]
    assert renewed["renewTime"] > first_renew and renewed["acquireTime"] == spec["acquireTime"]
    # b has seen the Lease change within its duration: still a follower.
    clock.t += 14
    assert await b.try_acquire_or_renew() is False


async def test_an_expired_lease_is_taken_over(cluster: Cluster, leases: LeaseServer) -> None:
    clock_a, clock_b, changes = Clock(), Clock(), []
    a, b = elector(cluster, "pod-a", clock_a, changes), elector(cluster, "pod-b", clock_b, changes)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    clock_b.t += 14.9  # a stopped renewing (SIGKILL); not yet a whole duration as b saw it
    assert not await b.try_acquire_or_renew()
    clock_b.t += 0.2
    assert await b.try_acquire_or_renew()
    assert leases.holder(NS, NAME) == "pod-b"
    assert leases.leases[(NS, NAME)]["spec"]["leaseTransitions"] == 1
    # a comes back (a paused process): it sees b's Lease and steps down instead of renewing over it.
    a._leader = True  # what a believed when it paused
    assert not await a.try_acquire_or_renew()
    assert leases.holder(NS, NAME) == "pod-b"
    assert changes == [("pod-a", True), ("pod-b", True), ("pod-a", False)]


async def test_a_resource_version_conflict_loses_the_round(cluster: Cluster, leases: LeaseServer) -> None:
    clock = Clock()
    a = elector(cluster, "pod-a", clock)
    leases.put(NS, NAME, {"holderIdentity": "pod-old", "leaseDurationSeconds": 15})
    assert not await a.try_acquire_or_renew()
    clock.t += 16  # pod-old expired as a sees it; a goes to take over...

    def competing_write(server: LeaseServer, namespace: str, name: str) -> None:
        # ...but pod-c writes the Lease between a's read and a's write.
        server.put(namespace, name, {"holderIdentity": "pod-c", "leaseDurationSeconds": 15})

    leases.before_write = competing_write
    assert not await a.try_acquire_or_renew()
    assert leases.conflicts == 1
    assert leases.holder(NS, NAME) == "pod-c"
    assert leases.writes["pod-a"] == 0
    # pod-c's write is new to a: it waits a whole duration again before it may take over.
    clock.t += 10
    assert not await a.try_acquire_or_renew()


async def test_concurrent_creates_make_exactly_one_leader(cluster: Cluster, leases: LeaseServer) -> None:
    clock = Clock()
    electors = [elector(cluster, f"pod-{i}", clock) for i in range(5)]
    results = await asyncio.gather(*(e.try_acquire_or_renew() for e in electors))
    assert sum(results) == 1
    winner = electors[results.index(True)].identity
    assert leases.holder(NS, NAME) == winner
    assert sum(leases.writes.values()) == 1


async def test_release_on_stop_hands_over_at_once(cluster: Cluster, leases: LeaseServer) -> None:
    clock, changes = Clock(), []
    a, b = elector(cluster, "pod-a", clock, changes), elector(cluster, "pod-b", clock, changes)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    await a.stop()
    spec = leases.leases[(NS, NAME)]["spec"]
    assert "holderIdentity" not in spec and spec["leaseDurationSeconds"] == 1
    assert await b.try_acquire_or_renew()  # no waiting for the old holder's duration
    assert changes == [("pod-a", True), ("pod-a", False), ("pod-b", True)]
    # A follower's stop releases nothing.
    await a.stop()
    assert leases.holder(NS, NAME) == "pod-b"


async def test_outage_keeps_the_leader_until_the_renew_deadline(
    cluster: Cluster, leases: LeaseServer
) -> None:
    clock = Clock()
    a = elector(cluster, "pod-a", clock)
    assert await a.try_acquire_or_renew()
    leases.fail_next = 100
    clock.t += 5
    assert await a.try_acquire_or_renew()  # 5 s since the last renewal: still within 15 - 5
    clock.t += 4.9
    assert await a.try_acquire_or_renew()
    clock.t += 0.2  # 10.1 s: a peer may take over in under 5 s; stop acting as leader now
    assert not await a.try_acquire_or_renew()
    leases.fail_next = 0
    assert await a.try_acquire_or_renew()  # the API is back and the Lease is still ours


async def test_the_loop_runs_rounds_and_stop_releases(cluster: Cluster, leases: LeaseServer) -> None:
    a = LeaderElector(
        cluster,
        namespace=NS,
        name=NAME,
        identity="pod-a",
        lease_duration_seconds=1,
        renew_interval_seconds=0.1,
    )
    await a.start()
    for _ in range(100):
        if leases.writes["pod-a"] >= 3:
            break
        await asyncio.sleep(0.05)
    assert a.is_leader and leases.writes["pod-a"] >= 3
    await a.stop()
    assert not a.is_leader and leases.holder(NS, NAME) is None


def test_lease_namespace_is_pitcrews_own(tmp_path: Path) -> None:
    missing = str(tmp_path / "none")
    assert resolve_lease_namespace("ops", env={}, namespace_file=missing) == "ops"
    sa = tmp_path / "namespace"
    sa.write_text("pitcrew\n")
    assert resolve_lease_namespace(None, env={"POD_NAMESPACE": "x"}, namespace_file=str(sa)) == "pitcrew"
    assert resolve_lease_namespace(None, env={"POD_NAMESPACE": "x"}, namespace_file=missing) == "x"
    with pytest.raises(LeaseNamespaceUnknown, match=r"set ha\.lease_namespace"):
        resolve_lease_namespace(None, env={}, namespace_file=missing)
