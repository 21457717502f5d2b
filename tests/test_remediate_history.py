"""`pitcrew history` rendering from a real store, and the executor's refusals of bad input."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import pytest

from bot.cli.history import cli_history
from bot.config import parse_config
from bot.history import load_history, render_json, render_text
from bot.model import (
    EditConfigMapStep,
    Finding,
    HostCommandStep,
    JsonPatchOp,
    ObjectRef,
    PatchStep,
    Plan,
    Severity,
    StepEvent,
    plan_to_json,
)
from bot.remediation import execute, rollback
from bot.store import Store
from tests.support.kube import KubeHarness
from tests.support.kube_writes import WriteSemantics
from tests.support.store import make_alert, make_payload


async def ignore(event: StepEvent) -> None:
    return None


async def test_history_lists_incident_findings_decisions_and_execution(tmp_store: Store) -> None:
    findings = seed_findings_offline()
    created = await tmp_store.record_webhook(
        make_payload("g1", [make_alert("fp1", alertname="PrometheusDown")])
    )
    incident_id = created.incident_id
    await tmp_store.save_diagnosis(incident_id, findings, dry_run_diff=None, error=None)
    await tmp_store.record_decision(incident_id, "U1", "alice", "approve", None)
    execution = await tmp_store.start_execution(
        incident_id, "slack:U1", ["monitoring/StatefulSet/prometheus"], "{}"
    )
    await tmp_store.finish_execution(execution.id, "failed", "step 3 (wait-ready) failed")
    cli_run = await tmp_store.start_execution(None, "cli", ["monitoring/ConfigMap/loki-config"], "{}")
    await tmp_store.finish_execution(cli_run.id, "succeeded", "all steps done")

    history = await load_history(tmp_store, limit=10)
    text = render_text(history)
    lines = text.splitlines()
    assert lines[0].startswith(f"#{incident_id} ") and "PrometheusDown [firing, diagnosed]" in lines[0]
    assert (
        "    finding volume-permission-denied (critical): Prometheus cannot write its data — 1 step(s)"
        in lines
    )
    assert any(line.startswith("    approve by alice ") for line in lines)
    assert any(
        line.startswith(f"    execution {execution.id} by slack:U1 ")
        and line.endswith("failed — step 3 (wait-ready) failed")
        for line in lines
    )
    assert lines[-2] == "executions without an incident (CLI, rollbacks):"
    assert lines[-1].startswith(f"    execution {cli_run.id} by cli ")
    data = json.loads(render_json(history))
    assert data["incidents"][0]["decisions"][0]["user"] == "alice"
    assert data["incidents"][0]["findings"][0]["code"] == "volume-permission-denied"
    assert data["other_executions"][0]["status"] == "succeeded"


async def test_history_json_redacts_what_plans_quote(tmp_store: Store) -> None:
    # Plans quote pod specs (test ops) and ConfigMap contents exactly; `history -o json` is output.
    sts = ObjectRef("StatefulSet", "prometheus", "monitoring")
    env = [{"name": "DB_PASSWORD", "value": "hunter2-env-value"}]
    plan = Plan(
        steps=(
            PatchStep(sts, (JsonPatchOp("test", "/spec/template/spec/containers/0/env", env),), "pin env"),
            EditConfigMapStep(
                ObjectRef("ConfigMap", "loki-config", "monitoring"),
                "loki.yaml",
                "password: s3cr3t-config-value\n",
                "password: s3cr3t-config-value\ntarget: all\n",
                "edit",
            ),
        )
    )
    finding = Finding(
        code="volume-permission-denied", severity=Severity.CRITICAL, summary="s", objects=(sts,), plan=plan
    )
    created = await tmp_store.record_webhook(make_payload("g1", [make_alert("fp1")]))
    await tmp_store.save_diagnosis(created.incident_id, (finding,), dry_run_diff=None, error=None)
    await tmp_store.start_execution(
        created.incident_id, "slack:U1", [str(sts)], json.dumps(plan_to_json(plan))
    )
    out = render_json(await load_history(tmp_store, limit=10))
    assert "hunter2-env-value" not in out and "s3cr3t-config-value" not in out
    data = json.loads(out)
    assert data["incidents"][0]["findings"][0]["plan"]["steps"][1]["key"] == "loki.yaml"
    assert (
        data["incidents"][0]["execution"]["plan"]["steps"][0]["ops"][0]["value"][0]["name"] == "DB_PASSWORD"
    )


def seed_findings_offline() -> tuple[Finding, ...]:
    return (
        Finding(
            code="volume-permission-denied",
            severity=Severity.CRITICAL,
            summary="Prometheus cannot write its data",
            objects=(ObjectRef("StatefulSet", "prometheus", "monitoring"),),
            plan=Plan(steps=(PatchStep(ObjectRef("StatefulSet", "prometheus", "monitoring"), (), "x"),)),
        ),
    )


async def _create_store(path: Path) -> None:
    await (await Store.open(str(path))).close()


def test_history_of_an_empty_store_and_bad_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"store": {"path": str(tmp_path / "s.db")}}))
    asyncio.run(_create_store(tmp_path / "s.db"))  # history reads a store; it does not create one
    assert cli_history(argparse.Namespace(config=str(config), limit=5, output="text")) == 0
    assert capsys.readouterr().out == "no incidents or executions recorded\n"
    assert cli_history(argparse.Namespace(config=str(config), limit=0, output="text")) == 2
    assert "--limit must be at least 1" in capsys.readouterr().err
    missing_dir = tmp_path / "c2.yaml"
    missing_dir.write_text(json.dumps({"store": {"path": str(tmp_path / "no" / "such" / "s.db")}}))
    assert cli_history(argparse.Namespace(config=str(missing_dir), limit=5, output="text")) == 2
    assert "no pitcrew store at" in capsys.readouterr().err


@pytest.mark.integration
async def test_executor_refuses_bad_input_clearly(
    kube_writes: tuple[KubeHarness, WriteSemantics], tmp_store: Store, tmp_path: Path
) -> None:
    kube, _ = kube_writes
    config = parse_config({"remediation": {"backup_dir": str(tmp_path / "b")}})
    async with kube.cluster() as cluster:
        with pytest.raises(ValueError, match="nothing to execute"):
            await execute(
                Plan(steps=()),
                incident_id=None,
                actor="cli",
                cluster=cluster,
                hosts=None,
                store=tmp_store,
                config=config,
                on_event=ignore,
            )
        host_step = HostCommandStep(
            ObjectRef("PersistentVolume", "pv"),
            "masternode",
            "chown",
            "/srv/monitoring_data/x",
            "d",
            uid=1,
            gid=1,
        )
        result = await execute(
            Plan(steps=(host_step,)),
            incident_id=None,
            actor="cli",
            cluster=cluster,
            hosts=None,
            store=tmp_store,
            config=config,
            on_event=ignore,
        )
        assert result.outcome == "failed" and "no hosts are configured" in result.detail
        with pytest.raises(LookupError, match="execution 999 does not exist"):
            await rollback(999, actor="cli", cluster=cluster, hosts=None, store=tmp_store, on_event=ignore)
        with pytest.raises(LookupError, match="backup b-999 does not exist"):
            await rollback(
                "b-999", actor="cli", cluster=cluster, hosts=None, store=tmp_store, on_event=ignore
            )
        with pytest.raises(LookupError, match="has no backups"):
            await rollback(
                result.execution_id or 0,
                actor="cli",
                cluster=cluster,
                hosts=None,
                store=tmp_store,
                on_event=ignore,
            )
