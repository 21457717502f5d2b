"""The pure half of health summaries: evidence + store rows + checks + previous state -> HealthSummary,
and its text / JSON rendering. Evidence comes from the same parser the live collector uses, or from
the seed incident's bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.model import (
    CheckResult,
    Finding,
    IncidentStatus,
    ObjectRef,
    Severity,
)
from bot.snapshot import read_bundle
from bot.summary import (
    DEFAULT_LOOKBACK_SECONDS,
    TOP_RESTARTS,
    HealthSummary,
    SummaryState,
    render_text,
    summarize,
    summary_to_json,
)
from tests.support.schedule import (
    NOW,
    app_objects,
    degraded_namespace,
    evidence_of,
    execution,
    healthy_namespace,
    incident,
    pod,
)

SEED = Path(__file__).resolve().parent.parent / "examples" / "seed-incident"


def summary_of(
    objects: list[dict[str, object]], namespaces: tuple[str, ...] = ("monitoring",), **kw: object
) -> HealthSummary:
    return summarize(
        title="daily",
        namespaces=namespaces,
        generated_at=NOW,
        evidence=evidence_of(objects, list(namespaces)),
        **kw,  # type: ignore[arg-type]
    )


def test_healthy_namespace_says_all_healthy() -> None:
    summary = summary_of(healthy_namespace())
    assert summary.glance == "monitoring: all healthy"
    assert summary.problems == ()
    (ns,) = summary.namespace_health
    assert (ns.pods_ready, ns.pods_total) == (3, 3)
    assert ns.healthy and ns.restarted == ()
    data = summary_to_json(summary)
    assert data["healthy"] is True and data["problem_count"] == 0
    assert render_text(summary).splitlines()[0] == "monitoring: all healthy"


def test_degraded_namespace_lists_each_problem_once() -> None:
    summary = summary_of(degraded_namespace())
    assert summary.glance == "monitoring: 5 problems"
    (ns,) = summary.namespace_health
    assert (ns.pods_ready, ns.pods_total) == (1, 3)
    kinds = sorted(p.kind for p in summary.problems)
    assert kinds == [
        "pvc-not-bound",
        "service-no-endpoints",
        "service-no-endpoints",
        "workload-replicas",
        "workload-replicas",
    ]
    # The not-ready pods are explained on their StatefulSet's line, not listed a second time.
    details = [p.detail for p in summary.problems]
    assert "StatefulSet prometheus: 0/1 ready (prometheus-0: CrashLoopBackOff)" in details
    assert not any(d.startswith("Pod ") for d in details)
    assert ns.services_without_endpoints == ("loki", "prometheus")
    assert ns.pvcs_not_bound == (("scratch", "Pending"),)
    assert [(r.pod, r.restarts) for r in ns.restarted] == [("prometheus-0", 9), ("loki-0", 4)]


def test_seed_bundle_summary_names_the_incident() -> None:
    evidence = read_bundle(SEED, namespaces=["monitoring"])
    summary = summarize(title="daily", namespaces=["monitoring"], generated_at=NOW, evidence=evidence)
    text = render_text(summary)
    assert summary.glance == "monitoring: 4 problems"
    assert "StatefulSet prometheus: 0/1 ready (prometheus-0: CrashLoopBackOff)" in text
    assert "Service loki has no ready endpoints" in text
    assert "prometheus-0: +9" in text


def test_bare_pod_not_ready_is_its_own_problem() -> None:
    objects = [*healthy_namespace(), pod("debug", ready=False, waiting_reason="ImagePullBackOff")]
    summary = summary_of(objects)
    assert [p.detail for p in summary.problems] == ["Pod debug not ready: ImagePullBackOff"]


def test_completed_pods_do_not_count() -> None:
    objects = [*healthy_namespace(), pod("backup-123", ready=False, phase="Succeeded")]
    (ns,) = summary_of(objects).namespace_health
    assert (ns.pods_ready, ns.pods_total) == (3, 3)


def test_restarts_are_counted_since_the_previous_summary() -> None:
    previous = SummaryState(
        at=NOW - 3600,
        restarts={
            "monitoring/prometheus-0/prometheus": 5,  # now 9: +4
            "monitoring/loki-0/loki": 7,  # now 4: a new pod with the same name, all 4 are new
        },
    )
    summary = summary_of(degraded_namespace(), previous=previous)
    (ns,) = summary.namespace_health
    # Ties are listed by name.
    assert [(r.pod, r.restarts, r.total) for r in ns.restarted] == [("loki-0", 4, 4), ("prometheus-0", 4, 9)]
    assert summary.since == NOW - 3600 and summary.has_baseline
    assert summary.state.restarts["monitoring/prometheus-0/prometheus"] == 9
    assert summary.state.at == NOW
    assert "restarts since the last summary" in render_text(summary)


def test_no_new_restarts_lists_none() -> None:
    previous = SummaryState(at=NOW - 3600, restarts={"monitoring/prometheus-0/prometheus": 9})
    objects = app_objects("prometheus", ready=True, restarts=9)
    (ns,) = summary_of(objects, previous=previous).namespace_health
    assert ns.restarted == ()


def test_top_restart_offenders_are_bounded() -> None:
    objects = [pod(f"worker-{i}", restarts=i + 1) for i in range(TOP_RESTARTS + 3)]
    (ns,) = summary_of(objects).namespace_health
    assert len(ns.restarted) == TOP_RESTARTS
    assert ns.restarted[0].pod == f"worker-{TOP_RESTARTS + 2}"  # most restarts first
    assert ns.restarted_omitted == 3
    assert "and 3 more pods restarted" in render_text(summary_of(objects))


def test_unreachable_cluster_still_summarizes_the_store_and_keeps_the_baseline() -> None:
    previous = SummaryState(at=NOW - 3600, restarts={"monitoring/prometheus-0/prometheus": 9})
    summary = summarize(
        title="daily",
        namespaces=["monitoring"],
        generated_at=NOW,
        evidence=None,
        collection_error="cluster unreachable: cannot list pods in monitoring: connection refused",
        incidents=[incident(1)],
        previous=previous,
    )
    assert summary.glance.startswith(
        "monitoring: unknown, the cluster could not be read (cluster unreachable"
    )
    assert [p.kind for p in summary.problems] == ["collection-failed"]
    assert [i.id for i in summary.incidents_open] == [1]
    assert summary.state.restarts == previous.restarts  # nothing new learned: same baseline
    assert "Could not read the cluster: cluster unreachable" in render_text(summary)
    assert summary_to_json(summary)["healthy"] is False


def test_namespace_whose_pods_cannot_be_read() -> None:
    objects = healthy_namespace("monitoring")
    evidence = evidence_of(
        objects, ["monitoring", "logging"], errors=["cannot list pods in logging: forbidden (403)"]
    )
    previous = SummaryState(at=NOW - 60, restarts={"logging/promtail-0/promtail": 3})
    summary = summarize(
        title="daily",
        namespaces=["monitoring", "logging"],
        generated_at=NOW,
        evidence=evidence,
        previous=previous,
    )
    assert summary.glance == "monitoring, logging: 1 problem (incomplete: 1 read error)"
    monitoring, logging = summary.namespace_health
    assert monitoring.healthy and not logging.readable
    assert summary.state.restarts["logging/promtail-0/promtail"] == 3  # baseline kept for next time


def test_incidents_opened_resolved_and_still_open_since_the_last_summary() -> None:
    since = NOW - 3600
    incidents = [
        incident(1, created_at=since - 7200),  # older, still firing
        incident(2, created_at=since + 60),  # opened, still firing
        incident(3, created_at=since + 120, status=IncidentStatus.RESOLVED, updated_at=since + 900),
        incident(4, created_at=since - 9000, status=IncidentStatus.RESOLVED, updated_at=since - 10),
        incident(5, namespace="payments", created_at=since + 10),  # another team's namespace
        incident(6, namespace=None, created_at=since + 30),  # no namespace label: shown
    ]
    summary = summary_of(healthy_namespace(), previous=SummaryState(at=since), incidents=incidents)
    assert [i.id for i in summary.incidents_opened] == [3, 2, 6]  # newest first
    assert [i.id for i in summary.incidents_resolved] == [3]
    assert sorted(i.id for i in summary.incidents_open) == [1, 2, 6]


def test_resolved_counts_the_resolution_time_not_a_later_update() -> None:
    since = NOW - 3600
    incidents = [
        # Resolved a day ago, rolled back (updated) in this window: not resolved again.
        incident(
            1,
            created_at=since - 90000,
            status=IncidentStatus.RESOLVED,
            resolved_at=since - 80000,
            updated_at=since + 300,
        ),
        # Opened before the window, resolved in it, touched again later.
        incident(
            2,
            created_at=since - 600,
            status=IncidentStatus.RESOLVED,
            resolved_at=since + 60,
            updated_at=since + 1800,
        ),
        # Fired again in this window: open, not resolved.
        incident(3, created_at=since - 9000, updated_at=since + 100),
    ]
    summary = summary_of(healthy_namespace(), previous=SummaryState(at=since), incidents=incidents)
    assert [i.id for i in summary.incidents_resolved] == [2]
    assert summary.incidents_resolved[0].resolved_at == since + 60
    assert summary.incidents_opened == ()  # opened by created_at: all three before the window
    assert [i.id for i in summary.incidents_open] == [3]


def test_problems_link_to_incident_threads() -> None:
    finding = Finding(
        code="prometheus-storage-permission",
        severity=Severity.CRITICAL,
        summary="open /prometheus/lock: permission denied",
        objects=(ObjectRef("StatefulSet", "prometheus", "monitoring"),),
    )
    incidents = [
        incident(7, findings=(finding,)),
        incident(8, labels={"pod": "loki-0"}, alertname="LokiNotReady"),
        incident(9, labels={"service": "loki"}, alertname="LokiEndpointsEmpty"),
    ]
    messages = {7: ("C0MON", "1800000000.000100"), 8: ("C0MON", "1800000001.000200")}
    summary = summary_of(degraded_namespace(), incidents=incidents, slack_messages=messages)
    by_object = {str(p.object): p for p in summary.problems}
    prometheus = by_object["monitoring/StatefulSet/prometheus"]
    assert prometheus.incident_id == 7
    assert prometheus.link is not None
    assert prometheus.link.permalink == "https://slack.com/archives/C0MON/p1800000000000100"
    assert by_object["monitoring/StatefulSet/loki"].incident_id == 8  # via its pod loki-0
    loki_service = by_object["monitoring/Service/loki"]
    assert (loki_service.incident_id, loki_service.link) == (9, None)  # no Slack message recorded
    assert by_object["monitoring/PersistentVolumeClaim/scratch"].incident_id is None
    text = render_text(summary)
    assert "[incident #7: https://slack.com/archives/C0MON/p1800000000000100]" in text
    assert "[incident #9]" in text


def test_remediations_in_the_window_with_their_outcome() -> None:
    since = NOW - 3600
    executions = [
        execution(1, 2, status="succeeded", started_at=since + 100),
        execution(2, None, status="rolled-back", started_at=since + 200),
        execution(3, 2, status="failed", started_at=since - 7200),  # before the window
        execution(4, 2, status="running", started_at=since - 50),  # still running: shown
        execution(5, 9, status="succeeded", started_at=since + 300),  # another team's incident
    ]
    summary = summary_of(
        healthy_namespace(),
        previous=SummaryState(at=since),
        incidents=[incident(2, created_at=since + 50), incident(9, namespace="payments")],
        executions=executions,
        slack_messages={2: ("C1", "1.2")},
    )
    assert [(r.execution_id, r.status) for r in summary.remediations] == [
        (2, "rolled-back"),
        (1, "succeeded"),
        (4, "running"),
    ]
    assert summary.remediations[1].link is not None
    assert "execution 1 for incident #2 by U123: succeeded (validation passed)" in render_text(summary)


def test_failed_checks_count_unless_a_namespace_line_already_says_it() -> None:
    checks = [
        CheckResult("pods-ready", "fail", "2 of 3 pods not Ready"),
        CheckResult("http-health", "fail", "prometheus /-/ready: HTTP 503"),
        CheckResult("logs", "warn", "3 error lines"),
        CheckResult("pvcs-bound", "pass", "3 Bound"),
    ]
    summary = summary_of(degraded_namespace(), checks=checks)
    assert summary.glance == "monitoring: 6 problems"  # 5 from the namespace + http-health
    assert [p.detail for p in summary.check_problems] == [
        "check http-health failed: prometheus /-/ready: HTTP 503"
    ]
    text = render_text(summary)
    assert "Validation checks: 1 pass, 1 warn, 2 fail" in text
    assert "FAIL http-health: prometheus /-/ready: HTTP 503" in text


def test_no_baseline_uses_a_default_lookback() -> None:
    summary = summary_of(healthy_namespace())
    assert summary.since == NOW - DEFAULT_LOOKBACK_SECONDS and not summary.has_baseline
    assert "(no previous summary)" in render_text(summary)


def test_json_output_is_plain_data() -> None:
    summary = summary_of(degraded_namespace(), incidents=[incident(1)], slack_messages={1: ("C1", "1.5")})
    data = json.loads(json.dumps(summary_to_json(summary), allow_nan=False))
    assert data["glance"] == "monitoring: 5 problems"
    assert data["namespace_health"][0]["workloads_not_ready"][0] == {
        "object": "monitoring/StatefulSet/loki",
        "desired": 1,
        "ready": 0,
    }
    assert data["incidents"]["still_open"][0]["link"]["permalink"] == "https://slack.com/archives/C1/p15"


def test_many_namespaces_glance_label() -> None:
    namespaces = tuple(f"team-{i}" for i in range(5))
    objects = [o for ns in namespaces for o in healthy_namespace(ns, apps=("app",))]
    assert summary_of(objects, namespaces).glance == "5 namespaces: all healthy"


def test_summary_state_round_trip_and_bad_records() -> None:
    state = SummaryState(at=12.5, restarts={"ns/p/c": 3})
    assert SummaryState.from_json(state.to_json()) == state
    for bad in ('{"restarts": {}}', '{"at": "x"}', '{"at": 1, "restarts": {"a": "3"}}', "[1]", "{"):
        with pytest.raises(ValueError):
            SummaryState.from_json(bad)
