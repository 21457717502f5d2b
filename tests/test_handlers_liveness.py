"""liveness-probe-failing: kubelet Unhealthy/Killing wording, the probe against the ports, one finding
per workload, crash-loop caused_by it; traps: failures below the threshold, old restarts, readiness."""

from __future__ import annotations

from typing import Any

from bot.diagnose import diagnose
from bot.model import ObjectRef
from handlers import crash_loop, liveness_probe_failing
from handlers.base import Settings
from tests.support.kube import container, event, make_evidence, pod, running, terminated, waiting, workload

NS = "payments"
LABELS = {"app": "gateway", "team": "pay"}


def _container(probe: dict[str, Any], *, key: str = "livenessProbe") -> dict[str, Any]:
    c = container("gateway", "acme/gateway:3.2", ports=[("http", 8080), ("metrics", 9102)])
    c[key] = probe
    return c


HTTP_WRONG_PORT = {
    "httpGet": {"path": "/healthz", "port": 8081},
    "initialDelaySeconds": 10,
    "periodSeconds": 10,
    "timeoutSeconds": 2,
    "failureThreshold": 3,
}


def _objects(
    probe: dict[str, Any],
    statuses: list[dict[str, Any]],
    names: tuple[str, ...],
    *,
    key: str = "livenessProbe",
) -> list[dict[str, Any]]:
    c = _container(probe, key=key)
    objects: list[dict[str, Any]] = [
        workload("Deployment", "gateway", NS, labels=LABELS, spec={"containers": [c]}, replicas=len(names)),
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": "gateway-84f6c",
                "namespace": NS,
                "ownerReferences": [{"kind": "Deployment", "name": "gateway", "controller": True}],
            },
        },
    ]
    for name, status in zip(names, statuses, strict=True):
        objects.append(
            pod(
                name,
                NS,
                labels=LABELS,
                owner=("ReplicaSet", "gateway-84f6c"),
                containers=[c],
                statuses=[status],
            )
        )
    return objects


def _unhealthy(pod_name: str, message: str, *, container_name: str = "gateway", **kw: Any) -> dict[str, Any]:
    e = event(("Pod", NS, pod_name), "Unhealthy", message, **kw)
    e["involvedObject"]["fieldPath"] = f"spec.containers{{{container_name}}}"
    return e


def _killing(pod_name: str, kind: str = "liveness", **kw: Any) -> dict[str, Any]:
    message = f"Container gateway failed {kind} probe, will be restarted"
    return event(("Pod", NS, pod_name), "Killing", message, type_="Normal", **kw)


def test_probe_on_a_port_the_container_does_not_declare_one_finding_per_workload() -> None:
    names = ("gateway-84f6c-aaaaa", "gateway-84f6c-bbbbb")
    statuses = [
        waiting("gateway", "CrashLoopBackOff", restarts=6, last=terminated(exit_code=137, reason="Error")),
        running("gateway", ready=False, restarts=4, last=terminated(exit_code=143, reason="Error")),
    ]
    objects = _objects(HTTP_WRONG_PORT, statuses, names)
    for name in names:
        objects += [
            _unhealthy(
                name,
                'Liveness probe failed: Get "http://10.42.1.7:8081/healthz": '
                "dial tcp 10.42.1.7:8081: connect: connection refused",
                count=18,
            ),
            _killing(name),
        ]
    [finding] = liveness_probe_failing.diagnose(make_evidence(objects), Settings())
    assert finding.code == "liveness-probe-failing" and finding.plan is None
    assert finding.severity.value == "critical"
    assert finding.summary.startswith(
        "2/2 pods of deployment/gateway: container gateway is restarted by its liveness probe "
        "(HTTP GET /healthz on port 8081), 10 restarts: the probe targets port 8081, but the container "
        "declares 8080, 9102"
    )
    assert ObjectRef("Deployment", "gateway", NS) in finding.objects
    assert (
        "liveness probe: HTTP GET /healthz on port 8081 (initialDelay 10s, period 10s, timeout 2s, "
        "failureThreshold 3)"
    ) in finding.evidence
    assert "container ports: http:8080, metrics:9102" in finding.evidence
    assert any("last exit code 137 (Error, SIGKILL)" in line for line in finding.evidence)


def test_crash_loop_on_the_same_pod_is_caused_by_it_and_readiness_is_explained() -> None:
    names = ("gateway-84f6c-aaaaa",)
    probe = {"httpGet": {"path": "/livez", "port": "http"}, "periodSeconds": 5}
    statuses = [waiting("gateway", "CrashLoopBackOff", restarts=9, last=terminated(exit_code=137))]
    objects = _objects(probe, statuses, names)
    objects += [
        _unhealthy(names[0], "Liveness probe failed: HTTP probe failed with statuscode: 503"),
        _unhealthy(names[0], "Readiness probe failed: HTTP probe failed with statuscode: 503"),
        _killing(names[0]),
    ]
    evidence = make_evidence(objects)
    [crash] = crash_loop.diagnose(evidence, Settings())
    assert crash.caused_by == ("liveness-probe-failing",)
    findings = diagnose(evidence).findings
    codes = [f.code for f in findings]
    assert codes[0] == "liveness-probe-failing"
    assert "crash-loop" in codes and "readiness-probe-failing" not in codes
    assert findings[0].summary.endswith("the app answers HTTP 503 to the probe: it reports itself unhealthy")


def test_startup_probe_restarts_without_a_killing_event_and_unnamed_container() -> None:
    names = ("gateway-84f6c-ccccc",)
    probe = {"tcpSocket": {"port": 8080}, "periodSeconds": 10, "failureThreshold": 3}
    statuses = [running("gateway", ready=False, restarts=2, last=terminated(exit_code=143))]
    objects = _objects(probe, statuses, names, key="startupProbe")
    objects.append(
        event(
            ("Pod", NS, names[0]),
            "Unhealthy",
            "Startup probe failed: dial tcp 10.42.1.9:8080: connect: connection refused",
        )
    )
    [finding] = liveness_probe_failing.diagnose(make_evidence(objects), Settings())
    assert "restarted by its startup probe (tcpSocket on port 8080)" in finding.summary
    assert "nothing listens on the probed port" in finding.summary
    assert finding.severity.value == "warning"


def test_timeouts_and_404_are_named() -> None:
    probe = {"httpGet": {"path": "/health", "port": 8080}, "timeoutSeconds": 1}
    statuses = [running("gateway", ready=True, restarts=3, last=terminated(exit_code=137))]
    objects = _objects(probe, statuses, ("gateway-84f6c-ddddd",))
    objects.append(
        _unhealthy(
            "gateway-84f6c-ddddd",
            'Liveness probe failed: Get "http://10.42.1.9:8080/health": context deadline exceeded '
            "(Client.Timeout exceeded while awaiting headers)",
        )
    )
    [finding] = liveness_probe_failing.diagnose(make_evidence(objects), Settings())
    assert finding.summary.endswith(
        "the probe times out (timeoutSeconds of 1s): the app answers too slowly or not at all"
    )
    objects[-1] = _unhealthy(
        "gateway-84f6c-ddddd", "Liveness probe failed: HTTP probe failed with statuscode: 404"
    )
    [finding] = liveness_probe_failing.diagnose(make_evidence(objects), Settings())
    assert finding.summary.endswith("/health answers 404: the path does not exist")


# -- traps --------------------------------------------------------------------------------------


def test_trap_failures_below_the_threshold_never_restarted_the_container() -> None:
    probe = {"httpGet": {"path": "/healthz", "port": 8080}, "failureThreshold": 5}
    objects = _objects(probe, [running("gateway", ready=True)], ("gateway-84f6c-eeeee",))
    objects.append(
        _unhealthy(
            "gateway-84f6c-eeeee", "Liveness probe failed: HTTP probe failed with statuscode: 500", count=2
        )
    )
    assert liveness_probe_failing.diagnose(make_evidence(objects), Settings()) == []
    assert diagnose(make_evidence(objects)).findings == ()


def test_trap_restarts_long_ago_and_ready_since() -> None:
    probe = {"httpGet": {"path": "/healthz", "port": 8080}}
    old = terminated(exit_code=137, finished="2025-10-09T18:00:00Z")
    objects = _objects(
        probe, [running("gateway", ready=True, restarts=2, last=old)], ("gateway-84f6c-fffff",)
    )
    objects += [
        _unhealthy("gateway-84f6c-fffff", "Liveness probe failed: timeout", last="2025-10-09T18:00:00Z"),
        _killing("gateway-84f6c-fffff", last="2025-10-09T18:00:00Z"),
    ]
    assert liveness_probe_failing.diagnose(make_evidence(objects), Settings()) == []


def test_trap_readiness_failures_and_another_containers_kill_are_not_liveness() -> None:
    probe = {"httpGet": {"path": "/healthz", "port": 8080}}
    statuses = [running("gateway", ready=False, restarts=1, last=terminated(exit_code=1))]
    objects = _objects(probe, statuses, ("gateway-84f6c-ggggg",))
    objects += [
        _unhealthy("gateway-84f6c-ggggg", "Readiness probe failed: HTTP probe failed with statuscode: 503"),
        _unhealthy(
            "gateway-84f6c-ggggg", "Liveness probe failed: connection refused", container_name="istio-proxy"
        ),
        event(
            ("Pod", NS, "gateway-84f6c-ggggg"),
            "Killing",
            "Container istio-proxy failed liveness probe, will be restarted",
            type_="Normal",
        ),
    ]
    assert liveness_probe_failing.diagnose(make_evidence(objects), Settings()) == []
