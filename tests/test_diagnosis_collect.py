"""Evidence collection with the real `kubernetes` client over HTTP against the kmock emulator."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.cli import main
from bot.cluster import CollectOptions
from bot.diagnose import collect_and_diagnose, diagnose, render_text
from bot.evidence import LogKey, Scope
from bot.hosts import Hosts
from bot.model import HostCommandStep, ObjectRef
from bot.snapshot import read_bundle
from handlers.base import HostTarget, Settings
from tests.support.kube import KubeHarness, container, pod, pvc, waiting
from tests.support.sshd import SshdServer

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
    diagnosis = diagnose(evidence)
    assert "cannot list configmaps in monitoring: forbidden" in render_text(diagnosis)
    # Without the Loki config its root cause cannot be proven; the Prometheus one still is.
    codes = [f.code for f in diagnosis.findings]
    assert codes[0] == "volume-permission-denied" and "loki-frontend-worker-all-in-one" not in codes


async def test_forbidden_pods_are_not_reported_as_a_healthy_cluster(kube: KubeHarness) -> None:
    kube.seed_bundle(SEED)
    kube.forbid("pods", namespace="monitoring")
    async with kube.cluster() as cluster:
        evidence = await cluster.collect(Scope(("monitoring",)))
    assert evidence.errors == ("cannot list pods in monitoring: forbidden",)
    diagnosis = diagnose(evidence)
    text = render_text(diagnosis)
    assert "No problems found" not in text and "looks healthy" not in text
    assert "  - cannot list pods in monitoring: forbidden" in text
    # The StatefulSets' own status still says their replicas are not ready.
    assert {f.code for f in diagnosis.findings} == {"workload-not-healthy"}
    assert "statefulset/prometheus has 0/1 replicas ready (its pods could not be listed)" in text


async def test_live_pvc_pending_knows_which_storage_classes_exist(kube: KubeHarness) -> None:
    # Trimming StorageClasses to the ones PVCs name would leave none here, and "fast-ssd does not
    # exist" could not be told from "no volume bound yet" (the bundle of the same cluster can).
    objects = [
        pod(
            "worker-0",
            "jobs",
            labels={"app": "worker"},
            containers=[container("worker", "example.com/worker:1.2")],
            statuses=[waiting("worker", "ContainerCreating")],
            phase="Pending",
            volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
        ),
        pvc("data", "jobs", phase="Pending", storage_class="fast-ssd"),
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": "standard"},
            "provisioner": "rancher.io/local-path",
        },
    ]
    kube.seed(objects)
    async with kube.cluster() as cluster:
        evidence = await cluster.collect(Scope(("jobs",)))
    [finding] = [f for f in diagnose(evidence).findings if f.code == "pvc-pending"]
    assert "StorageClass fast-ssd does not exist" in finding.summary


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
    # 20 namespaced kinds x 1 namespace + 4 cluster-scoped kinds, whatever the number of pods.
    assert len(non_log) == 24
    assert len({(c.group, c.resource, c.namespace) for c in non_log}) == 24  # one call per kind
    assert all(c.verb == "list" for c in non_log)
    assert kube.count(subresource="log") == 0


async def test_lists_are_read_in_pages_and_each_page_is_parsed(kube: KubeHarness) -> None:
    # 25 pods, pages of 10: three list calls for pods (limit + continue), every pod once, in order.
    kube.seed(_pods(25))
    async with kube.cluster(max_log_containers=0, list_page_size=10) as cluster:
        evidence = await cluster.collect(Scope(("apps",)))
    assert sorted(p.name for p in evidence.pods) == sorted(f"web-{i}" for i in range(25))
    pod_lists = [c for c in kube.calls if c.resource == "pods" and c.verb == "list"]
    assert len(pod_lists) == 3
    # Diagnosis keeps no raw pod JSON (only what plans read: workloads); a --save collection does.
    assert all(not p.raw for p in evidence.pods)
    async with kube.cluster(max_log_containers=0, list_page_size=10) as cluster:
        kept = await cluster.collect(Scope(("apps",)), keep_raw=True)
    assert all(p.raw["metadata"]["name"] == p.name for p in kept.pods)


async def test_an_expired_continue_token_restarts_the_list_once(kube: KubeHarness) -> None:
    kube.seed(_pods(25))
    expired: list[str] = []

    async def expire_first_token(request: Any, harness: KubeHarness) -> aiohttp.web.StreamResponse | None:
        token = dict(request.params).get("continue")
        if token and not expired and request.resource is not None and request.resource.plural == "pods":
            expired.append(token)
            return aiohttp.web.json_response(
                {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410},
                status=410,
            )
        return None

    kube.middlewares.insert(0, expire_first_token)
    async with kube.cluster(max_log_containers=0, list_page_size=10) as cluster:
        evidence = await cluster.collect(Scope(("apps",)))
    assert expired
    assert not [e for e in evidence.errors if "pods" in e]
    # Read again from the top, not stitched onto the first page: no pod twice, none missing.
    assert sorted(p.name for p in evidence.pods) == sorted(f"web-{i}" for i in range(25))
    assert len([c for c in kube.calls if c.resource == "pods" and c.verb == "list"]) == 5


async def test_collect_and_diagnose_seed_live(kube: KubeHarness) -> None:
    kube.seed_bundle(SEED)
    async with kube.cluster() as cluster:
        evidence, diagnosis = await collect_and_diagnose(cluster, Scope(("monitoring",)))
    assert [f.code for f in diagnosis.findings] == [
        "volume-permission-denied",
        "loki-frontend-worker-all-in-one",
        "service-no-endpoints",
    ]
    # Live evidence has no host facts: the plan patches and restarts but proposes no blind chown.
    plan = diagnosis.findings[0].plan
    assert plan is not None and [s.action for s in plan.steps] == ["patch", "restart-pod", "wait-ready"]
    assert evidence.observed_at is not None


async def test_logs_are_bounded_and_a_missing_previous_log_is_not_an_error(kube: KubeHarness) -> None:
    kube.seed(_pods(20))  # 4 crashing containers, no logs seeded at all
    async with kube.cluster(max_log_containers=3, log_concurrency=2) as cluster:
        evidence = await cluster.collect(Scope(("apps",)))
    assert kube.count(subresource="log") == 3
    assert evidence.errors == ("logs skipped for 1 containers (limit 3 per collection)",)
    # The pod an alert names is read first, whatever its place in the list.
    kube.reset_calls()
    async with kube.cluster(max_log_containers=1) as cluster:
        await cluster.collect(Scope(("apps",), focus=(ObjectRef("Pod", "web-15", "apps"),)))
    assert [c.name for c in kube.calls if c.subresource == "log"] == ["web-15"]


async def test_a_short_log_budget_goes_to_containers_in_trouble_now(kube: KubeHarness) -> None:
    pods = _pods(2)  # web-0 crashing, web-1 healthy
    recovered = pods[1]["status"]["containerStatuses"][0]  # type: ignore[index]
    recovered["restartCount"] = 2  # restarted once upon a time, Ready since
    recovered["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error"}}
    pods.reverse()  # the recovered one is listed first
    kube.seed(pods)
    async with kube.cluster(max_log_containers=1) as cluster:
        await cluster.collect(Scope(("apps",)))
    assert [(c.name, c.subresource) for c in kube.calls if c.subresource == "log"] == [("web-0", "log")]


async def test_cli_diagnose_live_and_save(kube: KubeHarness, tmp_path: Path) -> None:
    kube.seed_bundle(SEED)
    out = tmp_path / "bundle"
    args = [
        "diagnose",
        "--kubeconfig",
        str(kube.kubeconfig),
        "-n",
        "monitoring",
        "--save",
        str(out),
        "-o",
        "json",
    ]
    assert await asyncio.to_thread(main, args) == 1
    assert (out / "00-ANALYSIS-AND-RECOMMENDATIONS.txt").exists()
    assert (out / "logs" / "monitoring" / "prometheus-0" / "prometheus.previous.log").exists()
    again = diagnose(read_bundle(out))
    assert [f.code for f in again.findings][:2] == [
        "volume-permission-denied",
        "loki-frontend-worker-all-in-one",
    ]


async def test_cli_unreachable_cluster_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: x, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: x, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: x, user: x}}]\n"
    )
    assert await asyncio.to_thread(main, ["diagnose", "--kubeconfig", str(config)]) == 2
    assert await asyncio.to_thread(main, ["diagnose", "--kubeconfig", str(tmp_path / "nope")]) == 2


async def test_saved_bundle_diagnoses_like_the_live_cluster(
    kube: KubeHarness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The seed's crashes are a year older than "now": live, Loki's old restarts are history. The
    # bundle must say when it was taken and what could not be read, or its findings differ.
    kube.seed_bundle(SEED)
    kube.forbid("configmaps", namespace="monitoring")
    out = tmp_path / "bundle"
    live_args = ["diagnose", "--kubeconfig", str(kube.kubeconfig), "-n", "monitoring", "--save", str(out)]
    assert await asyncio.to_thread(main, [*live_args, "-o", "json"]) == 1
    live = json.loads(capsys.readouterr().out)
    assert main(["diagnose", "--snapshot", str(out), "-o", "json"]) == 1
    offline = json.loads(capsys.readouterr().out)
    # Without its ConfigMap, Loki's root cause cannot be proven: the catch-all says it is not Ready.
    assert [f["code"] for f in live["findings"]] == [
        "volume-permission-denied",
        "pod-not-healthy",
        "service-no-endpoints",
    ]
    assert offline["findings"] == live["findings"]
    assert (
        offline["collection_errors"]
        == live["collection_errors"]
        == ["cannot list configmaps in monitoring: forbidden"]
    )
    assert offline["observed_at"] == live["observed_at"]


async def test_live_host_facts_over_ssh_bring_the_chown_step(
    kube: KubeHarness, sshd_server: SshdServer, tmp_path: Path
) -> None:
    # The seed's local PVs, moved under the SSH server's data root (owned by root, as in the seed).
    bundle = tmp_path / "seed"
    shutil.copytree(SEED, bundle)
    pvs = bundle / "cluster" / "persistentvolumes.yaml"
    data = sshd_server.data_root / "srv"
    pvs.write_text(pvs.read_text().replace("/srv/monitoring_data", str(data)))
    for name in ("prometheus", "loki"):
        (data / name).mkdir(parents=True)
    kube.seed_bundle(bundle)
    settings = Settings(hosts=(HostTarget("masternode", sshd_server.nodes),))
    async with kube.cluster() as cluster:
        evidence, diagnosis = await collect_and_diagnose(
            cluster, Scope(("monitoring",)), settings=settings, hosts=Hosts([sshd_server])
        )
    # Only the failing pods' data directories are looked at: Grafana is healthy.
    [facts] = evidence.hosts
    assert sorted(f.path for f in facts.paths) == [str(data / "loki"), str(data / "prometheus")]
    plan = diagnosis.findings[0].plan
    assert plan is not None
    [chown] = [s for s in plan.steps if isinstance(s, HostCommandStep)]
    assert (chown.host, chown.path, chown.uid, chown.gid) == (
        "masternode",
        str(data / "prometheus"),
        65534,
        65534,
    )

    # A path outside the host's data path prefixes is not read, and the report says so.
    pvs.write_text(pvs.read_text().replace(str(data), "/srv/monitoring_data"))
    kube.seed_bundle(bundle)
    async with kube.cluster() as cluster:
        evidence, diagnosis = await collect_and_diagnose(
            cluster, Scope(("monitoring",)), settings=settings, hosts=Hosts([sshd_server])
        )
    assert evidence.hosts == ()
    assert any(
        e.startswith("cannot stat /srv/monitoring_data/prometheus on masternode: path")
        for e in evidence.errors
    )
    plan = diagnosis.findings[0].plan
    assert plan is not None and [s.action for s in plan.steps] == ["patch", "restart-pod", "wait-ready"]


async def test_a_response_body_is_read_off_the_event_loop(kube: KubeHarness) -> None:
    # The API server sends the headers, then the body a moment later. Read on the event loop (where
    # this emulator also runs, as webhooks and Slack acks do in pitcrew), the wait would hold the loop
    # and the body could never be sent: the read would time out.
    async def slow_log(request: Any, harness: KubeHarness) -> aiohttp.web.StreamResponse | None:
        if request.subresource != "log":
            return None
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request._raw_request)
        await asyncio.sleep(0.05)
        await response.write(b'level=error msg="open /prometheus/lock: permission denied"\n')
        await response.write_eof()
        return response

    kube.middlewares.insert(0, slow_log)
    async with kube.cluster(request_timeout_seconds=2.0) as cluster:
        lines = await cluster.read_log("monitoring", "prometheus-0", "prometheus")
    assert lines == ('level=error msg="open /prometheus/lock: permission denied"',)


async def test_a_log_read_is_bounded_in_bytes_not_only_in_lines(kube: KubeHarness) -> None:
    # 200 lines of 64 KiB each: a tail of lines alone would be 12.5 MiB in memory, per container.
    kube.logs[("monitoring", "loki-0", "loki", False)] = [f"{n:04d} " + "x" * 65536 for n in range(200)]
    async with kube.cluster(log_tail_lines=200) as cluster:
        lines = await cluster.read_log("monitoring", "loki-0", "loki")
        since = await cluster.read_log_since("monitoring", "loki-0", "loki", since_seconds=60)
    limit = CollectOptions().max_log_bytes
    for read in (lines, since):
        assert 0 < len("\n".join(read)) <= limit
        assert read[0].startswith("0000 ")
