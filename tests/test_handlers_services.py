"""service-no-endpoints and service-selector-mismatch."""

from __future__ import annotations

from bot.model import ObjectRef
from handlers import service_no_endpoints, service_selector_mismatch
from handlers.base import Settings
from tests.support.kube import container, endpoints, make_evidence, pod, running, service, workload

WEB = [container("web", "nginx:1.25", ports=[("http", 8080)])]


def _pod(name: str, labels: dict[str, str], *, ready: bool, namespace: str = "shop") -> dict[str, object]:
    return pod(name, namespace, labels=labels, containers=WEB, statuses=[running("web", ready=ready)])


def test_no_ready_endpoints_from_endpoints_object() -> None:
    objects = [
        service("frontend", "shop", {"app.kubernetes.io/name": "frontend"}),
        _pod("frontend-1", {"app.kubernetes.io/name": "frontend", "tier": "web"}, ready=False),
        endpoints("frontend", "shop", not_ready=["frontend-1"]),
    ]
    [finding] = service_no_endpoints.diagnose(make_evidence(objects), Settings())
    assert finding.code == "service-no-endpoints"
    assert {str(o) for o in finding.objects} == {"shop/Service/frontend", "shop/Pod/frontend-1"}
    assert finding.plan is None
    assert any("not ready: frontend-1" in line for line in finding.evidence)


def test_endpoint_slices_are_understood() -> None:
    objects = [
        service("api", "shop", {"app": "api"}),
        _pod("api-1", {"app": "api"}, ready=True),
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "api-x7k2",
                "namespace": "shop",
                "labels": {"kubernetes.io/service-name": "api"},
            },
            "endpoints": [
                {
                    "addresses": ["10.1.1.1"],
                    "conditions": {"ready": True},
                    "targetRef": {"kind": "Pod", "name": "api-1"},
                }
            ],
        },
    ]
    assert service_no_endpoints.diagnose(make_evidence(objects), Settings()) == []
    objects[-1]["endpoints"][0]["conditions"]["ready"] = False  # type: ignore[index]
    [finding] = service_no_endpoints.diagnose(make_evidence(objects), Settings())
    assert any("EndpointSlice api" in line for line in finding.evidence)


def test_healthy_service_has_no_finding() -> None:
    objects = [
        service("frontend", "shop", {"app": "frontend"}),
        _pod("frontend-1", {"app": "frontend"}, ready=True),
        endpoints("frontend", "shop", ready=["frontend-1"]),
    ]
    evidence = make_evidence(objects)
    assert service_no_endpoints.diagnose(evidence, Settings()) == []
    assert service_selector_mismatch.diagnose(evidence, Settings()) == []


def test_selector_mismatch_names_the_intended_pod() -> None:
    objects = [
        service("prometheus", "metrics", {"app": "prometheus"}),
        _pod(
            "prometheus-server-0", {"app.kubernetes.io/name": "prometheus"}, ready=True, namespace="metrics"
        ),
        _pod("unrelated-1", {"app": "blackbox"}, ready=True, namespace="metrics"),
    ]
    evidence = make_evidence(objects)
    [finding] = service_selector_mismatch.diagnose(evidence, Settings())
    assert finding.code == "service-selector-mismatch"
    assert "metrics/Pod/prometheus-server-0" in [str(o) for o in finding.objects]
    intended = [line for line in finding.evidence if line.startswith("looks intended")]
    assert intended[0].startswith("looks intended: pod prometheus-server-0")
    assert "no label app" in intended[0]
    assert service_no_endpoints.diagnose(evidence, Settings()) == []  # selects nothing: not this finding


def test_traps_scaled_to_zero_and_selectorless_services() -> None:
    zero = workload(
        "Deployment", "batch", "shop", labels={"app": "batch"}, spec={"containers": WEB}, replicas=0
    )
    manual = service("external-db", "shop", {})
    objects = [service("batch", "shop", {"app": "batch"}), zero, manual]
    assert service_selector_mismatch.diagnose(make_evidence(objects), Settings()) == []


def test_trap_pods_that_could_not_be_listed_are_not_a_selector_mismatch() -> None:
    objects = [service("api", "shop", {"app": "api"}), service("web", "store", {"app": "web"})]
    evidence = make_evidence(objects, errors=["cannot list pods in shop: forbidden"])
    # shop's pods are unknown; store's were listed and none matches.
    [finding] = service_selector_mismatch.diagnose(evidence, Settings())
    assert finding.objects[0] == ObjectRef("Service", "web", "store")
