"""`pitcrew summary`: offline from a bundle, live against the emulated cluster, with the store of a
config file; text and JSON; exit codes 0 healthy / 1 problems / 2 bad input."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from bot.cli import main
from bot.store import Store
from tests.support.kube import KubeHarness
from tests.support.schedule import degraded_namespace, healthy_namespace
from tests.support.store import make_alert, make_payload

SEED = str(Path(__file__).resolve().parent.parent / "examples" / "seed-incident")


def write_bundle(directory: Path, objects: list[dict[str, object]]) -> str:
    (directory / "monitoring").mkdir(parents=True)
    (directory / "monitoring" / "objects.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": objects}), encoding="utf-8"
    )
    return str(directory)


def test_seed_bundle_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "--snapshot", SEED, "-n", "monitoring"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "monitoring: 4 problems"
    assert f"Source: snapshot {SEED}" in lines
    assert "  ! StatefulSet prometheus: 0/1 ready (prometheus-0: CrashLoopBackOff)" in lines
    assert "  (not run: offline snapshot)" in lines
    assert "Incidents and remediations unknown: no store configured" in lines


def test_seed_bundle_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "--snapshot", SEED, "-o", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["glance"] == "monitoring: 4 problems"
    assert data["healthy"] is False
    (ns,) = data["namespace_health"]
    assert (ns["pods_ready"], ns["pods_total"]) == (1, 3)
    assert sorted(ns["services_without_endpoints"]) == ["loki", "prometheus"]


def test_healthy_bundle_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = write_bundle(tmp_path / "bundle", healthy_namespace("monitoring"))
    assert main(["summary", "--snapshot", bundle]) == 0
    assert capsys.readouterr().out.startswith("monitoring: all healthy\n")


def test_bad_input_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "--snapshot", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err

    broken = tmp_path / "broken"
    (broken / "monitoring").mkdir(parents=True)
    (broken / "monitoring" / "pods.yaml").write_text("items: [unclosed\n", encoding="utf-8")
    assert main(["summary", "--snapshot", str(broken)]) == 2
    out = capsys.readouterr().out
    assert out.startswith("monitoring: unknown, the cluster could not be read (cannot read bundle")

    # A namespace the bundle does not hold is not "all healthy".
    assert main(["summary", "--snapshot", SEED, "-n", "monitoring-typo"]) == 2
    out = capsys.readouterr().out
    assert out.startswith("monitoring-typo: unknown, the cluster could not be read (the bundle ")
    assert "holds no objects in namespace monitoring-typo" in out

    config = tmp_path / "bad.yaml"
    config.write_text("schedules:\n  - name: x\n    cron: '0 9 * *'\n", encoding="utf-8")
    assert main(["summary", "--config", str(config), "--snapshot", SEED]) == 2
    err = capsys.readouterr().err
    assert "schedules[0].cron: invalid crontab expression '0 9 * *'" in err


@pytest.mark.integration
async def test_live_cluster_with_the_config_store(
    tmp_path: Path, kube: KubeHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    kube.seed(degraded_namespace("monitoring"))
    db = tmp_path / "pitcrew.db"
    store = await Store.open(str(db))
    created = await store.record_webhook(make_payload("g-cli", [make_alert("c1")]))
    await store.close()
    config = tmp_path / "pitcrew.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "store": {"path": str(db)},
                "cluster": {"kubeconfig": str(kube.kubeconfig), "in_cluster": False},
                "validation": {"http_timeout_seconds": 2},
            }
        ),
        encoding="utf-8",
    )
    # The CLI runs its own event loop; the emulator keeps serving on this one meanwhile.
    code = await asyncio.to_thread(main, ["summary", "--config", str(config), "-o", "json"])
    assert code == 1
    data = json.loads(capsys.readouterr().out)
    assert data["source"] == "cluster" and data["collection_error"] is None
    assert data["problem_count"] >= 5
    assert [i["id"] for i in data["incidents"]["still_open"]] == [created.incident_id]
    assert {c["name"] for c in data["checks"]} >= {"pods-ready", "endpoints", "http-health"}
    assert kube.count(verb="list", resource="pods") == 1  # one collection, shared with validation
