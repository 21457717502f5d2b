"""DESIGN.md "Safety rules of execution", the ones not already pinned by the end-to-end tests:

1. nothing changes without approval: a declined step stops the plan before any change of its own;
2. the backup is committed to the store before the change reaches the API server (a rollback's too);
6. one remediation at a time per object, across incidents (the store's target locks).

(3 dry run: test_remediate_e2e / test_remediate_cli; 4 concurrent change: test_remediate_e2e;
5 validation and rollback: test_remediate_e2e, and here the reverse order of the undo;
6 one execution per incident: test_remediate_e2e; 7 audit and events: test_remediate_e2e.)
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import parse_config
from bot.model import Plan, Step, StepEvent
from bot.remediation import execute
from bot.store import Store
from tests.support.kube import KubeHarness
from tests.support.kube_writes import Kubelet, WriteSemantics, live_object
from tests.test_remediate_e2e import STS, seed_findings

pytestmark = pytest.mark.integration
Kube = tuple[KubeHarness, WriteSemantics]


async def ignore(event: StepEvent) -> None:
    return None


async def test_declined_step_stops_the_plan(kube_writes: Kube, tmp_store: Store, tmp_path: Path) -> None:
    kube, _ = kube_writes
    findings = seed_findings(kube)
    asked: list[int] = []

    async def confirm(index: int, step: Step) -> bool:
        asked.append(index)
        return index == 0  # approve the patch, decline the restart

    events: list[StepEvent] = []

    async def record(event: StepEvent) -> None:
        events.append(event)

    async with kube.cluster() as cluster:
        result = await execute(
            findings,
            incident_id=None,
            actor="cli",
            cluster=cluster,
            hosts=None,
            store=tmp_store,
            config=parse_config({"remediation": {"backup_dir": str(tmp_path / "b")}}),
            on_event=record,
            confirm=confirm,
        )
    assert asked == [0, 1]
    assert result.outcome == "failed" and "stopped before step 2: not confirmed" in result.detail
    assert [e.phase for e in events if e.step_index == 1] == ["skipped"]
    assert kube.count(verb="delete") == 0  # the declined restart never happened
    assert kube.count(verb="patch", resource="configmaps", dry_run=False) == 0  # nor anything after it


async def test_backup_is_committed_before_the_change_reaches_the_server(
    kube_writes: Kube, tmp_store_path: Path, tmp_path: Path
) -> None:
    kube, semantics = kube_writes
    plan = seed_findings(kube)[0].plan
    assert plan is not None
    seen_at_write: list[Any] = []

    def look_in_the_store(request: Any) -> None:
        # Another connection to the database file, as a separate process would see it.
        with sqlite3.connect(tmp_store_path) as conn:
            seen_at_write.extend(conn.execute("SELECT target, kind FROM backups").fetchall())
        seen_at_write.append(sorted(p.name for p in (tmp_path / "b").rglob("*.yaml")))

    semantics.before_write = look_in_the_store
    store = await Store.open(str(tmp_store_path))
    try:
        async with kube.cluster() as cluster:
            result = await execute(
                Plan(steps=plan.steps[:1], validation=("pvcs-bound",)),
                incident_id=None,
                actor="cli",
                cluster=cluster,
                hosts=None,
                store=store,
                config=parse_config({"remediation": {"backup_dir": str(tmp_path / "b")}}),
                on_event=ignore,
            )
    finally:
        await store.close()
    assert result.outcome == "succeeded", result.detail
    assert seen_at_write == [(str(STS), "object"), ["01-monitoring_StatefulSet_prometheus.yaml"]]


async def test_one_remediation_at_a_time_per_object(
    kube_writes: Kube, tmp_store: Store, tmp_path: Path
) -> None:
    """Two plans touching the same StatefulSet, from two different incidents: while the first runs
    (waiting for its pod), the second is refused by the store's target lock; afterwards it may run."""
    kube, semantics = kube_writes
    findings = seed_findings(kube)
    first_plan = findings[0].plan
    assert first_plan is not None
    config = parse_config(
        {"remediation": {"backup_dir": str(tmp_path / "b"), "wait_ready_timeout_seconds": 10}}
    )
    kubelet = Kubelet(kube, semantics, ready=False)
    kubelet.watch("monitoring", "prometheus-0")
    async with kube.cluster() as cluster, kubelet:
        first = asyncio.create_task(
            execute(
                Plan(steps=first_plan.steps, validation=("pvcs-bound",)),
                incident_id=None,
                actor="U1",
                cluster=cluster,
                hosts=None,
                store=tmp_store,
                config=config,
                on_event=ignore,
                poll_interval_seconds=0.05,
            )
        )
        for _ in range(200):  # until the first execution is waiting for its pod
            if kubelet.recreated:
                break
            await asyncio.sleep(0.02)
        assert kubelet.recreated
        second = await execute(
            Plan(steps=first_plan.steps[:1], validation=("pvcs-bound",)),
            incident_id=None,
            actor="U2",
            cluster=cluster,
            hosts=None,
            store=tmp_store,
            config=config,
            on_event=ignore,
        )
        assert second.outcome == "refused"
        assert second.detail == f"{STS} is locked by running execution {second.execution_id}"
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
    # Cancelled half-way: the execution is recorded as failed and its locks are free again.
    executions = await tmp_store.list_executions()
    assert [(e.actor, e.status) for e in executions] == [("U1", "failed")]
    assert "interrupted" in executions[0].detail
    sts = live_object(kube, "StatefulSet", "prometheus", "monitoring")
    assert sts is not None and "securityContext" in sts["spec"]["template"]["spec"]


async def test_api_refusal_fails_the_step_cleanly_and_backup_files_are_private(
    kube_writes: Kube, tmp_store: Store, tmp_path: Path
) -> None:
    """A 403 from the API server (RBAC without patch) is a failed step with the reason, not a crash;
    the backup taken before it stays, readable by its owner only."""
    kube, _ = kube_writes
    kube.forbid("statefulsets", verb="patch")
    async with kube.cluster() as cluster:
        result = await execute(
            seed_findings(kube),
            incident_id=None,
            actor="cli",
            cluster=cluster,
            hosts=None,
            store=tmp_store,
            config=parse_config(
                {"remediation": {"backup_dir": str(tmp_path / "b"), "rollback_on_failure": True}}
            ),
            on_event=ignore,
        )
    assert result.outcome == "failed"
    assert "step 1 (patch monitoring/StatefulSet/prometheus) failed: patch of" in result.detail
    assert "forbidden" in result.detail
    assert kube.count(verb="delete") == 0
    (backup_file,) = list((tmp_path / "b").rglob("*.yaml"))
    assert backup_file.stat().st_mode & 0o777 == 0o600
    assert backup_file.parent.stat().st_mode & 0o777 == 0o700


async def test_dry_run_reports_unreadable_or_missing_objects_as_dry_run_failures(kube_writes: Kube) -> None:
    from bot.remediation import DryRunFailed, dry_run

    kube, _ = kube_writes
    findings = seed_findings(kube)
    kube.forbid("configmaps", verb="get")
    async with kube.cluster() as cluster:
        with pytest.raises(DryRunFailed, match="cannot read monitoring/ConfigMap/loki-config: forbidden"):
            await dry_run(findings, cluster)
    kube.emulator.objects["apps/v1/statefulsets", "monitoring", "prometheus"].delete()
    async with kube.cluster() as cluster:
        with pytest.raises(DryRunFailed, match="monitoring/StatefulSet/prometheus not found"):
            await dry_run(findings, cluster)


async def test_rollback_on_failure_undoes_completed_steps_in_reverse_order(
    kube_writes: Kube, tmp_store: Store, tmp_path: Path
) -> None:
    """Rule 5 with `rollback_on_failure: true`: the StatefulSet patch and the ConfigMap edit are done,
    the wait fails (the pod never becomes Ready); the ConfigMap is restored first, then the
    StatefulSet, each to exactly its backup, and the audit log has every undo with its actor."""
    from tests.test_remediate_e2e import NS

    kube, _ = kube_writes
    prometheus, loki = seed_findings(kube)
    assert prometheus.plan is not None and loki.plan is not None
    sts_before = live_object(kube, "StatefulSet", "prometheus", NS)
    cm_before = live_object(kube, "ConfigMap", "loki-config", NS)
    assert sts_before is not None and cm_before is not None
    plan = Plan(
        steps=(prometheus.plan.steps[0], loki.plan.steps[0], prometheus.plan.steps[2]),
        validation=("pvcs-bound",),
    )
    config = parse_config(
        {
            "remediation": {
                "backup_dir": str(tmp_path / "b"),
                "rollback_on_failure": True,
                "wait_ready_timeout_seconds": 0.2,
            }
        }
    )
    async with kube.cluster() as cluster:
        result = await execute(
            plan,
            incident_id=None,
            actor="U7",
            cluster=cluster,
            hosts=None,
            store=tmp_store,
            config=config,
            on_event=ignore,
            poll_interval_seconds=0.05,
        )
    assert result.outcome == "rolled-back", result.detail
    assert "step 3 (wait-ready monitoring/Pod/prometheus-0) failed" in result.detail
    restores = [(e.step_index, e.phase) for e in result.events if e.action == "restore"]
    assert restores == [(1, "rolled-back"), (0, "rolled-back")]
    sts_after = live_object(kube, "StatefulSet", "prometheus", NS)
    cm_after = live_object(kube, "ConfigMap", "loki-config", NS)
    assert sts_after is not None and cm_after is not None
    assert sts_after["spec"] == sts_before["spec"] and cm_after["data"] == cm_before["data"]
    audit = await tmp_store.list_audit()
    undone = [a.action for a in audit if a.actor == "U7" and a.action.endswith("restore rolled-back")]
    assert sorted(undone) == ["step 1 restore rolled-back", "step 2 restore rolled-back"]


async def test_rollback_backs_up_what_it_replaces_and_can_itself_be_undone(
    kube_writes: Kube, tmp_store: Store, tmp_path: Path
) -> None:
    """Rule 2 holds for a rollback too: it is a change. A later hand edit (replicas) that the restore
    overwrites is saved first, in the store and as YAML; rolling back the rollback brings it back."""
    from bot.remediation import rollback

    kube, _ = kube_writes
    plan = seed_findings(kube)[0].plan
    assert plan is not None
    config = parse_config({"remediation": {"backup_dir": str(tmp_path / "b")}})
    sts_before = live_object(kube, "StatefulSet", "prometheus", "monitoring")
    assert sts_before is not None
    async with kube.cluster() as cluster:
        done = await execute(
            Plan(steps=plan.steps[:1], validation=("pvcs-bound",)),
            incident_id=None,
            actor="cli",
            cluster=cluster,
            hosts=None,
            store=tmp_store,
            config=config,
            on_event=ignore,
        )
        assert done.outcome == "succeeded", done.detail
        await cluster.json_patch(STS, [{"op": "replace", "path": "/spec/replicas", "value": 3}])
        edited = live_object(kube, "StatefulSet", "prometheus", "monitoring")
        assert edited is not None

        undone = await rollback(
            done.execution_id or 0,
            actor="U1",
            cluster=cluster,
            hosts=None,
            store=tmp_store,
            on_event=ignore,
            config=config,
        )
        assert undone.outcome == "rolled-back", undone.detail
        restored = live_object(kube, "StatefulSet", "prometheus", "monitoring")
        assert restored is not None and restored["spec"] == sts_before["spec"]
        (saved,) = await tmp_store.list_backups(undone.execution_id or 0)
        assert saved.target == str(STS) and json.loads(saved.content)["spec"] == edited["spec"]
        (undo_file,) = (tmp_path / "b").rglob("undo-*.yaml")
        assert yaml.safe_load(undo_file.read_text())["spec"]["replicas"] == 3
        assert any(saved.id in e.detail for e in undone.events if e.action == "restore")

        again = await rollback(
            undone.execution_id or 0,
            actor="U1",
            cluster=cluster,
            hosts=None,
            store=tmp_store,
            on_event=ignore,
        )
    assert again.outcome == "rolled-back", again.detail
    reapplied = live_object(kube, "StatefulSet", "prometheus", "monitoring")
    assert reapplied is not None and reapplied["spec"] == edited["spec"]


async def test_dry_run_diff_redacts_env_values_and_config_secrets_in_its_context(kube_writes: Kube) -> None:
    # The diff is shown in Slack and printed by the CLI. Its context lines quote the live object: an
    # env value next to the changed field, or a secret line next to the edited one, is not shown.
    from bot.remediation import dry_run
    from tests.test_remediate_e2e import NS

    kube, _ = kube_writes
    sts = live_object(kube, "StatefulSet", "prometheus", NS)
    cm = live_object(kube, "ConfigMap", "loki-config", NS)
    assert sts is not None and cm is not None
    pod_spec = sts["spec"]["template"]["spec"]
    containers = pod_spec.pop("containers")  # last, so the added securityContext follows the env
    containers[-1].pop("env", None)
    containers[-1]["env"] = [{"name": "REMOTE_WRITE_PASSWORD", "value": "hunter2-env-value"}]
    pod_spec["containers"] = containers
    (key,) = [k for k, v in cm["data"].items() if "frontend_worker" in v]
    head, sep, tail = cm["data"][key].partition("\nfrontend_worker:")
    cm["data"][key] = head + "\nauth_token: s3cr3t-config-value" + sep + tail
    kube.seed([sts, cm])
    findings = seed_findings(kube)
    async with kube.cluster() as cluster:
        diff = await dry_run(findings, cluster)
    assert "  - name: REMOTE_WRITE_PASSWORD\n" in diff and "+      securityContext:\n" in diff
    assert "    auth_token: ***\n" in diff
    assert "hunter2-env-value" not in diff and "s3cr3t-config-value" not in diff
