"""pod-not-healthy and workload-not-healthy: whatever no specific handler knows is still reported,
with what is known; and what healthy clusters do all the time (pods starting, terminating, finished,
replaced, scaled to zero, rolling out) is not."""

from __future__ import annotations

from typing import Any

from bot.diagnose import diagnose
from bot.evidence import Evidence
from bot.model import Finding
from handlers import pod_not_healthy, workload_not_healthy
from handlers.base import Settings
from tests.support.kube import container, event, make_evidence, pod, running, terminated, waiting

NOW = "2026-02-02T12:00:00Z"
NS = "payments"
APP = {"app": "ledger"}


def ago(seconds: int) -> str:
    from datetime import UTC, datetime, timedelta

    t = datetime(2026, 2, 2, 12, 0, 0, tzinfo=UTC) - timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _pod(
    name: str,
    statuses: list[dict[str, Any]],
    *,
    phase: str = "Running",
    started: int = 3600,
    owner: tuple[str, str] | None = ("ReplicaSet", "ledger-7f9c"),
    ready: bool | None = None,
    ready_since: int | None = None,
    **kw: Any,
) -> dict[str, Any]:
    p = pod(
        name,
        NS,
        labels=APP,
        owner=owner,
        containers=[
            container(s["name"], "registry.example/ledger:4.1", ports=[("http", 8080)]) for s in statuses
        ],
        statuses=statuses,
        phase=phase,
        **kw,
    )
    is_ready = ready if ready is not None else (phase == "Running" and all(s.get("ready") for s in statuses))
    p["metadata"]["creationTimestamp"] = ago(started)
    p["status"]["startTime"] = ago(started)
    p["status"]["conditions"] = [
        {
            "type": "Ready",
            "status": "True" if is_ready else "False",
            "lastTransitionTime": ago(ready_since or started),
        }
    ]
    return p


def _deployment(name: str, replicas: int, ready: int, **status: Any) -> list[dict[str, Any]]:
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "generation": 3},
        "spec": {"replicas": replicas, "selector": {"matchLabels": APP}, "progressDeadlineSeconds": 600},
        "status": {"replicas": replicas, "readyReplicas": ready, "availableReplicas": ready, **status},
    }
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{name}-7f9c",
            "namespace": NS,
            "ownerReferences": [{"kind": "Deployment", "name": name, "controller": True}],
        },
        "spec": {"replicas": replicas},
        "status": {"replicas": replicas, "readyReplicas": ready},
    }
    return [deploy, rs]


def _ev(objects: list[dict[str, Any]], **kw: Any) -> Evidence:
    return make_evidence(objects, observed_at=NOW, **kw)


def _catch_all(evidence: Evidence) -> list[Finding]:
    return pod_not_healthy.diagnose(evidence, Settings()) + workload_not_healthy.diagnose(
        evidence, Settings()
    )


def test_running_but_not_ready_says_what_is_known() -> None:
    name = "ledger-7f9c-x2k4p"
    evidence = _ev(
        [
            *_deployment("ledger", 1, 0),
            _pod(name, [running("ledger", ready=False, started=ago(1800))], ready_since=1790),
            event(
                ("Pod", NS, name),
                "Unhealthy",
                "Readiness probe failed: HTTP probe failed with statuscode: 503",
                last=ago(20),
            ),
            event(
                ("ReplicaSet", NS, "ledger-7f9c"),
                "FailedCreate",
                'Error creating: pods "ledger-7f9c-" is forbidden: error looking up service account '
                'payments/ledger-sa: serviceaccount "ledger-sa" not found',
                last=ago(60),
            ),
            event(("Pod", NS, name), "Pulled", "Container image already present on machine", type_="Normal"),
        ],
        logs={
            (NS, name, "ledger", False): [
                "starting",
                'level=error msg="cannot reach ledger-db:5432"',
                "retrying",
            ]
        },
    )
    [finding] = diagnose(evidence).findings
    assert finding.code == "pod-not-healthy" and finding.severity.value == "warning"
    assert (
        finding.summary
        == f"{name} is not healthy: Running but not Ready for 29m (container ledger running, not ready)"
    )
    assert [str(o) for o in finding.objects] == [f"{NS}/Pod/{name}", f"{NS}/Deployment/ledger"]
    text = "\n".join(finding.evidence)
    assert "condition Ready=False" in text
    assert "container ledger: running, ready=false, restarts=0" in text
    assert (
        "event on pod/"
        + name
        + ": Unhealthy x5: Readiness probe failed: HTTP probe failed with statuscode: 503"
        in text
    )
    assert "event on replicaset/ledger-7f9c: FailedCreate" in text and "Pulled" not in text
    assert "log ledger: " in text and "cannot reach ledger-db:5432" in text


def test_pods_starting_within_the_grace_are_not_findings_but_stuck_ones_are() -> None:
    creating = waiting("ledger", "ContainerCreating")
    young = _pod("ledger-7f9c-young", [creating], phase="Pending", started=30)
    old = _pod("ledger-7f9c-stuck", [creating], phase="Pending", started=900)
    unscheduled = _pod("ledger-7f9c-nonode", [], phase="Pending", started=1200, node="")
    assert _catch_all(_ev([young])) == []
    [stuck, nonode] = _catch_all(_ev([old, unscheduled]))
    assert (
        stuck.summary
        == "ledger-7f9c-stuck is not healthy: Pending for 15m (container ledger waiting (ContainerCreating))"
    )
    assert nonode.summary == "ledger-7f9c-nonode is not healthy: Pending, not scheduled to a node after 20m"
    # A young pod stuck on an error is not "starting".
    bad = _pod(
        "ledger-7f9c-bad", [waiting("ledger", "CreateContainerConfigError")], phase="Pending", started=20
    )
    assert [f.objects[0].name for f in _catch_all(_ev([bad]))] == ["ledger-7f9c-bad"]


def test_a_readiness_probe_that_needs_longer_extends_the_grace() -> None:
    slow = _pod("ledger-7f9c-slow", [running("ledger", ready=False, started=ago(200))], started=200)
    slow["spec"]["containers"][0]["readinessProbe"] = {
        "httpGet": {"path": "/ready", "port": 8080},
        "initialDelaySeconds": 120,
        "periodSeconds": 30,
        "failureThreshold": 5,
    }
    assert pod_not_healthy.grace_seconds(make_evidence([slow]).pods[0], Settings()) == 270
    assert _catch_all(_ev([slow])) == []
    slow["status"]["startTime"] = ago(400)
    assert len(_catch_all(_ev([slow]))) == 1


def test_terminating_completed_and_replaced_pods_are_not_findings() -> None:
    terminating = _pod("ledger-7f9c-old", [running("ledger", ready=False)])
    terminating["metadata"]["deletionTimestamp"] = ago(-20)
    done = _pod("report-28391-abcde", [], phase="Succeeded", owner=("Job", "report-28391"))
    evicted = _pod("ledger-7f9c-evict", [], phase="Failed", started=86400 * 2, ready_since=86400 * 2 - 60)
    evicted["status"].update(reason="Evicted", message="The node was low on resource: memory.")
    assert _catch_all(_ev([terminating, done, evicted])) == []
    # The same eviction a minute ago is news.
    evicted["status"]["conditions"][0]["lastTransitionTime"] = ago(60)
    [finding] = _catch_all(_ev([evicted]))
    assert finding.summary == "ledger-7f9c-evict is not healthy: Failed (Evicted)"
    assert "reason Evicted: The node was low on resource: memory." in finding.evidence[0]


def test_a_failed_job_attempt_is_history_once_a_later_one_succeeded() -> None:
    failed_status = {
        "name": "migrate",
        "ready": False,
        "restartCount": 0,
        "state": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(590)}},
    }
    failed = _pod(
        "migrate-v7-aaaaa", [failed_status], phase="Failed", owner=("Job", "migrate-v7"), started=600
    )
    later = _pod("migrate-v7-bbbbb", [], phase="Succeeded", owner=("Job", "migrate-v7"), started=500)
    assert _catch_all(_ev([failed, later])) == []
    [finding] = _catch_all(_ev([failed]))
    assert finding.summary == "migrate-v7-aaaaa is not healthy: Failed, exit code 1 (Error)"
    assert [str(o) for o in finding.objects] == [f"{NS}/Pod/migrate-v7-aaaaa", f"{NS}/Job/migrate-v7"]


def test_a_recent_restart_on_a_ready_pod_is_a_finding_an_old_one_is_not() -> None:
    recent = running("ledger", ready=True, restarts=1, last=terminated(137, "OOMKilled", finished=ago(300)))
    old = running("ledger", ready=True, restarts=1, last=terminated(137, "Error", finished=ago(86400)))
    [finding] = _catch_all(_ev([_pod("ledger-7f9c-r1", [recent])]))
    assert finding.summary == (
        "ledger-7f9c-r1 is not healthy: container ledger restarted 1 time(s), the last recently "
        "(exit code 137 (OOMKilled, SIGKILL))"
    )
    assert _catch_all(_ev([_pod("ledger-7f9c-r2", [old])])) == []


def test_a_specific_finding_replaces_the_catch_all_but_a_service_finding_does_not() -> None:
    from tests.support.kube import endpoints, service

    name = "ledger-7f9c-cfg"
    objects = [
        *_deployment("ledger", 1, 0),
        _pod(
            name,
            [waiting("ledger", "CreateContainerConfigError", message='configmap "ledger-env" not found')],
            phase="Pending",
        ),
        service("ledger", NS, APP),
        endpoints("ledger", NS, not_ready=[name]),
    ]
    codes = [f.code for f in diagnose(_ev(objects)).findings]
    assert codes == ["container-config-error", "service-no-endpoints"]
    # A pod nothing specific explains: the Service finding is caused by the catch-all, not replacing it.
    objects[2] = _pod(name, [running("ledger", ready=False)], ready_since=1000)
    findings = diagnose(_ev(objects)).findings
    assert [(f.code, f.caused_by) for f in findings] == [
        ("pod-not-healthy", ()),
        ("service-no-endpoints", ("pod-not-healthy",)),
    ]


def test_workload_without_pods_quotes_why_they_cannot_be_created() -> None:
    # A missing ServiceAccount: no specific handler knows this FailedCreate.
    objects = [
        *_deployment("ledger", 3, 0),
        event(
            ("ReplicaSet", NS, "ledger-7f9c"),
            "FailedCreate",
            'Error creating: pods "ledger-7f9c-5xq2m" is forbidden: error looking up service account '
            'payments/ledger-sa: serviceaccount "ledger-sa" not found',
            last=ago(30),
        ),
    ]
    [finding] = diagnose(_ev(objects)).findings
    assert finding.code == "workload-not-healthy"
    assert finding.summary == "deployment/ledger has 0/3 replicas ready (3 of its pods do not exist)"
    assert finding.evidence[0] == f"{NS}/Deployment/ledger: desired 3, ready 0, available 0"
    assert any(
        "FailedCreate" in line and 'serviceaccount "ledger-sa" not found' in line for line in finding.evidence
    )
    assert "none of its pods exist" in finding.evidence


def test_workload_traps_scaled_to_zero_rolling_within_deadline_and_stale_status() -> None:
    assert _catch_all(_ev(_deployment("ledger", 0, 0))) == []
    rolling = _deployment(
        "ledger",
        3,
        2,
        conditions=[
            {
                "type": "Progressing",
                "status": "True",
                "reason": "ReplicaSetUpdated",
                "lastUpdateTime": ago(40),
                "lastTransitionTime": ago(300),
                "message": 'ReplicaSet "ledger-7f9c" is progressing.',
            }
        ],
    )
    assert _catch_all(_ev(rolling)) == []
    stuck = _deployment(
        "ledger",
        3,
        2,
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "lastUpdateTime": ago(40),
                "lastTransitionTime": ago(40),
                "message": 'ReplicaSet "ledger-7f9c" has timed out progressing.',
            }
        ],
    )
    [finding] = _catch_all(_ev(stuck))
    assert (
        'condition Progressing=False (ProgressDeadlineExceeded: ReplicaSet "ledger-7f9c" has timed out '
        "progressing.)" in finding.evidence
    )
    # The status says 2/3 but all three pods are Ready: it has not caught up.
    pods = [_pod(f"ledger-7f9c-p{i}", [running("ledger", ready=True)]) for i in range(3)]
    assert _catch_all(_ev([*_deployment("ledger", 3, 2), *pods])) == []


def test_daemonset_missing_a_pod_and_a_failed_job() -> None:
    ds = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "node-agent", "namespace": NS},
        "spec": {"selector": {"matchLabels": {"app": "node-agent"}}},
        "status": {"desiredNumberScheduled": 3, "numberReady": 2, "currentNumberScheduled": 2},
    }
    agents = [
        _pod(f"node-agent-{c}", [running("agent", ready=True)], owner=("DaemonSet", "node-agent"))
        for c in "ab"
    ]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "nightly-export-29012345", "namespace": NS},
        "spec": {"backoffLimit": 2, "completions": 1},
        "status": {
            "failed": 3,
            "startTime": ago(3000),
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ],
        },
    }
    findings = _catch_all(_ev([ds, *agents, job]))
    assert [f.summary for f in findings] == [
        "daemonset/node-agent has 2/3 replicas ready (1 of its pods do not exist)",
        "job/nightly-export-29012345 failed (BackoffLimitExceeded: "
        "Job has reached the specified backoff limit)",
    ]
    done = {**job, "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}
    suspended = {**job, "spec": {"suspend": True}, "status": {}}
    assert _catch_all(_ev([done])) == [] and _catch_all(_ev([suspended])) == []


def test_the_workload_catch_all_gives_way_to_findings_on_its_pods() -> None:
    objects = [*_deployment("ledger", 2, 0)] + [
        _pod(f"ledger-7f9c-q{i}", [running("ledger", ready=False)], ready_since=1200) for i in range(2)
    ]
    [finding] = diagnose(_ev(objects)).findings
    assert finding.code == "pod-not-healthy"
    assert finding.summary.startswith(
        "2/2 pods of deployment/ledger: ledger-7f9c-q0 is not healthy: Running but"
    )
    assert [str(o) for o in finding.objects] == [
        f"{NS}/Deployment/ledger",
        f"{NS}/Pod/ledger-7f9c-q0",
        f"{NS}/Pod/ledger-7f9c-q1",
    ]
