"""rbac-forbidden: the API server's refusal wording in logs (plain and JSON-escaped) and events, the
permission named exactly, the suggested grant; traps: other users, other refusals, an old refusal."""

from __future__ import annotations

import pytest

from bot.diagnose import diagnose
from bot.model import ObjectRef
from handlers import rbac_forbidden
from handlers.base import Settings
from handlers.rbac_forbidden import Permission, suggestion
from tests.support.kube import container, event, make_evidence, pod, running, terminated, waiting

NS = "observability"


def _pod(name: str, status: dict[str, object], *, sa: str = "otel-collector") -> dict[str, object]:
    p = pod(
        name,
        NS,
        labels={"app.kubernetes.io/name": "otel-collector"},
        owner=("DaemonSet", "otel-collector"),
        containers=[container("otelcol", "otel/opentelemetry-collector-contrib:0.110.0")],
        statuses=[status],  # type: ignore[list-item]
    )
    p["spec"]["serviceAccountName"] = sa  # type: ignore[index]
    return p


DS = {
    "apiVersion": "apps/v1",
    "kind": "DaemonSet",
    "metadata": {"name": "otel-collector", "namespace": NS},
    "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "otel-collector"}}, "template": {}},
}

KLOG_LINE = (
    'E1009 21:58:30.101022       1 reflector.go:158] "Unhandled Error" err="k8s.io/client-go/informers/'
    "factory.go:160: Failed to watch *v1.Pod: failed to list *v1.Pod: pods is forbidden: User "
    '\\"system:serviceaccount:observability:otel-collector\\" cannot list resource \\"pods\\" in API group '
    '\\"\\" at the cluster scope" logger="UnhandledError"'
)
JSON_LINE = (
    '{"level":"error","ts":"2025-10-09T21:59:01Z","msg":"failed to get '
    'replicasets","error":"replicasets.apps '
    'is forbidden: User \\"system:serviceaccount:observability:otel-collector\\" cannot list resource '
    '\\"replicasets\\" in API group \\"apps\\" in the namespace \\"shop\\""}'
)


def test_refusals_in_klog_and_json_logs_name_the_account_and_each_permission() -> None:
    objects = [
        DS,
        _pod(
            "otel-collector-x7k2p",
            waiting("otelcol", "CrashLoopBackOff", restarts=5, last=terminated(exit_code=1)),
        ),
    ]
    logs = {(NS, "otel-collector-x7k2p", "otelcol", True): ["starting", KLOG_LINE, JSON_LINE]}
    [finding] = rbac_forbidden.diagnose(make_evidence(objects, logs=logs), Settings())
    assert finding.code == "rbac-forbidden" and finding.plan is None
    assert finding.severity.value == "critical"
    assert finding.objects[0] == ObjectRef("ServiceAccount", "otel-collector", NS)
    assert ObjectRef("DaemonSet", "otel-collector", NS) in finding.objects
    assert finding.summary == (
        "service account observability/otel-collector (used by daemonset/otel-collector) is forbidden to "
        "list pods (the core API group) at the cluster scope and 1 more: no Role or ClusterRole bound to "
        "it allows that"
    )
    assert '  list replicasets (API group "apps") in namespace shop' in finding.evidence
    assert "  kubectl create clusterrole otel-collector-pods --verb=list --resource=pods" in finding.evidence
    assert (
        "  kubectl create rolebinding otel-collector-replicasets -n shop --role=otel-collector-replicasets "
        "--serviceaccount=observability:otel-collector"
    ) in finding.evidence


def test_a_refusal_in_an_event_and_a_missing_role() -> None:
    objects = [
        _pod("otel-collector-x7k2p", running("otelcol", ready=False)),
        event(
            ("Pod", NS, "otel-collector-x7k2p"),
            "LeaderElectionFailed",
            'leases.coordination.k8s.io "otel-lock" is forbidden: User '
            '"system:serviceaccount:observability:otel-collector" cannot update resource "leases" in API '
            'group "coordination.k8s.io" in the namespace "observability": RBAC: '
            "role.rbac.authorization.k8s.io "
            '"otel-leader" not found',
        ),
    ]
    [finding] = rbac_forbidden.diagnose(make_evidence(objects), Settings())
    assert finding.summary.endswith("its binding names Role otel-leader, which does not exist")
    assert '  update leases (API group "coordination.k8s.io") in namespace observability' in finding.evidence


def test_it_explains_the_crash_in_a_diagnosis() -> None:
    objects = [
        DS,
        _pod(
            "otel-collector-x7k2p",
            waiting("otelcol", "CrashLoopBackOff", restarts=5, last=terminated(exit_code=1)),
        ),
    ]
    logs = {(NS, "otel-collector-x7k2p", "otelcol", True): [KLOG_LINE]}
    codes = [f.code for f in diagnose(make_evidence(objects, logs=logs)).findings]
    assert codes == ["rbac-forbidden"]


@pytest.mark.parametrize(
    ("permissions", "expected"),
    [
        (
            [
                Permission("get", "pods/log", "", "batch-jobs"),
                Permission("list", "pods/log", "", "batch-jobs"),
            ],
            [
                "kubectl create role runner-pods-log -n batch-jobs --verb=get,list --resource=pods/log",
                "kubectl create rolebinding runner-pods-log -n batch-jobs --role=runner-pods-log "
                "--serviceaccount=ci:runner",
            ],
        ),
        (
            [Permission("patch", "deployments/scale", "apps", "")],
            [
                "kubectl create clusterrole runner-deployments-scale --verb=patch "
                "--resource=deployments.apps/scale",
                "kubectl create clusterrolebinding runner-deployments-scale "
                "--clusterrole=runner-deployments-scale --serviceaccount=ci:runner",
            ],
        ),
        (
            [Permission("get", "", path="/metrics")],
            [
                "kubectl create clusterrole runner-nonresource --verb=get --non-resource-url=/metrics",
                "kubectl create clusterrolebinding runner-nonresource --clusterrole=runner-nonresource "
                "--serviceaccount=ci:runner",
            ],
        ),
    ],
)
def test_suggested_grants(permissions: list[Permission], expected: list[str]) -> None:
    assert suggestion("ci", "runner", permissions) == expected


# -- traps --------------------------------------------------------------------------------------


def test_trap_other_users_and_other_refusals() -> None:
    objects = [_pod("otel-collector-x7k2p", running("otelcol", ready=False))]
    logs = {
        (NS, "otel-collector-x7k2p", "otelcol", False): [
            'forbidden: User "system:anonymous" cannot get path "/metrics"',
            'nodes "n1" is forbidden: User "system:node:worker-2" cannot get resource "nodes" in API '
            'group "" '
            "at the cluster scope",
            'pods "otel-x" is forbidden: violates PodSecurity "restricted:latest": '
            "allowPrivilegeEscalation != "
            "false",
            'pods "otel-x" is forbidden: exceeded quota: compute, requested: cpu=2, used: cpu=8, '
            "limited: cpu=8",
        ]
    }
    assert rbac_forbidden.diagnose(make_evidence(objects, logs=logs), Settings()) == []


def test_trap_an_old_refusal_on_a_steady_pod_is_history() -> None:
    # RBAC was applied a moment after the collector started (a Helm install): it logged one refusal, then
    # worked for hours.
    old = (
        "2025-10-09T18:02:11Z error pods is forbidden: User "
        '"system:serviceaccount:observability:otel-collector" '
        'cannot list resource "pods" in API group "" at the cluster scope'
    )
    objects = [_pod("otel-collector-x7k2p", running("otelcol", ready=True))]
    logs = {(NS, "otel-collector-x7k2p", "otelcol", False): [old, "2025-10-09T21:59:00Z info exporting"]}
    assert rbac_forbidden.diagnose(make_evidence(objects, logs=logs), Settings()) == []
    # The same line at a recent time is a finding (warning: the pod still runs).
    recent = old.replace("18:02:11", "21:58:11")
    logs = {(NS, "otel-collector-x7k2p", "otelcol", False): [recent]}
    [finding] = rbac_forbidden.diagnose(make_evidence(objects, logs=logs), Settings())
    assert finding.severity.value == "warning"
