"""deploy/'s RBAC is exact: every Kubernetes API call pitcrew makes is granted to its ServiceAccount by the
rendered Role/ClusterRole bindings, and no rule grants anything pitcrew never does.

The calls are the union of
- every call the test suite's pitcrew made against the recording emulator (`kube_api_calls`, the session
  collector of tests/support/kube.py; this file is named to run last so the collector is complete), and
- the calls of pitcrew's whole loop, run here on its own so that the check holds even when this file
  runs alone: collect evidence, diagnose, server-side dry run, execute the approved plans (backup,
  patch, restart, wait, validate), validate again, roll back. The scenario covers every workload kind a
  plan may patch: the seed incident (Prometheus StatefulSet, Loki), a Grafana Deployment and a
  Prometheus agent DaemonSet that cannot write their data volumes.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import os
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.cluster import Cluster
from bot.config import Config, parse_config
from bot.diagnose import diagnose
from bot.evidence import Scope
from bot.leader import LeaderElector
from bot.model import StepEvent
from bot.remediation import dry_run, execute, rollback
from bot.store import Store
from bot.validate import validate
from tests.support.deploy import (
    ApiCall,
    ClientCall,
    ClientCallLog,
    bound_rules,
    call_from_http,
    render,
    ungranted,
    unused_grants,
)
from tests.support.kube import ApiCall as RecordedCall
from tests.support.kube import ApiCallCollector, KubeHarness
from tests.support.kube_writes import SEED_BUNDLE, Kubelet, install_write_semantics, live_object
from tests.support.leases import install_leases

pytestmark = pytest.mark.integration

NAMESPACE = "monitoring"
# pitcrew's own namespace and config.yaml's ha.lease_name, as deploy/components/leader-election grants.
LEASE_NAMESPACE, LEASE_NAME = "pitcrew", "pitcrew-leader"
DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _crash_loop(pod: dict[str, Any], container: str, image: str) -> dict[str, Any]:
    """The pod, its container crash-looping (as the kubelet reports it)."""
    pod = copy.deepcopy(pod)
    pod["status"] = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "False"}],
        "containerStatuses": [
            {
                "name": container,
                "image": image,
                "ready": False,
                "restartCount": 7,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": _now()}},
            }
        ],
    }
    return pod


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


AGENT_IMAGE = "quay.io/prometheus/prometheus:v2.48.0"


def daemonset_scenario() -> list[dict[str, Any]]:
    """A Prometheus agent DaemonSet whose pod cannot write its hostPath WAL directory."""
    labels = {"app": "prometheus-agent"}
    container = {
        "name": "prometheus-agent",
        "image": AGENT_IMAGE,
        "args": ["--enable-feature=agent", "--storage.agent.path=/prometheus-agent"],
        "volumeMounts": [{"name": "wal", "mountPath": "/prometheus-agent"}],
    }
    volume = {"name": "wal", "hostPath": {"path": "/var/lib/prometheus-agent", "type": "DirectoryOrCreate"}}
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": "prometheus-agent",
            "namespace": NAMESPACE,
            "uid": "uid-ds-agent",
            "labels": labels,
        },
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [container], "volumes": [volume]},
            },
        },
        "status": {"desiredNumberScheduled": 1, "numberReady": 0, "numberAvailable": 0},
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "prometheus-agent-k8w2p",
            "namespace": NAMESPACE,
            "uid": "uid-pod-agent",
            "labels": labels,
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "prometheus-agent",
                 "uid": "uid-ds-agent", "controller": True}
            ],
        },
        "spec": {"nodeName": "masternode", "containers": [container], "volumes": [volume]},
    }  # fmt: skip
    return [daemonset, _crash_loop(pod, "prometheus-agent", AGENT_IMAGE)]


AGENT_LOG = (
    'ts=2025-10-09T21:55:02.001Z caller=main.go:1090 level=error err="error starting WAL storage: '
    'mkdir /prometheus-agent/wal: permission denied"'
)
GRAFANA_LOG = (
    "GF_PATHS_DATA='/var/lib/grafana' is not writable.",
    "mkdir: can't create directory '/var/lib/grafana/plugins': Permission denied",
)


@pytest_asyncio.fixture
async def loop_calls(kube: KubeHarness, tmp_path: Path, kube_client_calls: ClientCallLog) -> list[ClientCall]:
    """pitcrew's loop on the seed incident plus a crash-looping Grafana Deployment and Prometheus agent
    DaemonSet; the calls it made, with the client's User-Agent (the harness also adds them to the session
    collectors)."""
    semantics = install_write_semantics(kube)
    install_leases(kube)
    kube.seed_bundle(SEED_BUNDLE)
    (grafana,) = [p for p in _pods(kube) if p["metadata"]["name"].startswith("grafana-")]
    grafana_image = grafana["spec"]["containers"][0]["image"]
    # Someone dropped Grafana's securityContext: its pod can no longer write /var/lib/grafana.
    deployment = live_object(kube, "Deployment", "grafana", NAMESPACE)
    assert deployment is not None
    del deployment["spec"]["template"]["spec"]["securityContext"]
    kube.seed([deployment, _crash_loop(grafana, "grafana", grafana_image), *daemonset_scenario()])
    for previous in (False, True):
        kube.logs[(NAMESPACE, grafana["metadata"]["name"], "grafana", previous)] = list(GRAFANA_LOG)
        kube.logs[(NAMESPACE, "prometheus-agent-k8w2p", "prometheus-agent", previous)] = [AGENT_LOG]
    config = parse_config(
        {
            "remediation": {"backup_dir": str(tmp_path / "backups"), "wait_ready_timeout_seconds": 30},
            "validation": {"http_timeout_seconds": 2},
        },
        env={},
    )
    first = len(kube_client_calls.calls)
    store = await Store.open(str(tmp_path / "pitcrew.db"))
    try:
        async with kube.cluster() as cluster, Kubelet(kube, semantics, ready=True) as kubelet:
            for pod in _pods(kube):
                if pod["metadata"].get("ownerReferences", [{}])[0].get("kind") == "StatefulSet":
                    kubelet.watch(NAMESPACE, pod["metadata"]["name"])
            await _run_loop(cluster, store, config)
            await _run_election(cluster)
    finally:
        await store.close()
    return kube_client_calls.calls[first:]


async def _run_election(cluster: Cluster) -> None:
    """ha.enabled's calls: the first replica creates the Lease, renews it and releases it; the second
    reads it and takes it over."""
    a, b = (
        LeaderElector(
            cluster,
            namespace=LEASE_NAMESPACE,
            name=LEASE_NAME,
            identity=identity,
            lease_duration_seconds=15,
            renew_interval_seconds=5,
        )
        for identity in ("pod-a", "pod-b")
    )
    assert await a.try_acquire_or_renew() and await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    assert await a.release()
    assert await b.try_acquire_or_renew()


def _pods(kube: KubeHarness) -> list[dict[str, Any]]:
    return [
        copy.deepcopy(dict(obj.raw))
        for (res, namespace, _), obj in kube.emulator.objects.items()
        if getattr(res, "plural", None) == "pods" and namespace == NAMESPACE and not obj.deleted
    ]


async def _run_loop(cluster: Cluster, store: Store, config: Config) -> None:
    events: list[StepEvent] = []

    async def on_event(event: StepEvent) -> None:
        events.append(event)

    evidence = await cluster.collect(Scope(namespaces=(NAMESPACE,)))
    findings = [f for f in diagnose(evidence).findings if f.plan is not None and f.plan.steps]
    patched = {
        step.target.kind for f in findings if f.plan for step in f.plan.steps if step.action == "patch"
    }
    # The scenario makes pitcrew patch every workload kind a plan can patch, edit a ConfigMap (Loki's
    # frontend_worker) and restart pods.
    assert {"StatefulSet", "Deployment", "DaemonSet"} <= patched, [f.code for f in findings]
    actions = {step.action for f in findings if f.plan for step in f.plan.steps}
    assert {"patch", "edit-configmap", "restart-pod", "wait-ready"} <= actions, actions
    await dry_run(findings, cluster)
    result = await asyncio.wait_for(
        execute(
            findings,
            incident_id=None,
            actor="rbac-test",
            cluster=cluster,
            hosts=None,
            store=store,
            config=config,
            on_event=on_event,
            poll_interval_seconds=0.05,
        ),
        timeout=90,
    )
    assert result.outcome in ("succeeded", "failed"), result.detail
    assert result.execution_id is not None
    await validate([NAMESPACE], cluster=cluster, config=config, since=None)
    await rollback(
        result.execution_id, actor="rbac-test", cluster=cluster, hosts=None, store=store, on_event=on_event
    )


def _as_rbac(call: RecordedCall) -> ApiCall | None:
    """The recorder's call as RBAC attributes; None for non-resource URLs (/version: public)."""
    if not call.resource:
        return None
    return ApiCall(
        verb=call.verb,
        group=call.group,
        resource=call.resource,
        subresource=call.subresource.split("/", 1)[0],
        namespaced=bool(call.namespace),
    )


def test_the_recorder_and_the_rbac_derivation_agree(loop_calls: list[ClientCall]) -> None:
    # Two independent derivations of (verb, group, resource, subresource) from the same requests.
    assert loop_calls
    for noted in loop_calls:
        if noted.call.verb == "watch":  # the recorder sees ?watch, the path alone does not
            continue
        assert call_from_http(noted.call.method, noted.call.path) == _as_rbac(noted.call), noted.call


def test_every_call_is_granted_and_every_grant_is_used(
    loop_calls: list[ClientCall], kube_client_calls: ClientCallLog, kube_api_calls: ApiCallCollector
) -> None:
    # The User-Agent log saw every request the suite's recorder saw (no harness escaped it).
    assert sorted(map(repr, kube_api_calls.calls)) == sorted(repr(c.call) for c in kube_client_calls.calls)
    # pitcrew's calls: those made with the client pitcrew's own loop used (bot/cluster.py's); requests a
    # test sends itself with raw HTTP to check the emulator are not pitcrew's.
    pitcrew_agents = {c.user_agent for c in loop_calls}
    assert len(pitcrew_agents) == 1, pitcrew_agents
    recorded = [c.call for c in kube_client_calls.calls if c.user_agent in pitcrew_agents]
    # Lease calls are made only with ha.enabled, and granted only by deploy/components/leader-election
    # (test below): the base grants exactly the rest.
    calls = {c for c in map(_as_rbac, recorded) if c is not None and c.group != "coordination.k8s.io"}
    objects = render()
    bound = bound_rules(objects, "pitcrew", "pitcrew")
    monitored = sorted({o["metadata"]["namespace"] for o in objects if o["kind"] == "Role"})
    missing = ungranted(calls, bound, monitored)
    assert not missing, "calls deploy/ does not grant:\n" + "\n".join(c.spelled() for c in missing)
    unused = unused_grants(calls, bound)
    assert not unused, "grants no call uses:\n" + "\n".join(unused)
    # On Secrets, `list` and nothing else, whatever the calls (no get, no watch, no subresource); the
    # emulator refuses any Secrets request that is not a metadata-only list, so the calls above that
    # succeeded never carried Secret data.
    for b in bound:
        for rule in b.rules:
            if any(r.split("/")[0] == "secrets" for r in rule.get("resources", [])):
                assert rule.get("resources") == ["secrets"] and rule.get("verbs") == ["list"], rule
    assert any(c.resource == "secrets" for c in calls), "diagnosis lists Secret names"


def render_with_component(tmp_path: Path, component: str) -> list[dict[str, Any]]:
    """deploy/ with one of its components on, as README's HA steps turn components/ha on."""
    rel = os.path.relpath(DEPLOY, tmp_path)  # kustomize wants relative paths
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{rel}]\ncomponents: [{rel}/components/{component}]\n"
    )
    return render(tmp_path)


def _lease_rule_grants(rule: dict[str, Any], call: RecordedCall) -> bool:
    names = rule.get("resourceNames") or []
    return (
        call.verb in rule.get("verbs", [])
        and "coordination.k8s.io" in rule.get("apiGroups", [])
        and "leases" in rule.get("resources", [])
        and (not names or call.name in names)
    )


def test_leader_election_rbac_is_exact(
    loop_calls: list[ClientCall], kube_client_calls: ClientCallLog, tmp_path: Path
) -> None:
    """Every Lease call pitcrew made is granted in pitcrew's own namespace only, get/update on its
    Lease's name only; create (which RBAC cannot restrict by name) namespace-wide there; nothing else."""
    pitcrew_agents = {c.user_agent for c in loop_calls}
    lease_calls = [
        c.call
        for c in kube_client_calls.calls
        if c.user_agent in pitcrew_agents and c.call.group == "coordination.k8s.io"
    ]
    assert {c.verb for c in lease_calls} == {"get", "create", "update"}
    objects = render_with_component(tmp_path, "ha")  # the shipped HA deployment (includes leader-election)
    base = render()
    added = [
        o
        for o in objects
        if o not in base and o["kind"] in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
    ]
    assert sorted((o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in added) == [
        ("Role", LEASE_NAMESPACE, "pitcrew-leader-election"),
        ("RoleBinding", LEASE_NAMESPACE, "pitcrew-leader-election"),
    ]
    bound = [
        b
        for b in bound_rules(objects, "pitcrew", "pitcrew")
        if b not in bound_rules(base, "pitcrew", "pitcrew")
    ]
    assert [b.namespace for b in bound] == [LEASE_NAMESPACE]  # a Role in pitcrew's namespace, no ClusterRole
    rules = [dict(r) for r in bound[0].rules]
    for call in lease_calls:
        assert call.namespace == LEASE_NAMESPACE, call
        assert any(_lease_rule_grants(r, call) for r in rules), f"not granted: {call}"
    # Every grant is used: each verb, and each name a rule is limited to.
    for rule in rules:
        for verb in rule["verbs"]:
            names = rule.get("resourceNames") or [""]
            for name in names:
                assert any(c.verb == verb and (not name or c.name == name) for c in lease_calls), (verb, name)
    restricted = [r for r in rules if r.get("resourceNames")]
    assert [(sorted(r["verbs"]), r["resourceNames"]) for r in restricted] == [
        (["get", "update"], [LEASE_NAME])
    ]
    unrestricted = [r for r in rules if not r.get("resourceNames")]
    assert [r["verbs"] for r in unrestricted] == [["create"]]
