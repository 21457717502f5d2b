"""Evidence for the breadth kinds: parsing, writing back, bundles, live collection, least privilege.

Jobs, CronJobs, Ingresses, IngressClasses, HPAs, PDBs, ResourceQuotas, LimitRanges, NetworkPolicies
and Secret names: each parsed into its frozen type, written back into bundles from its fields (no raw
form kept), listed once per namespace live, and a forbidden or unserved API is a coverage line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.evidence import Evidence, Scope
from bot.k8s_objects import ObjectError, parse_object, to_manifest
from bot.snapshot import read_bundle, write_bundle
from tests.support import kinds as k
from tests.support.kube import METADATA_ONLY, KubeHarness, container, make_evidence

SECRET_VALUE = "c3VwZXJzZWNyZXQ="  # base64 of "supersecret"


def _all_kinds(ns: str) -> list[dict[str, Any]]:
    return [
        k.job(
            "migrate-7f2",
            ns,
            failed=3,
            backoff_limit=2,
            conditions=[
                k.condition(
                    "Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
                )
            ],
            owner="nightly",
            containers=[
                {
                    **container("migrate", "ghcr.io/acme/migrate:1.4"),
                    "resources": {"requests": {"cpu": "250m"}},
                }
            ],
        ),
        k.cronjob("nightly", ns, active=("nightly-29001",), last_success="2025-10-08T02:00:00Z"),
        k.ingress(
            "storefront",
            ns,
            rules=[("shop.example.com", "/", "web", 8080), ("shop.example.com", "/api", "api", "http")],
            tls=[(("shop.example.com",), "shop-tls")],
            default=("fallback", 80),
        ),
        k.ingress_class("nginx", default=True),
        k.hpa(
            "web",
            ns,
            target=("Deployment", "web"),
            max_replicas=4,
            current=4,
            desired=4,
            cpu_now=190,
            conditions=[
                k.condition(
                    "AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size"
                ),
                k.condition(
                    "ScalingLimited",
                    "True",
                    "TooManyReplicas",
                    "the desired replica count is more than the maximum replica count",
                ),
            ],
        ),
        k.pdb("web-pdb", ns, selector={"app": "web"}, min_available=2, current=1, desired=2, expected=2),
        k.quota(
            "compute",
            ns,
            hard={"requests.cpu": "2", "pods": "10"},
            used={"requests.cpu": "1900m", "pods": "9"},
        ),
        k.limit_range("caps", ns, max_={"memory": "512Mi"}),
        k.network_policy(
            "deny-egress",
            ns,
            pod_selector={"app": "web"},
            egress=[
                {
                    "to": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                            },
                            "podSelector": {
                                "matchExpressions": [
                                    {"key": "k8s-app", "operator": "In", "values": ["kube-dns"]}
                                ]
                            },
                        }
                    ],
                    "ports": [{"protocol": "UDP", "port": 53}],
                },
                {
                    "to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.96.0.0/12"]}}],
                    "ports": [{"port": 5432, "endPort": 5440}],
                },
            ],
        ),
        k.secret("shop-tls", ns),
    ]


def test_each_kind_parses_into_its_typed_form() -> None:
    ev = make_evidence(_all_kinds("shop"))
    (job,) = ev.jobs
    assert job.failed == 3 and job.backoff_limit == 2 and job.meta.controller is not None
    assert job.failed_condition is not None and job.failed_condition.reason == "BackoffLimitExceeded"
    assert job.template.containers[0].requests == {"cpu": "250m"}
    (cj,) = ev.cronjobs
    assert (
        cj.active == ("nightly-29001",) and cj.schedule == "*/5 * * * *" and cj.concurrency_policy == "Forbid"
    )
    (ing,) = ev.ingresses
    assert ing.class_name == "nginx" and ing.tls[0].secret_name == "shop-tls"
    assert [(p.path, str(p.backend)) for p in ing.rules[0].paths] == [
        ("/", "service web:8080"),
        ("/api", "service api:http"),
    ]
    assert ing.default_backend is not None and ing.default_backend.port_number == 80
    (ic,) = ev.ingress_classes
    assert ic.is_default and ic.controller == "k8s.io/ingress-nginx"
    (h,) = ev.hpas
    assert (h.target_kind, h.target_name, h.max_replicas, h.current_replicas) == ("Deployment", "web", 4, 4)
    assert [(m.name, m.target, m.current) for m in h.metrics] == [("cpu", "80%", "190%")]
    limited = h.condition("ScalingLimited")
    assert limited is not None and limited.reason == "TooManyReplicas"
    (p,) = ev.pdbs
    assert p.selector is not None and p.selector.matches({"app": "web", "x": "y"}) and p.min_available == 2
    (q,) = ev.resource_quotas
    assert q.used["requests.cpu"] == "1900m" and q.hard["pods"] == "10"
    (lr,) = ev.limit_ranges
    assert lr.limits[0].max == {"memory": "512Mi"} and lr.limits[0].type == "Container"
    (np,) = ev.network_policies
    assert np.policy_types == ("Ingress", "Egress")  # the API's default when egress rules are given
    dns_peer = np.egress[0].peers[0]
    assert dns_peer.pod_selector is not None and dns_peer.pod_selector.matches({"k8s-app": "kube-dns"})
    assert not dns_peer.pod_selector.matches({"k8s-app": "coredns"})
    assert (
        np.egress[1].peers[0].ip_block_except == ("10.96.0.0/12",) and np.egress[1].ports[0].end_port == 5440
    )
    (s,) = ev.secrets
    assert ev.secret_exists("shop", "shop-tls") and not ev.secret_exists("shop", "other")
    assert s.meta.labels == {} and s.meta.annotations == {}
    assert SECRET_VALUE not in repr(ev)
    assert ev.namespaces == ("shop",)


def test_writing_back_gives_the_same_values() -> None:
    ev = make_evidence(_all_kinds("payments"))
    kept = (
        ev.jobs
        + ev.cronjobs
        + ev.ingresses
        + ev.ingress_classes
        + ev.hpas
        + ev.pdbs  # type: ignore[operator]
        + ev.resource_quotas
        + ev.limit_ranges
        + ev.network_policies
        + ev.secrets
    )
    assert len(kept) == 10
    for obj in kept:
        manifest = to_manifest(obj)
        assert parse_object(json.loads(json.dumps(manifest))) == obj, manifest
    secret = to_manifest(ev.secrets[0])
    assert secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "shop-tls", "namespace": "payments"},
    }


def test_older_api_versions_still_read() -> None:
    # autoscaling/v1 keeps its conditions in an annotation; networking v1beta1 spells backends flat.
    conditions = [
        {
            "type": "ScalingActive",
            "status": "False",
            "reason": "FailedGetResourceMetric",
            "message": "the HPA was unable to compute the replica count: failed to get cpu utilization: "
            "missing request for cpu in container app of Pod api-6d9f-x2",
        }
    ]
    v1 = {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": "api",
            "namespace": "edge",
            "annotations": {"autoscaling.alpha.kubernetes.io/conditions": json.dumps(conditions)},
        },
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "api"},
            "maxReplicas": 3,
            "targetCPUUtilizationPercentage": 60,
        },
        "status": {"currentReplicas": 1, "desiredReplicas": 1},
    }
    beta = {
        "apiVersion": "networking.k8s.io/v1beta1",
        "kind": "Ingress",
        "metadata": {
            "name": "old",
            "namespace": "edge",
            "annotations": {"kubernetes.io/ingress.class": "traefik"},
        },
        "spec": {
            "rules": [
                {
                    "host": "a.example",
                    "http": {
                        "paths": [{"path": "/", "backend": {"serviceName": "legacy", "servicePort": 8000}}]
                    },
                }
            ]
        },
    }
    ev = make_evidence([v1, beta])
    (h,) = ev.hpas
    active = h.condition("ScalingActive")
    assert active is not None and active.reason == "FailedGetResourceMetric"
    assert h.metrics[0].target == "60%"
    (ing,) = ev.ingresses
    assert ing.class_name == "traefik" and ing.rules[0].paths[0].backend.port_number == 8000


def test_a_pdb_without_selector_differs_from_an_empty_one() -> None:
    ev = make_evidence(
        [
            k.pdb("none", "x", selector=None, min_available=1),
            {
                **k.pdb("all", "x", selector=None, min_available=1),
                "spec": {"selector": {}, "minAvailable": 1},
            },
        ]
    )
    none, every = ev.pdbs
    assert none.selector is None
    assert every.selector is not None and every.selector.is_empty and every.selector.matches({"any": "pod"})
    assert parse_object(to_manifest(every)) == every


@pytest.mark.parametrize(
    ("obj", "problem"),
    [
        (
            {"kind": "Job", "metadata": {"name": "j", "namespace": "a"}, "status": {"failed": "many"}},
            "failed",
        ),
        ({"kind": "Ingress", "metadata": {"name": "i", "namespace": "a"}, "spec": {"rules": "x"}}, "rules"),
        (
            {
                "kind": "HorizontalPodAutoscaler",
                "metadata": {
                    "name": "h",
                    "namespace": "a",
                    "annotations": {"autoscaling.alpha.kubernetes.io/conditions": "{not json"},
                },
                "spec": {},
            },
            "conditions",
        ),
    ],
)
def test_a_wrong_field_type_names_the_object(obj: dict[str, Any], problem: str) -> None:
    with pytest.raises(ObjectError, match=rf"a/{obj['kind']}/.*{problem}"):
        parse_object(obj)


def _kinds_in(ev: Evidence) -> dict[str, int]:
    return {
        "jobs": len(ev.jobs),
        "cronjobs": len(ev.cronjobs),
        "ingresses": len(ev.ingresses),
        "ingress_classes": len(ev.ingress_classes),
        "hpas": len(ev.hpas),
        "pdbs": len(ev.pdbs),
        "resource_quotas": len(ev.resource_quotas),
        "limit_ranges": len(ev.limit_ranges),
        "network_policies": len(ev.network_policies),
        "secrets": len(ev.secrets),
    }


def test_bundles_hold_the_kinds_and_secret_names_only(tmp_path: Path) -> None:
    ev = make_evidence(_all_kinds("shop"))
    root = write_bundle(ev, tmp_path / "b")
    text = "".join(p.read_text() for p in root.rglob("*.yaml"))
    assert SECRET_VALUE not in text and "last-applied" not in text
    again = read_bundle(root)
    assert _kinds_in(again) == _kinds_in(ev) == dict.fromkeys(_kinds_in(ev), 1)
    for field in (
        "jobs",
        "cronjobs",
        "ingresses",
        "ingress_classes",
        "hpas",
        "pdbs",
        "network_policies",
        "secrets",
    ):
        assert getattr(again, field) == getattr(ev, field), field
    assert (root / "shop" / "secrets.yaml").is_file() and (root / "cluster" / "ingressclasses.yaml").is_file()


def test_a_bundle_secret_with_data_is_read_as_a_name(tmp_path: Path) -> None:
    # A user pasted `kubectl get secret -o yaml` into a bundle: pitcrew keeps the name, writes only it.
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "s.json").write_text(json.dumps(k.secret("db-creds", "billing")))
    ev = read_bundle(tmp_path / "in")
    assert ev.secret_exists("billing", "db-creds")
    out = write_bundle(ev, tmp_path / "out")
    assert SECRET_VALUE not in (out / "billing" / "secrets.yaml").read_text()


async def test_live_collection_lists_each_kind_once_per_namespace(kube: KubeHarness, tmp_path: Path) -> None:
    kube.seed(_all_kinds("shop") + _all_kinds("ops"))
    async with kube.cluster() as cluster:
        ev = await cluster.collect(Scope(("shop", "ops")))
    assert not ev.errors, ev.errors
    counts = _kinds_in(ev)
    assert counts == {**dict.fromkeys(counts, 2), "ingress_classes": 1}
    for resource in (
        "jobs",
        "cronjobs",
        "ingresses",
        "networkpolicies",
        "horizontalpodautoscalers",
        "poddisruptionbudgets",
        "resourcequotas",
        "limitranges",
        "secrets",
    ):
        for ns in ("shop", "ops"):
            assert kube.count(verb="list", resource=resource, namespace=ns) == 1, (resource, ns)
    assert kube.count(verb="list", resource="ingressclasses") == 1
    assert kube.count(resource="secrets") == 2 and kube.count(resource="secrets", verb="get") == 0
    # Secrets were asked for as metadata only, and nothing of their data arrived.
    assert kube.secret_accepts == [METADATA_ONLY, METADATA_ONLY]
    assert SECRET_VALUE not in repr(ev)
    assert ev.secret_exists("ops", "shop-tls")
    (h,) = [x for x in ev.hpas if x.meta.namespace == "ops"]
    assert h.condition("ScalingLimited") is not None
    # And the saved bundle holds the same kinds.
    again = read_bundle(write_bundle(ev, tmp_path / "saved"))
    assert _kinds_in(again) == counts
    assert SECRET_VALUE not in "".join(p.read_text() for p in (tmp_path / "saved").rglob("*.yaml"))


async def test_a_forbidden_kind_is_a_coverage_line(kube: KubeHarness) -> None:
    kube.seed(_all_kinds("shop"))
    kube.forbid("secrets")
    kube.forbid("ingressclasses")
    async with kube.cluster() as cluster:
        ev = await cluster.collect(Scope(("shop",)))
    assert [e for e in ev.errors if "secrets" in e or "ingressclasses" in e] == [
        "cannot list ingressclasses: forbidden",
        "cannot list secrets in shop: forbidden",
    ]
    assert ev.unlisted("secrets", "shop") and ev.unlisted("ingressclasses")
    assert not ev.secrets and len(ev.jobs) == 1  # the rest is collected


async def test_an_api_group_the_cluster_does_not_serve_is_a_coverage_line(kube: KubeHarness) -> None:
    kube.seed(_all_kinds("shop"))
    kube.not_served("autoscaling", "v2")
    kube.not_served("policy", "v1")
    async with kube.cluster() as cluster:
        ev = await cluster.collect(Scope(("shop",)))
    assert sorted(ev.errors) == [
        "cannot list horizontalpodautoscalers in shop: not found",
        "cannot list poddisruptionbudgets in shop: not found",
    ]
    assert ev.unlisted("horizontalpodautoscalers", "shop") and not ev.hpas and not ev.pdbs
    assert len(ev.ingresses) == 1
