"""Pure parts of the executor: plan merging, patch construction, restore patches, YAML diffs, event
and plan rendering, rollback id parsing. Table-driven; no servers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli.rollback import parse_rollback_id
from bot.model import (
    EditConfigMapStep,
    Finding,
    HostCommandStep,
    JsonPatchOp,
    ObjectRef,
    PatchStep,
    Plan,
    RestartPodStep,
    Severity,
    StepEvent,
    WaitReadyStep,
)
from bot.remediation import format_event, format_plan, plan_namespaces, plan_of, step_lock_target
from bot.remediation.executor import _pod_state
from bot.remediation.plan import _changed_since_diagnosis, _patch_ops
from bot.remediation.rollback import _restore_ops
from bot.yamldiff import strip_noise, to_yaml, unified_yaml_diff

STS = ObjectRef("StatefulSet", "prometheus", "monitoring")
CM = ObjectRef("ConfigMap", "loki-config", "monitoring")


def finding(code: str, plan: Plan | None) -> Finding:
    return Finding(code=code, severity=Severity.CRITICAL, summary=code, objects=(), plan=plan)


def test_plan_of_concatenates_steps_and_unions_checks_skipping_findings_without_plans() -> None:
    a = Plan(steps=(RestartPodStep(ObjectRef("Pod", "a", "ns"), "a"),), validation=("pods-ready", "restarts"))
    b = Plan(
        steps=(RestartPodStep(ObjectRef("Pod", "b", "other"), "b"),), validation=("restarts", "endpoints")
    )
    merged = plan_of([finding("x", a), finding("none", None), finding("y", b)])
    assert [s.target.name for s in merged.steps] == ["a", "b"]
    assert merged.validation == ("pods-ready", "restarts", "endpoints")
    assert plan_namespaces(merged) == ("ns", "other")
    assert plan_of(a) is a


def test_lock_targets_name_objects_and_host_paths() -> None:
    host_step = HostCommandStep(
        ObjectRef("PersistentVolume", "pv"), "masternode", "chown", "/srv/d", "x", uid=1, gid=1
    )
    assert step_lock_target(host_step) == "host:masternode:/srv/d"
    assert step_lock_target(RestartPodStep(ObjectRef("Pod", "p", "ns"), "x")) == "ns/Pod/p"


def test_patch_ops_pin_resource_version_then_plan_ops() -> None:
    step = PatchStep(STS, (JsonPatchOp("test", "/spec/replicas", 1), JsonPatchOp("add", "/spec/x", 2)), "d")
    assert _patch_ops(step, "42") == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
        {"op": "test", "path": "/spec/replicas", "value": 1},
        {"op": "add", "path": "/spec/x", "value": 2},
    ]


def test_configmap_edit_is_test_and_replace_of_one_escaped_key() -> None:
    step = EditConfigMapStep(CM, "a/b~c.yaml", "old", "new", "d")
    assert _patch_ops(step, None) == [
        {"op": "test", "path": "/data/a~1b~0c.yaml", "value": "old"},
        {"op": "replace", "path": "/data/a~1b~0c.yaml", "value": "new"},
    ]


@pytest.mark.parametrize(
    ("live", "reason"),
    [
        ({"metadata": {"resourceVersion": "5"}, "spec": {"replicas": 1}}, None),
        ({"metadata": {"resourceVersion": "6"}, "spec": {"replicas": 1}}, "resourceVersion is 6"),
        ({"metadata": {"resourceVersion": "5"}, "spec": {"replicas": 3}}, "differs at /spec/replicas"),
        ({"metadata": {"resourceVersion": "5"}, "spec": {}}, "differs at /spec/replicas"),
    ],
)
def test_changed_since_diagnosis_for_patches(live: dict[str, object], reason: str | None) -> None:
    step = PatchStep(STS, (JsonPatchOp("test", "/spec/replicas", 1),), "d", resource_version="5")
    why = _changed_since_diagnosis(step, live)
    if reason is None:
        assert why is None
    else:
        assert why is not None and why.startswith("object changed since diagnosis") and reason in why


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"k": "old"}, None),
        ({"k": "edited"}, "was edited"),
        ({}, "has no key 'k'"),
    ],
)
def test_changed_since_diagnosis_for_configmap_edits(data: dict[str, str], reason: str | None) -> None:
    step = EditConfigMapStep(CM, "k", "old", "new", "d")
    why = _changed_since_diagnosis(step, {"metadata": {}, "data": data})
    assert (why is None) if reason is None else (why is not None and reason in why)


def test_restore_ops_put_back_spec_or_configmap_data_exactly() -> None:
    backup = {"kind": "StatefulSet", "metadata": {"resourceVersion": "1"}, "spec": {"replicas": 1}}
    live = {"kind": "StatefulSet", "metadata": {"resourceVersion": "9"}, "spec": {"replicas": 1, "x": 2}}
    assert _restore_ops(backup, live) == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "9"},
        {"op": "add", "path": "/spec", "value": {"replicas": 1}},
    ]
    cm_backup = {"kind": "ConfigMap", "metadata": {}, "data": {"a": "1"}}
    cm_live = {"kind": "ConfigMap", "metadata": {}, "data": {"a": "2"}, "binaryData": {"b": "AA=="}}
    assert _restore_ops(cm_backup, cm_live) == [
        {"op": "add", "path": "/data", "value": {"a": "1"}},
        {"op": "remove", "path": "/binaryData"},
    ]


@pytest.mark.parametrize(
    ("pod", "old_uid", "ready", "state"),
    [
        (None, "u1", False, "pod not created yet"),
        (
            {"metadata": {"uid": "u1"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
            "u1",
            False,
            "old pod still present",
        ),
        ({"metadata": {"uid": "u2", "deletionTimestamp": "x"}}, "u1", False, "pod terminating"),
        (
            {
                "metadata": {"uid": "u2"},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
            },
            "u1",
            True,
            "Ready (Running)",
        ),
        (
            {
                "metadata": {"uid": "u2"},
                "status": {
                    "phase": "Running",
                    "containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}],
                },
            },
            "u1",
            False,
            "Running, not Ready (CrashLoopBackOff)",
        ),
    ],
)
def test_pod_state_requires_the_replacement_to_be_ready(
    pod: dict[str, object] | None, old_uid: str, ready: bool, state: str
) -> None:
    assert _pod_state(pod, old_uid) == (ready, state)


def test_yaml_diff_shows_changed_file_lines_and_hides_noise() -> None:
    before = {
        "kind": "ConfigMap",
        "metadata": {"name": "c", "resourceVersion": "1", "managedFields": [{"x": 1}], "uid": "u"},
        "data": {"f.yaml": "a: 1\nb: 2\nc: 3\n"},
        "status": {"x": 1},
    }
    after = json.loads(json.dumps(before))
    after["metadata"]["resourceVersion"] = "2"
    after["data"]["f.yaml"] = "a: 1\n# b: 2\nc: 3\n"
    diff = unified_yaml_diff(before, after, label="ns/ConfigMap/c")
    assert diff.splitlines()[:2] == ["--- ns/ConfigMap/c (live)", "+++ ns/ConfigMap/c (after)"]
    assert "-    b: 2\n" in diff and "+    # b: 2\n" in diff
    assert "resourceVersion" not in diff and "managedFields" not in diff
    assert unified_yaml_diff(before, before, label="x") == ""
    assert "status" not in strip_noise(before) and "status" in before


def test_to_yaml_keeps_trailing_space_lines_exact() -> None:
    import yaml

    text = "line with trailing space \nnext\n"
    assert yaml.safe_load(to_yaml({"k": text}))["k"] == text


def test_format_event_and_plan() -> None:
    event = StepEvent(7, 0, "patch", "done", "patched x", backup_id="b-3", elapsed_seconds=1.25)
    assert format_event(event) == "[step 1] patch done: patched x (backup b-3, 1.2s)"
    assert (
        format_event(StepEvent(7, -1, "validate", "failed", "pods-ready: x"))
        == "[plan] validate failed: pods-ready: x"
    )
    plan = Plan(
        steps=(
            WaitReadyStep(ObjectRef("Pod", "p", "ns"), "wait"),
            HostCommandStep(
                ObjectRef("PersistentVolume", "pv"), "h", "chmod", "/d", "m", mode=0o755, recursive=False
            ),
        )
    )
    assert format_plan(plan).splitlines() == [
        "  1. wait-ready ns/Pod/p: wait",
        "  2. host-command PersistentVolume/pv: m [chmod 755 /d on h]",
    ]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("b-12", ("backup", "b-12")),
        (" 7 ", ("incident", "7")),
        ("e-3", ("execution", "3")),
        ("b-", None),
        ("12a", None),
        ("; rm -rf /", None),
    ],
)
def test_parse_rollback_id(text: str, parsed: tuple[str, str] | None) -> None:
    assert parse_rollback_id(text) == parsed


@pytest.mark.parametrize(
    ("ops", "resource_version", "problem"),
    [
        ((JsonPatchOp("add", "/spec/x", 1),), "5", None),  # the resourceVersion pins everything
        ((JsonPatchOp("test", "/spec", {}), JsonPatchOp("add", "/spec/x", 1)), None, None),
        ((JsonPatchOp("test", "/spec/x", 0), JsonPatchOp("replace", "/spec/x", 1)), None, None),
        ((JsonPatchOp("test", "", {}), JsonPatchOp("replace", "/spec/x", 1)), None, None),
        ((JsonPatchOp("add", "/spec/x", 1),), None, "no test op covering /spec/x"),
        (
            (JsonPatchOp("test", "/spec/x", 0), JsonPatchOp("replace", "/spec/xy", 1)),
            None,
            "no test op covering /spec/xy",
        ),
    ],
)
def test_preflight_refuses_patches_not_pinned_to_the_diagnosis(
    ops: tuple[JsonPatchOp, ...], resource_version: str | None, problem: str | None
) -> None:
    from bot.remediation import preflight

    step = PatchStep(STS, ops, "d", resource_version=resource_version)
    problems = preflight(Plan(steps=(RestartPodStep(ObjectRef("Pod", "p", "ns"), "r"), step)), None)
    if problem is None:
        assert problems == []
    else:
        (only,) = problems
        assert (
            only.startswith(f"step 2 (patch {STS}): not pinned to the state seen at diagnosis")
            and problem in only
        )


async def test_a_backup_file_is_never_written_through_a_symlink(tmp_path: Path) -> None:
    # Backup file names are predictable: one planted as a symlink in the folder must not redirect
    # pitcrew's write (the step fails before its change; the store's backup is the one of record).
    from bot.remediation.run import _write_backup_file

    folder = tmp_path / "backups"
    folder.mkdir()
    victim = tmp_path / "victim.conf"
    victim.write_text("keep me\n")
    (folder / "01-monitoring_ConfigMap_loki-config.yaml").symlink_to(victim)
    with pytest.raises(OSError):
        await _write_backup_file(folder, "01", "monitoring/ConfigMap/loki-config", '{"kind": "ConfigMap"}')
    assert victim.read_text() == "keep me\n"
