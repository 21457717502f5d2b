"""pod-evicted: the kubelet's eviction wording, one finding per node; traps: pressure False/Unknown,
old evictions on a node without pressure, a drained pod."""

from __future__ import annotations

from typing import Any

from bot.diagnose import diagnose
from bot.model import ObjectRef
from handlers import pod_evicted
from handlers.base import Settings
from tests.support.kube import container, make_evidence, node, pod, running

LOW_DISK = (
    "The node was low on resource: ephemeral-storage. Threshold quantity: 10120387530, available: 9230148Ki. "
    "Container indexer was using 18764012Ki, request is 0, has larger consumption of ephemeral-storage. "
)


def _evicted(name: str, namespace: str, node_name: str, message: str, *, when: str = "2025-10-09T21:40:00Z"):
    p = pod(
        name,
        namespace,
        labels={"app": name.rsplit("-", 2)[0]},
        owner=("ReplicaSet", name.rsplit("-", 1)[0]),
        containers=[container("indexer", "acme/indexer:5")],
        statuses=[
            {
                "name": "indexer",
                "ready": False,
                "restartCount": 0,
                "state": {
                    "terminated": {
                        "exitCode": 137,
                        "reason": "ContainerStatusUnknown",
                        "message": "The container could not be located when the pod was terminated",
                        "finishedAt": when,
                    }
                },
            }
        ],
        node=node_name,
        phase="Failed",
    )
    p["status"]["reason"] = "Evicted"
    p["status"]["message"] = message
    p["status"]["conditions"] = [
        {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "TerminationByKubelet",
            "lastTransitionTime": when,
        }
    ]
    return p


def _node(name: str, **pressures: str) -> dict[str, Any]:
    n = node(name)
    for kind, status in pressures.items():
        n["status"]["conditions"].append(
            {
                "type": kind,
                "status": status,
                "reason": f"KubeletHas{kind}" if status == "True" else f"KubeletHasNo{kind}",
                "message": "kubelet has disk pressure"
                if status == "True"
                else "kubelet has no disk pressure",
                "lastTransitionTime": "2025-10-09T21:35:00Z",
            }
        )
    return n


def test_evicted_pods_and_disk_pressure_make_one_finding_per_node() -> None:
    objects = [
        _node("pool-b-7x2k", DiskPressure="True", MemoryPressure="False"),
        _node("pool-b-9q1m", DiskPressure="False"),
        _evicted("search-indexer-5c8f-abcde", "search", "pool-b-7x2k", LOW_DISK),
        _evicted("search-indexer-5c8f-fghij", "search", "pool-b-7x2k", LOW_DISK),
        _evicted(
            "thumbs-6d9-klmno",
            "media",
            "pool-b-7x2k",
            "The node was low on resource: ephemeral-storage. Threshold quantity: 10120387530, available: "
            "9000000Ki. ",
        ),
        pod(
            "search-indexer-5c8f-zzzzz",
            "search",
            labels={"app": "search-indexer"},
            containers=[container("indexer", "acme/indexer:5")],
            statuses=[running("indexer", ready=True)],
            node="pool-b-9q1m",
        ),
    ]
    [finding] = pod_evicted.diagnose(make_evidence(objects), Settings())
    assert finding.code == "pod-evicted" and finding.plan is None
    assert finding.severity.value == "critical"
    assert finding.objects[0] == ObjectRef("Node", "pool-b-7x2k")
    assert finding.summary == (
        "node pool-b-7x2k ran low on ephemeral-storage: the kubelet evicted 3 pods "
        "(search-indexer-5c8f-abcde, search-indexer-5c8f-fghij, thumbs-6d9-klmno); "
        "it still reports DiskPressure"
    )
    assert (
        "node pool-b-7x2k: DiskPressure=True since 2025-10-09T21:35:00Z (KubeletHasDiskPressure: kubelet "
        "has disk pressure)" in finding.evidence
    )
    assert "  container indexer used 18764012Ki (request 0)" in finding.evidence
    assert ObjectRef("Pod", "thumbs-6d9-klmno", "media") in finding.objects


def test_memory_eviction_without_pressure_now_and_a_pressure_node_without_evictions() -> None:
    objects = [
        _node("edge-1"),
        _node("edge-2", PIDPressure="True"),
        _evicted(
            "api-7f-aaaaa",
            "shop",
            "edge-1",
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 81460Ki. Container "
            "indexer was using 1532Mi, request is 512Mi, has larger consumption of memory. ",
        ),
        _evicted("api-7f-bbbbb", "shop", "edge-1", "The node had condition: [MemoryPressure]. "),
    ]
    findings = {f.objects[0].name: f for f in pod_evicted.diagnose(make_evidence(objects), Settings())}
    assert findings["edge-1"].severity.value == "warning"
    assert findings["edge-1"].summary.startswith("node edge-1 ran low on memory: the kubelet evicted 2 pods")
    assert findings["edge-2"].summary == (
        "node edge-2 reports PIDPressure: the kubelet evicts pods and the scheduler places no new ones there "
        "until it clears"
    )


def test_it_replaces_the_catch_all_for_evicted_pods() -> None:
    objects = [_node("edge-1"), _evicted("api-7f-aaaaa", "shop", "edge-1", LOW_DISK)]
    assert [f.code for f in diagnose(make_evidence(objects)).findings] == ["pod-evicted"]


# -- traps --------------------------------------------------------------------------------------


def test_trap_pressure_false_or_unknown_and_old_evictions() -> None:
    objects = [
        _node("edge-1", DiskPressure="False", MemoryPressure="False", PIDPressure="False"),
        _node("edge-3", DiskPressure="Unknown", MemoryPressure="Unknown"),
        # Evicted three days ago; the node has been fine since and the replacement runs.
        _evicted("api-7f-aaaaa", "shop", "edge-1", LOW_DISK, when="2025-10-06T10:00:00Z"),
        pod(
            "api-7f-ccccc",
            "shop",
            labels={"app": "api"},
            containers=[container("indexer", "acme/indexer:5")],
            statuses=[running("indexer", ready=True)],
            node="edge-1",
        ),
    ]
    assert pod_evicted.diagnose(make_evidence(objects), Settings()) == []


def test_trap_other_failed_pods_are_not_evictions() -> None:
    p = _evicted("api-7f-aaaaa", "shop", "edge-1", "Pod was rejected: Node didn't have enough resource: cpu")
    p["status"]["reason"] = "OutOfcpu"
    objects = [_node("edge-1"), p]
    assert pod_evicted.diagnose(make_evidence(objects), Settings()) == []
