"""The emulator's write semantics (tests/support/kube_writes.py) match the real API server's.

kmock alone is simpler than kube-apiserver: it ignores `dryRun=All` (the change is applied), answers a
failed JSON Patch `test` with HTTP 500, keeps no resourceVersion and serves no PUT. These tests pin the
real server's behaviour that the fixture adds, through the real `kubernetes` client (bot.cluster) where
pitcrew uses it and raw HTTP for the rest, so the executor's safety tests rest on faithful answers.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from bot.cluster import ClusterError
from bot.model import ObjectRef
from tests.support.kube import KubeHarness
from tests.support.kube_writes import WriteSemantics, live_object

pytestmark = pytest.mark.integration

STS = ObjectRef("StatefulSet", "prometheus", "monitoring")
SECURITY = {"op": "add", "path": "/spec/template/spec/securityContext", "value": {"runAsUser": 65534}}


def _rv(obj: dict[str, Any] | None) -> str:
    assert obj is not None
    return str(obj["metadata"]["resourceVersion"])


async def test_dry_run_returns_result_without_persisting(
    kube_writes: tuple[KubeHarness, WriteSemantics],
) -> None:
    kube, _ = kube_writes
    before = live_object(kube, "StatefulSet", "prometheus", "monitoring")
    assert before is not None and "securityContext" not in before["spec"]["template"]["spec"]
    async with kube.cluster() as cluster:
        result = await cluster.json_patch(STS, [SECURITY], dry_run=True)
    assert result["spec"]["template"]["spec"]["securityContext"] == {"runAsUser": 65534}
    assert live_object(kube, "StatefulSet", "prometheus", "monitoring") == before
    assert kube.count(verb="patch", resource="statefulsets", dry_run=True) == 1


async def test_write_bumps_resource_version_and_generation(
    kube_writes: tuple[KubeHarness, WriteSemantics],
) -> None:
    kube, _ = kube_writes
    before = live_object(kube, "StatefulSet", "prometheus", "monitoring")
    async with kube.cluster() as cluster:
        result = await cluster.json_patch(STS, [SECURITY])
        again = await cluster.json_patch(STS, [SECURITY])  # same content: a no-op
    after = live_object(kube, "StatefulSet", "prometheus", "monitoring")
    assert _rv(result) == _rv(after) != _rv(before)
    assert after is not None and before is not None
    assert after["metadata"]["generation"] == before["metadata"].get("generation", 1) + 1
    assert _rv(again) == _rv(after)
    assert after["metadata"]["uid"] == before["metadata"]["uid"]


async def test_failed_json_patch_test_is_422_and_changes_nothing(
    kube_writes: tuple[KubeHarness, WriteSemantics],
) -> None:
    kube, _ = kube_writes
    before = live_object(kube, "StatefulSet", "prometheus", "monitoring")
    stale = {"op": "test", "path": "/spec/replicas", "value": 7}
    async with kube.cluster() as cluster:
        with pytest.raises(ClusterError) as caught:
            await cluster.json_patch(STS, [stale, SECURITY])
    assert caught.value.status == 422
    assert live_object(kube, "StatefulSet", "prometheus", "monitoring") == before


async def test_stale_resource_version_is_409_on_patch_and_put(
    kube_writes: tuple[KubeHarness, WriteSemantics],
) -> None:
    kube, _ = kube_writes
    before = live_object(kube, "ConfigMap", "loki-config", "monitoring")
    assert before is not None
    stale = {"op": "replace", "path": "/metadata/resourceVersion", "value": "1"}
    async with kube.cluster() as cluster:
        with pytest.raises(ClusterError) as caught:
            await cluster.json_patch(
                ObjectRef("ConfigMap", "loki-config", "monitoring"),
                [stale, {"op": "add", "path": "/data/README", "value": "x"}],
            )
    assert caught.value.status == 409
    url = f"{kube.url}/api/v1/namespaces/monitoring/configmaps/loki-config"
    body = dict(before, data={"only": "this"})
    body["metadata"] = dict(before["metadata"], resourceVersion="1")
    async with aiohttp.ClientSession() as session:
        async with session.put(url, json=body) as response:
            assert response.status == 409
            assert (await response.json())["reason"] == "Conflict"
        body["metadata"]["resourceVersion"] = before["metadata"]["resourceVersion"]
        async with session.put(url, json=body) as response:
            assert response.status == 200
    after = live_object(kube, "ConfigMap", "loki-config", "monitoring")
    assert after is not None and after["data"] == {"only": "this"}
    assert _rv(after) != _rv(before)


async def test_dry_run_delete_keeps_the_pod(kube_writes: tuple[KubeHarness, WriteSemantics]) -> None:
    kube, _ = kube_writes
    url = f"{kube.url}/api/v1/namespaces/monitoring/pods/loki-0"
    async with aiohttp.ClientSession() as session, session.delete(url, params={"dryRun": "All"}) as response:
        assert response.status == 200
    assert live_object(kube, "Pod", "loki-0", "monitoring") is not None


async def test_service_proxy_forwards_to_backend(
    kube_writes: tuple[KubeHarness, WriteSemantics], stack: Any
) -> None:
    kube, semantics = kube_writes
    semantics.service_backends[("monitoring", "prometheus")] = stack.prometheus_url
    async with kube.cluster() as cluster:
        status, text = await cluster.service_proxy_get("monitoring", "prometheus", 9090, "/-/healthy")
        missing = await cluster.service_proxy_get("monitoring", "loki", 3100, "/ready")
    assert (status, text) == (200, "Prometheus Server is Healthy.\n")
    assert missing[0] == 503
