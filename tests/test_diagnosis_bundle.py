"""Bundle reading: object files in any layout kubectl produces, logs, host facts, and clear errors."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.evidence import LogKey
from bot.snapshot import BundleError, read_bundle, write_bundle

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p1", "namespace": "ns1"},
    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    "status": {"phase": "Running"},
}


def test_single_object_list_multi_document_and_json(tmp_path: Path) -> None:
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "one.json").write_text(json.dumps(POD))
    (tmp_path / "deep" / "er" / "svc.yml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: s1, namespace: ns1}\nspec: {selector: {app: a}}\n"
        "---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c1, namespace: ns2}\ndata: {k: v}\n"
    )
    (tmp_path / "deep" / "list.yaml").write_text(
        "apiVersion: v1\nkind: PodList\nitems:\n- metadata: {name: p2, namespace: ns2}\n  spec: "
        "{containers: []}\n"
    )
    (tmp_path / "unknown.yaml").write_text(
        "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\n"
    )
    (tmp_path / "notes.txt").write_text("not an object file")
    evidence = read_bundle(tmp_path)
    assert sorted(p.name for p in evidence.pods) == ["p1", "p2"]
    assert [s.meta.name for s in evidence.services] == ["s1"]
    assert evidence.configmap("ns2", "c1") is not None
    assert evidence.namespaces == ("ns1", "ns2")
    assert [p.name for p in read_bundle(tmp_path, namespaces=["ns2"]).pods] == ["p2"]


def test_logs_and_host_facts(tmp_path: Path) -> None:
    logs = tmp_path / "logs" / "ns1" / "p1"
    logs.mkdir(parents=True)
    (logs / "c.log").write_text("now\n")
    (logs / "c.previous.log").write_text("before\nlevel=error password=hunter2\n")
    (tmp_path / "hosts").mkdir()
    (tmp_path / "hosts" / "node-a.yaml").write_text("paths:\n- {path: /data, uid: 0, gid: 0, mode: 0755}\n")
    # YAML under logs/ and hosts/ is not read as Kubernetes objects.
    (logs / "junk.yaml").write_text("kind: Pod\nmetadata: {name: ghost, namespace: ns1}\n")
    evidence = read_bundle(tmp_path)
    assert evidence.pods == ()
    assert evidence.log("ns1", "p1", "c") == ("now",)
    assert evidence.logs[LogKey("ns1", "p1", "c", True)] == ("before", "level=error password=***")
    [host] = evidence.hosts
    assert host.host == "node-a" and host.paths[0].mode == 0o755 and host.paths[0].uid == 0


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.yaml", "kind: Pod\nmetadata: [\n", "not valid YAML"),
        ("bad.json", "{not json", "not valid JSON"),
        ("scalar.yaml", "just a string\n", "expected a Kubernetes object"),
        (
            "wrongtype.yaml",
            "kind: Pod\nmetadata: {name: p, namespace: n}\nspec: {containers: 5}\n",
            "containers: expected a list",
        ),
        (
            "badtime.yaml",
            "kind: Pod\nmetadata: {name: p, namespace: n}\nstatus: {startTime: yesterday}\n",
            "not an RFC 3339",
        ),
    ],
)
def test_unreadable_files_name_the_file(tmp_path: Path, name: str, content: str, message: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(BundleError) as info:
        read_bundle(tmp_path)
    assert str(tmp_path / name) in str(info.value) and message in str(info.value)


def test_bad_host_facts_and_log_layout(tmp_path: Path) -> None:
    (tmp_path / "hosts").mkdir()
    (tmp_path / "hosts" / "h.yaml").write_text("paths:\n- {uid: 1}\n")
    with pytest.raises(BundleError, match=r"h\.yaml: paths\[0\]"):
        read_bundle(tmp_path)
    (tmp_path / "hosts" / "h.yaml").write_text("paths:\n- {path: /x, mode: rwx}\n")
    with pytest.raises(BundleError, match="octal"):
        read_bundle(tmp_path)
    (tmp_path / "hosts" / "h.yaml").unlink()
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "stray.log").write_text("x")
    with pytest.raises(BundleError, match="logs/<namespace>/<pod>/<container>"):
        read_bundle(tmp_path)


def test_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(BundleError, match="a bundle is a directory"):
        read_bundle(tmp_path / "f")


def test_write_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(BundleError, match="not an empty directory"):
        write_bundle(read_bundle(tmp_path / "out", keep_raw=True), tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_write_keeps_collection_time_and_errors(tmp_path: Path) -> None:
    # When the evidence was collected decides whether a crash is recent; what could not be read
    # decides whether an absence proves anything. Both survive a save.
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "pod.json").write_text(json.dumps(POD))
    taken = read_bundle(tmp_path / "in", keep_raw=True)
    collected = replace(
        taken,
        observed_at=datetime(2025, 10, 9, 22, 20, tzinfo=UTC),
        errors=("cannot list configmaps in ns1: forbidden",),
    )
    write_bundle(collected, tmp_path / "out")
    again = read_bundle(tmp_path / "out")
    assert again.observed_at == collected.observed_at
    assert again.errors == ("cannot list configmaps in ns1: forbidden",)


def test_unreadable_collection_time_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "observed-at.txt").write_text("yesterday\n")
    with pytest.raises(BundleError, match=r"observed-at\.txt.*not an RFC 3339 time"):
        read_bundle(tmp_path)


def test_a_new_bundle_directory_is_owner_only(tmp_path: Path) -> None:
    # A bundle holds ConfigMaps and pod specs exactly as the cluster has them: not for other local users.
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "pod.json").write_text(json.dumps(POD))
    previous = os.umask(0o022)
    try:
        write_bundle(read_bundle(tmp_path / "in", keep_raw=True), tmp_path / "new" / "bundle")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new" / "bundle").stat().st_mode) == 0o700


def test_a_kubectl_json_list_is_read_item_by_item(tmp_path: Path) -> None:
    # kubectl prints `kind` after `items`; API lists' items carry no kind of their own.
    pods = [{**POD, "metadata": {"name": f"p{i}", "namespace": "ns1"}} for i in range(3)]
    kindless = [{k: v for k, v in p.items() if k != "kind"} for p in pods]
    (tmp_path / "all.json").write_text(
        json.dumps({"apiVersion": "v1", "items": pods[:2], "kind": "List", "metadata": {}})
    )
    (tmp_path / "api.json").write_text(
        json.dumps({"apiVersion": "v1", "items": kindless[2:], "kind": "PodList", "metadata": {}}, indent=2)
    )
    (tmp_path / "empty.json").write_text('{"apiVersion": "v1", "items": [], "kind": "List"}')
    evidence = read_bundle(tmp_path)
    assert sorted(p.name for p in evidence.pods) == ["p0", "p1", "p2"]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"kind": "List", "items": [{"kind": "Pod"} {"kind": "Pod"}]}', "expected ',' or ']'"),
        ('{"kind": "List", "items": [{"kind": "Pod"}]} {}', "Extra data"),
        ('{"kind": "List", "items": [{"kind": "Pod"', "Expecting ',' delimiter"),
        ('{"kind" "List"}', "expected ':'"),
    ],
)
def test_a_broken_json_list_names_the_file(tmp_path: Path, text: str, error: str) -> None:
    (tmp_path / "pods.json").write_text(text)
    with pytest.raises(BundleError, match=rf"pods\.json: not valid JSON.*{error}"):
        read_bundle(tmp_path)


def test_only_plan_kinds_keep_their_raw_form_unless_asked(tmp_path: Path) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "ns1"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "objects.json").write_text(json.dumps({"kind": "List", "items": [POD, deployment]}))
    evidence = read_bundle(tmp_path / "in")
    assert not evidence.pods[0].raw  # a diagnosis reads the typed fields only
    assert evidence.workloads[0].raw["spec"]["template"]["spec"]["containers"][0]["name"] == "c"
    # Writing a bundle needs every raw form: said, not silently skipped.
    with pytest.raises(BundleError, match="keep_raw=True"):
        write_bundle(evidence, tmp_path / "out")
    write_bundle(read_bundle(tmp_path / "in", keep_raw=True), tmp_path / "out")
    assert [p.name for p in read_bundle(tmp_path / "out").pods] == ["p1"]
