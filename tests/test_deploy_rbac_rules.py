"""The pure RBAC semantics the deploy RBAC test relies on: request attributes from HTTP, rule matching,
bindings, missing and unused grants. Table-driven, no cluster."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.deploy import (
    ApiCall,
    bound_rules,
    call_from_http,
    rule_grants,
    ungranted,
    unused_grants,
)


@pytest.mark.parametrize(
    ("method", "url", "expected"),
    [
        ("GET", "/api/v1/namespaces/monitoring/pods", ApiCall("list", "", "pods")),
        ("GET", "/api/v1/namespaces/monitoring/pods?watch=true", ApiCall("watch", "", "pods")),
        ("GET", "/api/v1/namespaces/monitoring/pods/prometheus-0", ApiCall("get", "", "pods")),
        (
            "GET",
            "/api/v1/namespaces/monitoring/pods/loki-0/log?container=loki&previous=true",
            ApiCall("get", "", "pods", "log"),
        ),
        ("DELETE", "/api/v1/namespaces/monitoring/pods/loki-0", ApiCall("delete", "", "pods")),
        ("DELETE", "/api/v1/namespaces/monitoring/pods", ApiCall("deletecollection", "", "pods")),
        (
            "POST",
            "/api/v1/namespaces/monitoring/pods/loki-0/eviction",
            ApiCall("create", "", "pods", "eviction"),
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/monitoring/statefulsets/prometheus?dryRun=All",
            ApiCall("patch", "apps", "statefulsets"),
        ),
        ("PUT", "/api/v1/namespaces/monitoring/configmaps/loki-config", ApiCall("update", "", "configmaps")),
        (
            "GET",
            "/apis/discovery.k8s.io/v1/namespaces/monitoring/endpointslices",
            ApiCall("list", "discovery.k8s.io", "endpointslices"),
        ),
        (
            "GET",
            "/api/v1/namespaces/monitoring/services/prometheus:9090/proxy/-/healthy",
            ApiCall("get", "", "services", "proxy"),
        ),
        ("GET", "/api/v1/nodes", ApiCall("list", "", "nodes", namespaced=False)),
        ("GET", "/api/v1/persistentvolumes/pv-1", ApiCall("get", "", "persistentvolumes", namespaced=False)),
        (
            "GET",
            "/apis/storage.k8s.io/v1/storageclasses",
            ApiCall("list", "storage.k8s.io", "storageclasses", namespaced=False),
        ),
        ("GET", "/api/v1/pods", ApiCall("list", "", "pods", namespaced=False)),  # all namespaces
        ("GET", "/api/v1/namespaces/monitoring", ApiCall("get", "", "namespaces", namespaced=False)),
        ("GET", "/api/v1/namespaces", ApiCall("list", "", "namespaces", namespaced=False)),
        ("GET", "http://127.0.0.1:6443/api/v1/namespaces/m/events", ApiCall("list", "", "events")),
        ("GET", "/api", None),
        ("GET", "/api/v1", None),
        ("GET", "/apis/apps/v1", None),
        ("GET", "/version", None),
    ],
)
def test_call_from_http(method: str, url: str, expected: ApiCall | None) -> None:
    assert call_from_http(method, url) == expected


@pytest.mark.parametrize(("method", "url"), [("GET", "/foo/bar"), ("OPTIONS", "/api/v1/namespaces/m/pods")])
def test_call_from_http_rejects_what_is_not_an_api_request(method: str, url: str) -> None:
    with pytest.raises(ValueError):
        call_from_http(method, url)


LOGS = {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}
PODS = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]}
APPS = {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["patch"]}


@pytest.mark.parametrize(
    ("rule", "call", "granted"),
    [
        (PODS, ApiCall("get", "", "pods"), True),
        (PODS, ApiCall("delete", "", "pods"), True),
        (PODS, ApiCall("list", "", "pods"), False),  # verb
        (PODS, ApiCall("get", "apps", "pods"), False),  # group
        (PODS, ApiCall("get", "", "pods", "log"), False),  # `pods` does not cover its subresources
        (LOGS, ApiCall("get", "", "pods", "log"), True),
        (LOGS, ApiCall("get", "", "pods"), False),
        (APPS, ApiCall("patch", "apps", "statefulsets"), True),
        (APPS, ApiCall("patch", "apps", "deployments"), False),
        (APPS, ApiCall("patch", "", "statefulsets"), False),
        ({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, ApiCall("delete", "x", "y", "z"), True),
        (
            {"apiGroups": [""], "resources": ["*/log"], "verbs": ["get"]},
            ApiCall("get", "", "pods", "log"),
            True,
        ),
        (
            {"apiGroups": [""], "resources": ["pods/*"], "verbs": ["get"]},
            ApiCall("get", "", "pods", "log"),
            True,
        ),
        ({"apiGroups": [""], "resources": ["pods/*"], "verbs": ["get"]}, ApiCall("get", "", "pods"), False),
        (
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"], "resourceNames": ["a"]},
            ApiCall("get", "", "pods"),
            False,
        ),
        ({"nonResourceURLs": ["/metrics"], "verbs": ["get"]}, ApiCall("get", "", "pods"), False),
    ],
)
def test_rule_grants(rule: dict[str, Any], call: ApiCall, granted: bool) -> None:
    assert rule_grants(rule, call) is granted


def _objects(role_rules: list[dict[str, Any]], cluster_rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sa = [{"kind": "ServiceAccount", "name": "pitcrew", "namespace": "pitcrew"}]
    ref = "rbac.authorization.k8s.io"
    return [
        {"kind": "Role", "metadata": {"name": "r", "namespace": "monitoring"}, "rules": role_rules},
        {
            "kind": "RoleBinding",
            "metadata": {"name": "r", "namespace": "monitoring"},
            "roleRef": {"apiGroup": ref, "kind": "Role", "name": "r"},
            "subjects": sa,
        },
        {"kind": "ClusterRole", "metadata": {"name": "c"}, "rules": cluster_rules},
        {
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "c"},
            "roleRef": {"apiGroup": ref, "kind": "ClusterRole", "name": "c"},
            "subjects": sa,
        },
        # Bound to someone else: must not count.
        {
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "other"},
            "roleRef": {"apiGroup": ref, "kind": "ClusterRole", "name": "c"},
            "subjects": [{"kind": "ServiceAccount", "name": "other", "namespace": "pitcrew"}],
        },
    ]


NODES = {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}


def test_bound_rules_follow_the_bindings_of_the_service_account() -> None:
    bound = bound_rules(_objects([PODS], [NODES]), "pitcrew", "pitcrew")
    assert [(b.namespace, b.rules) for b in bound] == [("monitoring", (PODS,)), (None, (NODES,))]
    assert bound_rules(_objects([PODS], [NODES]), "pitcrew", "nobody") == []


def test_a_binding_to_a_missing_role_is_an_error() -> None:
    objects = [o for o in _objects([PODS], [NODES]) if o["kind"] != "Role"]
    with pytest.raises(AssertionError, match="missing"):
        bound_rules(objects, "pitcrew", "pitcrew")


def test_ungranted_checks_scope_and_every_monitored_namespace() -> None:
    bound = bound_rules(_objects([PODS], [NODES]), "pitcrew", "pitcrew")
    calls = [
        ApiCall("get", "", "pods"),  # granted in monitoring
        ApiCall("list", "", "nodes", namespaced=False),  # granted cluster-wide
        ApiCall("get", "", "pods", namespaced=False),  # a Role never grants cluster-wide
        ApiCall("get", "", "pods", "log"),  # nothing grants it
    ]
    assert ungranted(calls, bound, ["monitoring"]) == [
        ApiCall("get", "", "pods", namespaced=False),
        ApiCall("get", "", "pods", "log"),
    ]
    # A second monitored namespace without its own Role: every namespaced call is missing there.
    assert ApiCall("get", "", "pods") in ungranted(calls, bound, ["monitoring", "logging"])
    # Cluster-wide grants cover namespaced calls too.
    bound_wide = bound_rules(_objects([], [NODES, LOGS]), "pitcrew", "pitcrew")
    assert ungranted([ApiCall("get", "", "pods", "log")], bound_wide, ["monitoring"]) == []


def test_unused_grants_names_each_grant_no_call_needs() -> None:
    bound = bound_rules(_objects([PODS, LOGS], [NODES]), "pitcrew", "pitcrew")
    calls = [
        ApiCall("get", "", "pods"),
        ApiCall("get", "", "pods", "log"),
        ApiCall("list", "", "nodes", namespaced=False),
    ]
    assert unused_grants(calls, bound) == [
        "RoleBinding monitoring/r -> Role r: grants unused delete core/pods in a namespace"
    ]
    # A namespaced call does not use a cluster-wide grant of the same thing.
    wide = bound_rules(_objects([], [PODS]), "pitcrew", "pitcrew")
    assert len(unused_grants([ApiCall("get", "", "pods"), ApiCall("delete", "", "pods")], wide)) == 2


def test_wildcard_rules_are_reported_as_unprovable() -> None:
    bound = bound_rules(
        _objects([{"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}], []), "pitcrew", "pitcrew"
    )
    (problem,) = unused_grants([ApiCall("get", "", "pods")], bound)
    assert "cannot be proven used" in problem
