"""The seed incident remediated end to end against the kmock Kubernetes emulator, through the real
`kubernetes` client (bot.cluster), with validation against local Prometheus/Loki/Grafana stand-ins.

Where kmock is simpler than a real API server (JSON Patch `test` failures, `dryRun=All`,
resourceVersion bumps and conflicts), `tests/support/kube_writes.py` makes it answer like the real
one; each of those behaviours is pinned in tests/test_remediate_kube_writes.py. The test itself plays
the StatefulSet controller and the kubelet (`Kubelet`): it re-creates deleted pods, Ready or not.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import Config, parse_config
from bot.metrics import MetricsRegistry
from bot.model import (
    EditConfigMapStep,
    Finding,
    JsonPatchOp,
    ObjectRef,
    PatchStep,
    Plan,
    RestartPodStep,
    Severity,
    StepEvent,
    WaitReadyStep,
    WorkState,
)
from bot.remediation import DryRunFailed, ExecutionResult, dry_run, execute, execution_counter, rollback
from bot.store import Store
from tests.support.kube import KubeHarness
from tests.support.kube_writes import Kubelet, WriteSemantics, live_object
from tests.support.stackstubs import GRAFANA_TOKEN, Stack
from tests.support.store import make_alert, make_payload

pytestmark = pytest.mark.integration

NS = "monitoring"
STS = ObjectRef("StatefulSet", "prometheus", NS)
LOKI_CM = ObjectRef("ConfigMap", "loki-config", NS)
LOKI_KEY = "local-config.yaml"
SECURITY_CONTEXT = {"fsGroup": 65534, "runAsUser": 65534, "runAsGroup": 65534, "runAsNonRoot": True}
FRONTEND_WORKER = "frontend_worker:\n  frontend_address: 127.0.0.1:9095\n  parallelism: 10\n"
COMMENTED = "# frontend_worker:\n#   frontend_address: 127.0.0.1:9095\n#   parallelism: 10\n"

Kube = tuple[KubeHarness, WriteSemantics]


def seed_findings(kube: KubeHarness) -> tuple[Finding, ...]:
    """The seed incident's two findings with the plans the runbook describes, made the way a handler
    makes them: values and resourceVersions as seen at diagnosis."""
    sts = live_object(kube, "StatefulSet", "prometheus", NS)
    cm = live_object(kube, "ConfigMap", "loki-config", NS)
    assert sts is not None and cm is not None
    image = sts["spec"]["template"]["spec"]["containers"][0]["image"]
    old = cm["data"][LOKI_KEY]
    assert FRONTEND_WORKER in old
    prometheus = Finding(
        code="prometheus-storage-permission",
        severity=Severity.CRITICAL,
        summary="Prometheus cannot lock /prometheus: no securityContext",
        objects=(STS,),
        plan=Plan(
            steps=(
                PatchStep(
                    target=STS,
                    ops=(
                        JsonPatchOp("test", "/spec/template/spec/containers/0/image", image),
                        JsonPatchOp("add", "/spec/template/spec/securityContext", SECURITY_CONTEXT),
                    ),
                    description="run as 65534 with fsGroup 65534",
                    resource_version=sts["metadata"]["resourceVersion"],
                ),
                RestartPodStep(ObjectRef("Pod", "prometheus-0", NS), "recreate with the new template"),
                WaitReadyStep(
                    ObjectRef("Pod", "prometheus-0", NS), "wait for Prometheus", timeout_seconds=30
                ),
            )
        ),
    )
    loki = Finding(
        code="loki-frontend-worker-all-in-one",
        severity=Severity.CRITICAL,
        summary="Loki all-in-one with frontend_worker never becomes Ready",
        objects=(LOKI_CM,),
        plan=Plan(
            steps=(
                EditConfigMapStep(
                    target=LOKI_CM,
                    key=LOKI_KEY,
                    old_content=old,
                    new_content=old.replace(FRONTEND_WORKER, COMMENTED),
                    description="comment out frontend_worker",
                    resource_version=cm["metadata"]["resourceVersion"],
                ),
                RestartPodStep(ObjectRef("Pod", "loki-0", NS), "reload the config"),
                WaitReadyStep(ObjectRef("Pod", "loki-0", NS), "wait for Loki", timeout_seconds=30),
            )
        ),
    )
    return (prometheus, loki)


def make_config(tmp_path: Path, stack: Stack | None, **remediation: Any) -> Config:
    validation: dict[str, Any] = {"http_timeout_seconds": 5}
    if stack is not None:
        validation.update(
            prometheus_url=stack.prometheus_url,
            loki_url=stack.loki_url,
            grafana_url=stack.grafana_url,
            grafana_token_env="TEST_GRAFANA_TOKEN",
        )
    return parse_config(
        {
            "remediation": {
                "backup_dir": str(tmp_path / "backups"),
                "wait_ready_timeout_seconds": 30,
                **remediation,
            },
            "validation": validation,
        },
        env={"TEST_GRAFANA_TOKEN": GRAFANA_TOKEN},
    )


class Events:
    def __init__(self) -> None:
        self.items: list[StepEvent] = []

    async def __call__(self, event: StepEvent) -> None:
        self.items.append(event)

    def phases(self, step_index: int) -> list[str]:
        return [e.phase for e in self.items if e.step_index == step_index]


async def execute_as_cli(findings: Any, cluster: Any, store: Store, config: Config) -> ExecutionResult:
    """`pitcrew remediate --yes` without an incident: the executor as the CLI calls it, polling fast."""
    return await execute(
        findings,
        incident_id=None,
        actor="cli",
        cluster=cluster,
        hosts=None,
        store=store,
        config=config,
        on_event=Events(),
        poll_interval_seconds=0.05,
    )


async def new_incident(store: Store) -> int:
    """A stored incident whose diagnosis is done (the state in which an approval can execute it)."""
    result = await store.record_webhook(make_payload('{}:{alertname="PrometheusDown"}', [make_alert("fp1")]))
    await store.save_diagnosis(result.incident_id, (), dry_run_diff=None, error=None)
    return result.incident_id


def spec_of(kube: KubeHarness, kind: str, name: str) -> Any:
    obj = live_object(kube, kind, name, NS)
    assert obj is not None
    return obj.get("spec")


async def test_seed_incident_remediated_end_to_end(
    kube_writes: Kube, stack: Stack, tmp_store: Store, tmp_path: Path
) -> None:
    kube, semantics = kube_writes
    findings = seed_findings(kube)
    sts_before = live_object(kube, "StatefulSet", "prometheus", NS)
    cm_before = live_object(kube, "ConfigMap", "loki-config", NS)
    pods_before = {n: live_object(kube, "Pod", n, NS) for n in ("prometheus-0", "loki-0")}
    assert sts_before and cm_before and all(pods_before.values())
    config = make_config(tmp_path, stack)
    incident_id = await new_incident(tmp_store)
    events = Events()

    async with kube.cluster() as cluster:
        diff = await dry_run(findings, cluster)
        # The dry run went to the server (dryRun=All) and changed nothing.
        assert kube.count(verb="patch", dry_run=True) == 2
        assert live_object(kube, "StatefulSet", "prometheus", NS) == sts_before
        assert live_object(kube, "ConfigMap", "loki-config", NS) == cm_before
        assert "+      securityContext:\n" in diff and "+        runAsUser: 65534\n" in diff
        assert "-    frontend_worker:\n" in diff and "+    # frontend_worker:\n" in diff
        assert "# 2. restart-pod monitoring/Pod/prometheus-0" in diff

        kubelet = Kubelet(kube, semantics, ready=True)
        kubelet.watch(NS, "prometheus-0")
        kubelet.watch(NS, "loki-0")
        async with kubelet:
            result = await execute(
                findings,
                incident_id=incident_id,
                actor="U123 (alice)",
                cluster=cluster,
                hosts=None,
                store=tmp_store,
                config=config,
                on_event=events,
                poll_interval_seconds=0.05,
            )

    assert result.outcome == "succeeded", result.detail
    assert [c for c in result.checks if c.status == "fail"] == []
    assert {c.name for c in result.checks} >= {"pods-ready", "endpoints", "http-health", "prometheus-up"}

    # The StatefulSet got exactly the securityContext; nothing else in its spec changed.
    sts_after = live_object(kube, "StatefulSet", "prometheus", NS)
    assert sts_after is not None
    expected_spec = json.loads(json.dumps(sts_before["spec"]))
    expected_spec["template"]["spec"]["securityContext"] = SECURITY_CONTEXT
    assert sts_after["spec"] == expected_spec
    # The ConfigMap lost frontend_worker; every other byte of the file and every other key is as it was.
    cm_after = live_object(kube, "ConfigMap", "loki-config", NS)
    assert cm_after is not None
    assert cm_after["data"][LOKI_KEY] == cm_before["data"][LOKI_KEY].replace(FRONTEND_WORKER, COMMENTED)
    assert {k: v for k, v in cm_after["data"].items() if k != LOKI_KEY} == {
        k: v for k, v in cm_before["data"].items() if k != LOKI_KEY
    }
    assert "\nfrontend_worker:" not in cm_after["data"][LOKI_KEY]
    # Pods were restarted: deleted once each and replaced (new uid), now Ready.
    assert kube.count(verb="delete", resource="pods") == 2
    for name, before in pods_before.items():
        after = live_object(kube, "Pod", name, NS)
        assert after is not None and before is not None
        assert after["metadata"]["uid"] != before["metadata"]["uid"]

    # Backups: committed in the store before each change, and written as YAML files.
    assert result.execution_id is not None
    backups = await tmp_store.list_backups(result.execution_id)
    assert [b.target for b in backups] == [
        str(STS),
        "monitoring/Pod/prometheus-0",
        str(LOKI_CM),
        "monitoring/Pod/loki-0",
    ]
    assert json.loads(backups[0].content) == sts_before
    files = sorted((tmp_path / "backups").rglob("*.yaml"))
    assert len(files) == 4
    assert yaml.safe_load(files[0].read_text())["spec"] == sts_before["spec"]

    # Events: every step started and done, backup ids reported, wait-ready progress with elapsed time.
    for index in range(6):
        assert events.phases(index)[0] == "started" and events.phases(index)[-1] == "done"
    done_patch = next(e for e in events.items if e.step_index == 0 and e.phase == "done")
    assert done_patch.backup_id == backups[0].id
    waits = [e for e in events.items if e.action == "wait-ready" and e.phase == "done"]
    assert all(e.elapsed_seconds is not None for e in waits)
    assert events.items[-1].action == "execution" and events.items[-1].phase == "done"

    # Audit: every step with its actor; the store knows the outcome.
    audit = await tmp_store.list_audit(incident_id=incident_id)
    assert {a.actor for a in audit} == {"U123 (alice)"}
    actions = [a.action for a in audit]
    for step in range(1, 7):
        assert any(a.startswith(f"step {step} ") and a.endswith(" done") for a in actions), actions
    execution = await tmp_store.get_execution(result.execution_id)
    assert execution is not None and execution.status == "succeeded"
    incident = await tmp_store.get_incident(incident_id)
    assert incident is not None and incident.work_state == WorkState.SUCCEEDED


async def test_pod_never_ready_times_out_fails_validation_and_rolls_back(
    kube_writes: Kube, stack: Stack, tmp_store: Store, tmp_path: Path
) -> None:
    kube, semantics = kube_writes
    findings = seed_findings(kube)
    sts_before = live_object(kube, "StatefulSet", "prometheus", NS)
    cm_before = live_object(kube, "ConfigMap", "loki-config", NS)
    assert sts_before is not None
    config = make_config(tmp_path, stack, rollback_on_failure=True, wait_ready_timeout_seconds=0.5)
    incident_id = await new_incident(tmp_store)
    events = Events()
    kubelet = Kubelet(kube, semantics, ready=False)
    kubelet.watch(NS, "prometheus-0")
    async with kube.cluster() as cluster, kubelet:
        result = await execute(
            findings,
            incident_id=incident_id,
            actor="cli",
            cluster=cluster,
            hosts=None,
            store=tmp_store,
            config=config,
            on_event=events,
            poll_interval_seconds=0.05,
        )
        # The rollback restarts the pod so it runs the restored template; wait for the kubelet.
        for _ in range(200):
            if len(kubelet.recreated) >= 2:
                break
            await asyncio.sleep(0.02)

    assert result.outcome == "rolled-back"
    assert "not Ready after 0.5s" in result.detail and "validation failed" in result.detail
    assert any(c.name == "pods-ready" and c.status == "fail" for c in result.checks)
    # Rolled back to exactly the backed-up spec; the ConfigMap step never ran.
    assert spec_of(kube, "StatefulSet", "prometheus") == sts_before["spec"]
    assert live_object(kube, "ConfigMap", "loki-config", NS) == cm_before
    assert events.phases(2)[0] == "started" and events.phases(2)[-1] == "failed"
    assert [e.phase for e in events.items if e.action == "restore"] == ["rolled-back"]
    assert any(e.action == "restart-pod" and e.phase == "rolled-back" for e in events.items)
    assert kubelet.recreated == ["monitoring/prometheus-0", "monitoring/prometheus-0"]
    execution = await tmp_store.get_execution(result.execution_id or 0)
    assert execution is not None and execution.status == "rolled-back"
    incident = await tmp_store.get_incident(incident_id)
    assert incident is not None and incident.work_state == WorkState.ROLLED_BACK


async def test_failure_without_rollback_config_leaves_change_and_offers_rollback(
    kube_writes: Kube, tmp_store: Store, tmp_path: Path
) -> None:
    kube, semantics = kube_writes
    findings = seed_findings(kube)[:1]
    sts_before = live_object(kube, "StatefulSet", "prometheus", NS)
    assert sts_before is not None
    config = make_config(tmp_path, None, wait_ready_timeout_seconds=0.3)
    incident_id = await new_incident(tmp_store)
    kubelet = Kubelet(kube, semantics, ready=False)
    kubelet.watch(NS, "prometheus-0")
    async with kube.cluster() as cluster, kubelet:
        result = await execute(
            findings,
            incident_id=incident_id,
            actor="cli",
            cluster=cluster,
            hosts=None,
            store=tmp_store,
            config=config,
            on_event=Events(),
            poll_interval_seconds=0.05,
        )
        assert result.outcome == "failed"
        assert f"pitcrew rollback {incident_id}" in result.detail
        assert (
            spec_of(kube, "StatefulSet", "prometheus")["template"]["spec"]["securityContext"]
            == SECURITY_CONTEXT
        )

        # Later, someone clicks rollback: the execution's backups are restored, newest first.
        events = Events()
        undone = await rollback(
            result.execution_id or 0,
            actor="U999",
            cluster=cluster,
            hosts=None,
            store=tmp_store,
            on_event=events,
        )
    assert undone.outcome == "rolled-back", undone.detail
    assert spec_of(kube, "StatefulSet", "prometheus") == sts_before["spec"]
    async with kube.cluster() as cluster:
        again = await rollback(
            result.execution_id or 0,
            actor="U999",
            cluster=cluster,
            hosts=None,
            store=tmp_store,
            on_event=events,
        )
    assert again.outcome == "refused" and "already rolled back" in again.detail
    original = await tmp_store.get_execution(result.execution_id or 0)
    assert original is not None and original.status == "rolled-back"
    incident = await tmp_store.get_incident(incident_id)
    assert incident is not None and incident.work_state == WorkState.ROLLED_BACK
    assert any(
        a.actor == "U999" and "rollback" in a.action
        for a in await tmp_store.list_audit(incident_id=incident_id)
    )


async def test_rollback_of_one_backup_restores_only_that_object(
    kube_writes: Kube, stack: Stack, tmp_store: Store, tmp_path: Path
) -> None:
    kube, semantics = kube_writes
    findings = seed_findings(kube)
    cm_before = live_object(kube, "ConfigMap", "loki-config", NS)
    kubelet = Kubelet(kube, semantics, ready=True)
    kubelet.watch(NS, "prometheus-0")
    kubelet.watch(NS, "loki-0")
    async with kube.cluster() as cluster, kubelet:
        result = await execute_as_cli(findings, cluster, tmp_store, make_config(tmp_path, stack))
        assert result.outcome == "succeeded", result.detail
        cm_backup = next(
            b for b in await tmp_store.list_backups(result.execution_id or 0) if b.target == str(LOKI_CM)
        )
        undone = await rollback(
            cm_backup.id, actor="cli", cluster=cluster, hosts=None, store=tmp_store, on_event=Events()
        )
    assert undone.outcome == "rolled-back"
    cm_after = live_object(kube, "ConfigMap", "loki-config", NS)
    assert cm_after is not None and cm_before is not None and cm_after["data"] == cm_before["data"]
    # The StatefulSet keeps its fix: only the named backup was restored.
    assert (
        spec_of(kube, "StatefulSet", "prometheus")["template"]["spec"]["securityContext"] == SECURITY_CONTEXT
    )


async def test_change_between_diagnosis_and_execution_aborts_and_changes_nothing(
    kube_writes: Kube, tmp_store: Store, tmp_path: Path
) -> None:
    kube, _ = kube_writes
    findings = seed_findings(kube)
    async with kube.cluster() as cluster:
        # Someone edits the StatefulSet after the diagnosis (and its dry run) but before approval.
        await cluster.json_patch(
            STS, [{"op": "add", "path": "/metadata/annotations", "value": {"edited": "by-hand"}}]
        )
        edited = live_object(kube, "StatefulSet", "prometheus", NS)
        cm_before = live_object(kube, "ConfigMap", "loki-config", NS)
        pod_before = live_object(kube, "Pod", "prometheus-0", NS)
        kube.reset_calls()
        with pytest.raises(DryRunFailed, match="object changed since diagnosis"):
            await dry_run(findings, cluster)
        events = Events()
        result = await execute(
            findings,
            incident_id=None,
            actor="cli",
            cluster=cluster,
            hosts=None,
            store=tmp_store,
            config=make_config(tmp_path, None),
            on_event=events,
        )
    assert result.outcome == "failed"
    assert "object changed since diagnosis" in result.detail and "resourceVersion" in result.detail
    assert live_object(kube, "StatefulSet", "prometheus", NS) == edited
    assert live_object(kube, "ConfigMap", "loki-config", NS) == cm_before
    assert live_object(kube, "Pod", "prometheus-0", NS) == pod_before
    assert kube.count(verb="patch") == 0 and kube.count(verb="delete") == 0
    assert result.backups == ()  # refused before any backup: nothing was going to change
    assert events.phases(0) == ["started", "failed"]


async def test_edit_landing_between_read_and_patch_is_refused_by_the_server(
    kube_writes: Kube, tmp_store: Store, tmp_path: Path
) -> None:
    """The race only the API server can catch: the executor has read and backed up the object, then
    someone writes it before the patch arrives. The patch's `test` on resourceVersion fails (422)."""
    kube, semantics = kube_writes
    findings = seed_findings(kube)

    def concurrent_edit(request: Any) -> None:
        obj = live_object(kube, "StatefulSet", "prometheus", NS)
        assert obj is not None
        obj["spec"]["replicas"] = 2
        obj["metadata"]["resourceVersion"] = semantics.next_rv()
        kube.seed([obj])

    semantics.before_write = concurrent_edit
    async with kube.cluster() as cluster:
        result = await execute(
            findings,
            incident_id=None,
            actor="cli",
            cluster=cluster,
            hosts=None,
            store=tmp_store,
            config=make_config(tmp_path, None, rollback_on_failure=True),
            on_event=Events(),
        )
    assert result.outcome == "failed"
    assert "object changed since diagnosis" in result.detail
    sts = live_object(kube, "StatefulSet", "prometheus", NS)
    assert sts is not None and sts["spec"]["replicas"] == 2
    assert "securityContext" not in sts["spec"]["template"]["spec"]  # not clobbered
    assert kube.count(verb="delete") == 0


async def test_configmap_key_edited_since_diagnosis_is_refused(
    kube_writes: Kube, tmp_store: Store, tmp_path: Path
) -> None:
    kube, _ = kube_writes
    loki_only = (seed_findings(kube)[1],)
    plan = loki_only[0].plan
    assert plan is not None
    step = plan.steps[0]
    assert isinstance(step, EditConfigMapStep)
    unpinned = Finding(
        code=loki_only[0].code,
        severity=loki_only[0].severity,
        summary=loki_only[0].summary,
        objects=loki_only[0].objects,
        plan=Plan(
            steps=(EditConfigMapStep(step.target, step.key, step.old_content, step.new_content, "edit"),)
        ),
    )
    async with kube.cluster() as cluster:
        await cluster.json_patch(
            LOKI_CM, [{"op": "replace", "path": "/data/local-config.yaml", "value": "auth_enabled: true\n"}]
        )
        result = await execute(
            (unpinned,),
            incident_id=None,
            actor="cli",
            cluster=cluster,
            hosts=None,
            store=tmp_store,
            config=make_config(tmp_path, None),
            on_event=Events(),
        )
    assert result.outcome == "failed"
    assert "key 'local-config.yaml' was edited" in result.detail
    cm = live_object(kube, "ConfigMap", "loki-config", NS)
    assert cm is not None and cm["data"][LOKI_KEY] == "auth_enabled: true\n"


async def test_double_execution_on_one_incident_runs_exactly_once(
    kube_writes: Kube, tmp_store: Store, tmp_path: Path
) -> None:
    kube, _ = kube_writes
    patch_only = seed_findings(kube)[0]
    assert patch_only.plan is not None
    finding = Finding(
        code=patch_only.code,
        severity=patch_only.severity,
        summary=patch_only.summary,
        objects=patch_only.objects,
        plan=Plan(steps=patch_only.plan.steps[:1], validation=("pvcs-bound",)),
    )
    incident_id = await new_incident(tmp_store)
    config = make_config(tmp_path, None)
    metrics = MetricsRegistry()
    async with kube.cluster() as cluster:
        results = await asyncio.gather(
            *(
                execute(
                    (finding,),
                    incident_id=incident_id,
                    actor=f"U{n}",
                    cluster=cluster,
                    hosts=None,
                    store=tmp_store,
                    config=config,
                    on_event=Events(),
                    metrics=metrics,
                )
                for n in range(5)
            )
        )
    outcomes = sorted(r.outcome for r in results)
    assert outcomes == ["refused"] * 4 + ["succeeded"]
    refused = [r for r in results if r.outcome == "refused"]
    assert all(f"incident {incident_id} already has execution" in r.detail for r in refused)
    assert kube.count(verb="patch", resource="statefulsets", dry_run=False) == 1
    assert len(await tmp_store.list_executions(incident_id)) == 1
    counter = execution_counter(metrics)
    assert counter.value(namespace="monitoring", outcome="succeeded") == 1
    assert counter.value(namespace="monitoring", outcome="refused") == 4


async def test_live_diagnosis_plans_are_executed_end_to_end(
    kube_writes: Kube, stack: Stack, tmp_store: Store, tmp_path: Path
) -> None:
    """The plans come from the real handlers (bot.diagnose on the live emulator), not from the test."""
    from bot.diagnose import collect_and_diagnose
    from bot.evidence import Scope

    kube, semantics = kube_writes
    sts_before = live_object(kube, "StatefulSet", "prometheus", NS)
    cm_before = live_object(kube, "ConfigMap", "loki-config", NS)
    assert sts_before is not None and cm_before is not None
    kubelet = Kubelet(kube, semantics, ready=True)
    kubelet.watch(NS, "prometheus-0")
    kubelet.watch(NS, "loki-0")
    async with kube.cluster() as cluster:
        _, diagnosis = await collect_and_diagnose(cluster, Scope(namespaces=(NS,)))
        findings = [f for f in diagnosis.findings if f.has_automatic_plan]
        assert {f.code for f in findings} == {
            "volume-permission-denied",
            "loki-frontend-worker-all-in-one",
        }, [f.code for f in diagnosis.findings]
        diff = await dry_run(findings, cluster)
        assert "securityContext" in diff and "frontend_worker" in diff
        async with kubelet:
            result = await execute_as_cli(findings, cluster, tmp_store, make_config(tmp_path, stack))
    assert result.outcome == "succeeded", result.detail
    assert {c.name for c in result.checks} == {"pods-ready", "restarts", "endpoints", "loki-query"}
    sts_after = live_object(kube, "StatefulSet", "prometheus", NS)
    assert sts_after is not None
    assert sts_after["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 65534
    cm_after = live_object(kube, "ConfigMap", "loki-config", NS)
    assert cm_after is not None
    assert "\nfrontend_worker:" not in cm_after["data"][LOKI_KEY]
    # The handler's edit keeps every other byte of the file, and the other keys, as they were.
    assert cm_after["data"][LOKI_KEY] == cm_before["data"][LOKI_KEY].replace(FRONTEND_WORKER, COMMENTED)
    assert {k: v for k, v in cm_after["data"].items() if k != LOKI_KEY} == {
        k: v for k, v in cm_before["data"].items() if k != LOKI_KEY
    }
    assert set(kubelet.recreated) == {"monitoring/prometheus-0", "monitoring/loki-0"}


async def test_rejection_landing_after_the_approval_wins(
    kube_writes: Kube, tmp_store: Store, tmp_path: Path
) -> None:
    """Approve read the incident as diagnosed, then someone rejected it before the executor started:
    the executor must not run a rejected plan."""
    kube, _ = kube_writes
    findings = seed_findings(kube)
    incident_id = await new_incident(tmp_store)
    assert await tmp_store.set_work_state(incident_id, WorkState.REJECTED, expected=[WorkState.DIAGNOSED])
    before = spec_of(kube, "StatefulSet", "prometheus")
    async with kube.cluster() as cluster:
        result = await execute(
            findings,
            incident_id=incident_id,
            actor="U1",
            cluster=cluster,
            hosts=None,
            store=tmp_store,
            config=make_config(tmp_path, None),
            on_event=Events(),
        )
    assert result.outcome == "refused"
    assert "is rejected" in result.detail
    assert spec_of(kube, "StatefulSet", "prometheus") == before
    assert kube.count(verb="patch", dry_run=False) == 0
    incident = await tmp_store.get_incident(incident_id)
    assert incident is not None and incident.work_state is WorkState.REJECTED
