"""The seed incident end to end from its bundle, the renderings, and the `pitcrew diagnose` CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bot.cli import main
from bot.diagnose import diagnose, render_json, render_text
from bot.model import EditConfigMapStep, HostCommandStep, PatchStep
from bot.snapshot import read_bundle, write_bundle

SEED = Path(__file__).resolve().parent.parent / "examples" / "seed-incident"


def test_seed_incident_three_findings_and_endpoints_caused_by_the_other_two() -> None:
    diagnosis = diagnose(read_bundle(SEED))
    codes = [f.code for f in diagnosis.findings]
    assert codes == ["volume-permission-denied", "loki-frontend-worker-all-in-one", "service-no-endpoints"]
    endpoints = diagnosis.findings[2]
    assert set(endpoints.caused_by) == {"volume-permission-denied", "loki-frontend-worker-all-in-one"}
    assert {"monitoring/Service/prometheus", "monitoring/Service/loki"} <= {str(o) for o in endpoints.objects}
    assert diagnosis.handler_errors == () and diagnosis.collection_errors == ()

    prometheus, loki = diagnosis.findings[0], diagnosis.findings[1]
    assert prometheus.plan is not None and loki.plan is not None
    patch = prometheus.plan.steps[0]
    assert isinstance(patch, PatchStep) and str(patch.target) == "monitoring/StatefulSet/prometheus"
    assert patch.resource_version == "481923"
    assert patch.ops[-1].value == {
        "fsGroup": 65534,
        "runAsUser": 65534,
        "runAsGroup": 65534,
        "runAsNonRoot": True,
    }
    chown = prometheus.plan.steps[1]
    assert isinstance(chown, HostCommandStep)
    assert (chown.host, chown.path, chown.uid) == ("masternode", "/srv/monitoring_data/prometheus", 65534)
    edit = loki.plan.steps[0]
    assert isinstance(edit, EditConfigMapStep) and edit.key == "local-config.yaml"
    assert (
        "# frontend_worker:\n#   frontend_address: 127.0.0.1:9095\n#   parallelism: 10\n" in edit.new_content
    )
    assert (
        edit.new_content.replace("# frontend_worker:", "frontend_worker:").replace("#   ", "  ")
        == edit.old_content
    )


def test_text_output_reads_like_the_runbook_analysis() -> None:
    text = render_text(diagnose(read_bundle(SEED)))
    assert "SUMMARY" in text and "3 issue(s) identified (2 critical, 1 warning)" in text
    assert "open /prometheus/lock: permission denied" in text
    assert "error contacting frontend" in text
    assert "kubectl patch statefulset prometheus -n monitoring --type=json" in text
    assert "kubectl delete pod prometheus-0 -n monitoring --wait" in text
    assert "kubectl wait --for=condition=ready pod/loki-0 -n monitoring --timeout=300s" in text
    assert "ssh masternode 'chown -R 65534:65534 /srv/monitoring_data/prometheus'" in text
    assert "+# frontend_worker:" in text
    assert "Caused by: volume-permission-denied, loki-frontend-worker-all-in-one" in text


def test_json_output_shape() -> None:
    doc = json.loads(render_json(diagnose(read_bundle(SEED))))
    first = doc["findings"][0]
    assert set(first) >= {"code", "severity", "summary", "objects", "evidence", "caused_by", "plan"}
    assert first["plan"]["steps"][0]["action"] == "patch"
    assert first["plan"]["steps"][0]["target"] == "monitoring/StatefulSet/prometheus"
    assert doc["findings"][2]["plan"] is None


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagnose", "--snapshot", str(SEED)]) == 1
    assert "ISSUE 1: volume-permission-denied" in capsys.readouterr().out
    assert main(["diagnose", "--snapshot", str(SEED), "-o", "json"]) == 1
    assert len(json.loads(capsys.readouterr().out)["findings"]) == 3

    assert main(["diagnose", "--snapshot", str(tmp_path / "missing")]) == 2
    assert "no such bundle directory" in capsys.readouterr().err
    assert main(["diagnose", "--snapshot", str(SEED), "--save", str(tmp_path / "x")]) == 2
    assert "cannot be combined" in capsys.readouterr().err
    assert main(["diagnose", "--snapshot", str(SEED), "-n", "monitorng"]) == 2
    assert "the bundle holds no objects in namespace monitorng" in capsys.readouterr().err
    assert main(["diagnose", "--snapshot", str(SEED), "-n", "monitoring", "-n", "logging"]) == 1


def test_cli_healthy_bundle_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "ok"
    (bundle / "monitoring").mkdir(parents=True)
    grafana = (SEED / "monitoring" / "pods.yaml").read_text().split("- apiVersion: v1\n  kind: Pod\n")
    (bundle / "monitoring" / "pods.yaml").write_text(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n" + grafana[3]
    )
    assert main(["diagnose", "--snapshot", str(bundle)]) == 0
    assert "No problems found" in capsys.readouterr().out


def test_cli_bad_yaml_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(SEED, tmp_path / "b")
    bad = tmp_path / "b" / "monitoring" / "broken.yaml"
    bad.write_text("kind: Pod\nmetadata: {name: [unclosed\n")
    assert main(["diagnose", "--snapshot", str(tmp_path / "b")]) == 2
    assert str(bad) in capsys.readouterr().err


def test_save_then_read_back_gives_the_same_findings(tmp_path: Path) -> None:
    evidence = read_bundle(SEED, keep_raw=True)
    before = diagnose(evidence)
    write_bundle(evidence, tmp_path / "copy", analysis=render_text(before))
    assert (tmp_path / "copy" / "00-ANALYSIS-AND-RECOMMENDATIONS.txt").read_text().startswith("=" * 78)
    after = diagnose(read_bundle(tmp_path / "copy"))
    assert after.findings == before.findings


def test_json_output_redacts_what_the_plans_quote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The Loki edit quotes the whole config (object-store credentials); the securityContext patch
    # pins the pod spec as seen with a `test` op (a literal password env). Both are printed redacted.
    shutil.copytree(SEED, tmp_path / "b")
    configmaps = tmp_path / "b" / "monitoring" / "configmaps.yaml"
    configmaps.write_text(
        configmaps.read_text().replace(
            "        log_level: info\n",
            "        log_level: info\n      storage_config:\n        aws:\n"
            "          secret_access_key: S3cr3tS3Key\n",
            1,
        )
    )
    statefulsets = tmp_path / "b" / "monitoring" / "statefulsets.yaml"
    statefulsets.write_text(
        statefulsets.read_text().replace(
            "          image: prom/prometheus:v2.48.0\n",
            "          image: prom/prometheus:v2.48.0\n          env:\n"
            "          - name: REMOTE_WRITE_PASSWORD\n            value: hunter2-remote\n",
            1,
        )
    )
    assert main(["diagnose", "--snapshot", str(tmp_path / "b"), "-o", "json"]) == 1
    out = capsys.readouterr().out
    assert "S3cr3tS3Key" not in out and "hunter2-remote" not in out
    steps = {s["action"]: s for f in json.loads(out)["findings"] if f["plan"] for s in f["plan"]["steps"]}
    assert "secret_access_key: ***" in steps["edit-configmap"]["old_content"]
    assert "# frontend_worker:" in steps["edit-configmap"]["new_content"]
    pinned = steps["patch"]["ops"][0]["value"]["containers"][0]["env"]
    assert pinned == [{"name": "REMOTE_WRITE_PASSWORD", "value": "***"}]
    # The plan that executes keeps the exact contents.
    evidence = read_bundle(tmp_path / "b")
    edit = next(
        s for f in diagnose(evidence).findings if f.plan for s in f.plan.steps if s.action == "edit-configmap"
    )
    assert isinstance(edit, EditConfigMapStep) and "S3cr3tS3Key" in edit.old_content
