"""bot.correlate: one finding per workload, cause chains across kinds, root first — for any handler."""

from __future__ import annotations

from bot.correlate import correlate, group_by_workload, link_and_order, pod_owners
from bot.evidence import Evidence
from bot.model import Finding, ObjectRef, PatchStep, Plan, RestartPodStep, Severity, WaitReadyStep
from tests.support.kube import container, make_evidence, pod, running

NS = "orders"


def _pod_obj(name: str, owner: tuple[str, str]) -> dict[str, object]:
    return pod(
        name,
        NS,
        labels={"app": owner[1]},
        owner=owner,
        containers=[container("app", "registry.example/app:1")],
        statuses=[running("app", ready=False)],
    )


def _evidence() -> Evidence:
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": "api-6c7d",
            "namespace": NS,
            "ownerReferences": [{"kind": "Deployment", "name": "api", "controller": True}],
        },
    }
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": NS}}
    return make_evidence(
        [
            deploy,
            rs,
            *(_pod_obj(f"api-6c7d-{s}", ("ReplicaSet", "api-6c7d")) for s in ("a1", "b2", "c3")),
            *(_pod_obj(f"db-{i}", ("StatefulSet", "db")) for i in range(2)),
            _pod_obj("backup-29001-zz", ("Job", "backup-29001")),
        ]
    )


def P(name: str) -> ObjectRef:
    return ObjectRef("Pod", name, NS)


def F(
    code: str, *objects: ObjectRef, severity: Severity = Severity.WARNING, plan: Plan | None = None
) -> Finding:
    return Finding(
        code,
        severity,
        f"{objects[0].name} {code}",
        objects,
        evidence=(f"{objects[0].name}: evidence",),
        plan=plan,
    )


def test_pods_of_one_workload_failing_the_same_way_are_one_finding() -> None:
    evidence = _evidence()
    deploy = ObjectRef("Deployment", "api", NS)
    findings = [
        F("crash-loop", P("api-6c7d-a1"), deploy),
        F("crash-loop", P("api-6c7d-b2"), deploy, severity=Severity.CRITICAL),
        F("crash-loop", P("db-0")),  # another workload
        F("oom-killed", P("api-6c7d-c3"), deploy),  # another code
    ]
    out = group_by_workload(findings, pod_owners(evidence))
    assert [f.code for f in out] == ["crash-loop", "crash-loop", "oom-killed"]
    merged = out[0]
    assert merged.summary == "2/3 pods of deployment/api: api-6c7d-a1 crash-loop"
    assert merged.severity is Severity.CRITICAL
    assert merged.objects == (deploy, P("api-6c7d-a1"), P("api-6c7d-b2"))
    assert merged.evidence == (
        "2/3 pods of deployment/api (crash-loop): api-6c7d-a1, api-6c7d-b2",
        "api-6c7d-a1: evidence",
        "api-6c7d-b2: evidence",
    )
    assert out[1].objects == (P("db-0"),)


def test_statefulset_and_job_pods_group_by_their_controller_and_objects_other_than_pods_are_kept() -> None:
    evidence = _evidence()
    pvc0, pvc1 = (
        ObjectRef("PersistentVolumeClaim", "data-db-0", NS),
        ObjectRef("PersistentVolumeClaim", "data-db-1", NS),
    )
    out = group_by_workload(
        [F("pvc-pending", P("db-0"), pvc0), F("pvc-pending", P("db-1"), pvc1)], pod_owners(evidence)
    )
    [merged] = out
    assert merged.objects == (ObjectRef("StatefulSet", "db", NS), P("db-0"), P("db-1"), pvc0, pvc1)
    assert merged.summary.startswith("2/2 pods of statefulset/db: ")
    # Findings not about pods (objects[0]) are never merged: two Services selecting the same pods.
    svc = [F("service-no-endpoints", ObjectRef("Service", n, NS), P("db-0")) for n in ("db", "db-ro")]
    assert group_by_workload(svc, pod_owners(evidence)) == svc


def test_plans_merge_step_by_step_unless_they_change_one_object_differently() -> None:
    evidence = _evidence()
    sts = ObjectRef("StatefulSet", "db", NS)
    patch = PatchStep(target=sts, ops=(), description="set fsGroup", resource_version="7")

    def plan(pod_name: str, p: PatchStep = patch) -> Plan:
        return Plan(
            steps=(p, RestartPodStep(P(pod_name), "restart"), WaitReadyStep(P(pod_name), "wait")),
            validation=("pods-ready",),
        )

    same = [F("volume-permission-denied", P(f"db-{i}"), sts, plan=plan(f"db-{i}")) for i in range(2)]
    [merged] = group_by_workload(same, pod_owners(evidence))
    assert merged.plan is not None
    assert [(s.action, s.target.name) for s in merged.plan.steps] == [
        ("patch", "db"),
        ("restart-pod", "db-0"),
        ("wait-ready", "db-0"),
        ("restart-pod", "db-1"),
        ("wait-ready", "db-1"),
    ]
    assert merged.plan.validation == ("pods-ready",)
    other = PatchStep(target=sts, ops=(), description="raise memory", resource_version="8")
    clash = [same[0], F("volume-permission-denied", P("db-1"), sts, plan=plan("db-1", other))]
    assert group_by_workload(clash, pod_owners(evidence)) == clash


def test_cause_chains_across_kinds_and_root_first() -> None:
    pvc = ObjectRef("PersistentVolumeClaim", "data-db-0", NS)
    svc = ObjectRef("Service", "db", NS)
    unschedulable = F(
        "pod-unschedulable", P("db-0"), ObjectRef("StatefulSet", "db", NS), severity=Severity.CRITICAL
    )
    pending = F("pvc-pending", P("db-0"), pvc)
    no_endpoints = F("service-no-endpoints", svc, P("db-0"), P("db-1"))
    unrelated = F("crash-loop", P("api-6c7d-a1"))
    out = link_and_order([no_endpoints, unschedulable, unrelated, pending])
    assert [(f.code, f.caused_by) for f in out] == [
        ("pvc-pending", ()),
        ("pod-unschedulable", ("pvc-pending",)),
        ("service-no-endpoints", ("pod-unschedulable", "pvc-pending")),
        ("crash-loop", ()),
    ]


def test_an_affected_finding_is_caused_by_the_finding_about_an_object_it_names() -> None:
    # An Ingress-like finding (objects[0] the thing, then what it points at): the Service finding causes it.
    a, b = ObjectRef("Service", "web", NS), ObjectRef("Service", "web-canary", NS)
    mismatch = F("service-selector-mismatch", b, a)
    no_endpoints = F("service-no-endpoints", a, b)
    out = link_and_order([no_endpoints, mismatch])
    # Each names the other: one link is made, the reverse would be a cycle and is not.
    assert [(f.code, f.caused_by) for f in out] == [
        ("service-selector-mismatch", ()),
        ("service-no-endpoints", ("service-selector-mismatch",)),
    ]


def test_catch_alls_give_way_to_any_other_finding_on_the_pod_or_the_workload() -> None:
    evidence = _evidence()
    deploy = ObjectRef("Deployment", "api", NS)
    catch = [F("pod-not-healthy", P(f"api-6c7d-{s}"), deploy) for s in ("a1", "b2", "c3")]
    # Any code at all (a handler registered tomorrow) names a1; a Deployment-level finding names the
    # workload; a Service finding names c3 but only as affected.
    specific = F("some-new-failure-class", P("api-6c7d-a1"), deploy)
    svc = F("service-no-endpoints", ObjectRef("Service", "api", NS), P("api-6c7d-c3"))
    workload = F("workload-not-healthy", deploy)
    out = correlate([specific, *catch, svc, workload], evidence)
    assert [(f.code, [o.name for o in f.objects]) for f in out] == [
        ("some-new-failure-class", ["api-6c7d-a1", "api"]),
        ("pod-not-healthy", ["api", "api-6c7d-b2", "api-6c7d-c3"]),
        ("service-no-endpoints", ["api", "api-6c7d-c3"]),
    ]
    assert out[2].caused_by == ("pod-not-healthy",)
    about_the_workload = F("quota-exceeded", deploy, ObjectRef("ResourceQuota", "compute", NS))
    assert [f.code for f in correlate([about_the_workload, *catch, workload], evidence)] == ["quota-exceeded"]
