"""Evidence collection with the real `kubernetes` client over HTTP against the kmock emulator."""

from __future__ import annotations

import pytest

from bot.evidence import LogKey, Scope
from tests.support.kube import KubeHarness

SEED = "examples/seed-incident"

pytestmark = pytest.mark.integration


async def test_collect_seed_bundle_through_real_client(kube: KubeHarness) -> None:
    kube.seed_bundle(SEED)
    async with kube.cluster() as cluster:
        assert await cluster.ping()
        evidence = await cluster.collect(Scope(("monitoring",)))
    assert evidence.errors == ()
    assert {p.name for p in evidence.pods} == {"prometheus-0", "loki-0", "grafana-5f879c7654-dnmhs"}
    assert {w.meta.name for w in evidence.workloads} == {
        "prometheus",
        "loki",
        "grafana",
        "grafana-5f879c7654",
    }
    assert {c.meta.name for c in evidence.configmaps} == {"loki-config", "prometheus-config"}
    assert {v.meta.name for v in evidence.pvs} == {"prometheus-pv", "loki-pv", "grafana-pv"}
    assert [n.meta.name for n in evidence.nodes] == ["masternode"]
    previous = evidence.log("monitoring", "prometheus-0", "prometheus", previous=True)
    assert any("open /prometheus/lock: permission denied" in line for line in previous)
    # Logs only for unhealthy containers: not for grafana or the ready config-reloader.
    assert LogKey("monitoring", "grafana-5f879c7654-dnmhs", "grafana", False) not in evidence.logs
    assert not any(k.container == "config-reloader" for k in evidence.logs)
    assert kube.count(verb="list", resource="pods", namespace="monitoring") == 1


async def test_forbidden_list_degrades_gracefully(kube: KubeHarness) -> None:
    kube.seed_bundle(SEED)
    kube.forbid("configmaps", namespace="monitoring")
    async with kube.cluster() as cluster:
        evidence = await cluster.collect(Scope(("monitoring",)))
    assert evidence.errors == ("cannot list configmaps in monitoring: forbidden",)
    assert evidence.configmaps == ()
    assert len(evidence.pods) == 3  # everything else was still read


def _pods(count: int) -> list[dict[str, object]]:
    pods: list[dict[str, object]] = []
    for i in range(count):
        crashing = i % 5 == 0
        status: dict[str, object] = {
            "name": "app",
            "ready": not crashing,
            "restartCount": 3 if crashing else 0,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}} if crashing else {"running": {}},
        }
        if crashing:
            status["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error"}}
        pods.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"web-{i}", "namespace": "apps", "labels": {"app": "web"}},
                "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "nginx"}]},
                "status": {"phase": "Running", "containerStatuses": [status]},
            }
        )
    return pods


@pytest.mark.parametrize("count", [5, 50])
async def test_list_calls_do_not_grow_with_pods(kube: KubeHarness, count: int) -> None:
    kube.seed(_pods(count))
    async with kube.cluster(max_log_containers=0) as cluster:
        evidence = await cluster.collect(Scope(("apps",)))
    assert len(evidence.pods) == count
    non_log = [c for c in kube.calls if c.subresource != "log"]
    # 11 namespaced kinds x 1 namespace + 3 cluster-scoped kinds, whatever the number of pods.
    assert len(non_log) == 14
    assert all(c.verb == "list" for c in non_log)
    assert kube.count(subresource="log") == 0
