"""Helpers for the deploy/ tests: render the kustomize base, decide what RBAC rules grant, and (as a
pytest plugin) note which client made each request to the emulated API server.

The RBAC part is pure and mirrors the API server's RBAC authorizer (`rbac/v1` PolicyRule semantics):
a request is (verb, API group, resource, subresource, namespaced?) and a rule grants it when the verb,
the group and the resource (spelled `resource/subresource` for subresources) each match, `*` matching
anything. Request attributes are derived from an HTTP request the way the API server derives them
(`GET` on a collection is `list`, `?watch=true` is `watch`, `DELETE` on a collection is `deletecollection`).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kmock
import pytest
import yaml

from tests.support.kube import ApiCall as RecordedCall
from tests.support.kube import KubeHarness

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"
# The kubectl of the Google Cloud CLI has kustomize built in; Debian's kubernetes-client is too old.
KUBECTL = "/usr/bin/kubectl"

RBAC_GROUP = "rbac.authorization.k8s.io"


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def kubectl_path() -> str:
    found = shutil.which("kubectl")
    if Path(KUBECTL).exists():
        return KUBECTL
    if found is None:
        raise RuntimeError("kubectl (with built-in kustomize) is not installed")
    return found


def render(directory: Path = DEPLOY_DIR) -> list[dict[str, Any]]:
    """`kubectl kustomize DIR`, parsed: one dict per rendered object. Raises with kubectl's stderr."""
    proc = subprocess.run(
        [kubectl_path(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed: {proc.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc is not None]


def find(objects: Iterable[Mapping[str, Any]], kind: str, name: str | None = None) -> list[Mapping[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def only(objects: Iterable[Mapping[str, Any]], kind: str, name: str | None = None) -> Mapping[str, Any]:
    found = find(objects, kind, name)
    if len(found) != 1:
        raise AssertionError(f"expected exactly one {kind} {name or ''}, found {len(found)}")
    return found[0]


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class ApiCall:
    """What RBAC decides on: one resource request's attributes (names and namespaces left out)."""

    verb: str
    group: str  # "" is the core group
    resource: str
    subresource: str = ""
    namespaced: bool = True  # False: a cluster-scoped object, or a list across all namespaces

    def spelled(self) -> str:
        res = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = "in a namespace" if self.namespaced else "cluster-wide"
        return f"{self.verb} {self.group or 'core'}/{res} {where}"


_COLLECTION_VERBS = {"GET": "list", "POST": "create", "DELETE": "deletecollection"}
_ITEM_VERBS = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete", "POST": "create"}


def call_from_http(method: str, url: str) -> ApiCall | None:
    """The RBAC attributes of an HTTP request to the API server, or None for a non-resource path
    (discovery such as `/api`, `/apis/apps/v1`, `/version`, which every authenticated user may read).

    Raises ValueError for a path that is not a Kubernetes API path at all.
    """
    split = urlsplit(url)
    parts = [p for p in split.path.split("/") if p]
    query = parse_qs(split.query)
    if not parts or parts[0] not in ("api", "apis"):
        if parts and parts[0] in ("version", "healthz", "readyz", "livez", "openapi"):
            return None
        raise ValueError(f"not a Kubernetes API path: {split.path!r}")
    if parts[0] == "api":
        group, rest = "", parts[2:] if len(parts) >= 2 else []
    else:
        if len(parts) < 3:
            return None  # /apis or /apis/<group>: discovery
        group, rest = parts[1], parts[3:]
    if not rest:
        return None  # /api/v1, /apis/<group>/<version>: discovery

    namespaced = False
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespaced, rest = True, rest[2:]
    resource, name, subresource = (
        rest[0],
        (rest[1] if len(rest) > 1 else ""),
        (rest[2] if len(rest) > 2 else ""),
    )
    method = method.upper()
    verb = _ITEM_VERBS.get(method) if name else _COLLECTION_VERBS.get(method)
    if verb is None:
        raise ValueError(f"unexpected {method} on {split.path!r}")
    if method == "GET" and query.get("watch", ["false"])[0] in ("true", "1"):
        verb = "watch"
    return ApiCall(verb=verb, group=group, resource=resource, subresource=subresource, namespaced=namespaced)


# ---------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------


def rule_grants(rule: Mapping[str, Any], call: ApiCall) -> bool:
    """Whether one rbac/v1 PolicyRule grants the call (resourceNames-restricted rules never grant a
    name-less call: pitcrew's calls are recorded without names, so such a rule could not be proven used)."""
    if rule.get("nonResourceURLs") or rule.get("resourceNames"):
        return False
    verbs = rule.get("verbs") or []
    groups = rule.get("apiGroups") or []
    resources = rule.get("resources") or []
    if "*" not in verbs and call.verb not in verbs:
        return False
    if "*" not in groups and call.group not in groups:
        return False
    if "*" in resources:
        return True
    if call.subresource:
        wanted = {f"{call.resource}/{call.subresource}", f"*/{call.subresource}", f"{call.resource}/*"}
        return bool(wanted & set(resources))
    return call.resource in resources


def atomic_grants(rule: Mapping[str, Any]) -> set[tuple[str, str, str, str]]:
    """Every (verb, group, resource, subresource) a wildcard-free rule grants."""
    out: set[tuple[str, str, str, str]] = set()
    for verb in rule.get("verbs") or []:
        for group in rule.get("apiGroups") or []:
            for spelled in rule.get("resources") or []:
                resource, _, subresource = spelled.partition("/")
                out.add((verb, group, resource, subresource))
    return out


def has_wildcard(rule: Mapping[str, Any]) -> bool:
    """`*` anywhere, including `pods/*` and `*/log` resource spellings."""
    return any("*" in item for key in ("verbs", "apiGroups", "resources") for item in rule.get(key) or [])


@dataclass(frozen=True)
class BoundRules:
    """The rules of one role as bound to the service account: in one namespace, or cluster-wide."""

    binding: str  # "RoleBinding monitoring/pitcrew" etc., for messages
    namespace: str | None  # None: a ClusterRoleBinding (cluster-wide)
    rules: tuple[Mapping[str, Any], ...]


def bound_rules(objects: Sequence[Mapping[str, Any]], sa_namespace: str, sa_name: str) -> list[BoundRules]:
    """The rules bound to ServiceAccount sa_namespace/sa_name by the rendered objects' bindings.
    Raises AssertionError for a binding whose role is not among the objects (it would grant nothing here
    but might grant something in the cluster)."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects}
    out: list[BoundRules] = []
    for binding in objects:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        subjects = binding.get("subjects") or []
        if not any(
            s.get("kind") == "ServiceAccount"
            and s.get("name") == sa_name
            and s.get("namespace") == sa_namespace
            for s in subjects
        ):
            continue
        ref = binding["roleRef"]
        namespace = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        role_namespace = namespace if ref["kind"] == "Role" else None
        role = roles.get((ref["kind"], role_namespace, ref["name"]))
        if role is None:
            raise AssertionError(f"{binding['kind']} {binding['metadata']['name']} refers to missing {ref}")
        where = f"{namespace}/" if namespace else ""
        described = f"{binding['kind']} {where}{binding['metadata']['name']} -> {ref['kind']} {ref['name']}"
        out.append(
            BoundRules(
                binding=described,
                namespace=namespace,
                rules=tuple(role.get("rules") or ()),
            )
        )
    return out


def ungranted(
    calls: Iterable[ApiCall], bound: Sequence[BoundRules], monitored_namespaces: Sequence[str]
) -> list[ApiCall]:
    """Calls the bound rules do not grant. A namespaced call must be granted in EVERY monitored namespace
    (pitcrew makes the same calls in each); a cluster-wide call only by a ClusterRoleBinding."""
    missing: list[ApiCall] = []
    for call in sorted(set(calls)):
        cluster_wide = any(b.namespace is None and any(rule_grants(r, call) for r in b.rules) for b in bound)
        if cluster_wide:
            continue
        if not call.namespaced or not monitored_namespaces:
            missing.append(call)
            continue
        for namespace in monitored_namespaces:
            if not any(
                b.namespace == namespace and any(rule_grants(r, call) for r in b.rules) for b in bound
            ):
                missing.append(call)
                break
    return missing


def unused_grants(calls: Iterable[ApiCall], bound: Sequence[BoundRules]) -> list[str]:
    """Atomic grants no call needs: a namespaced grant unused by every namespaced call, a cluster-wide grant
    unused by every cluster-wide call (granting pods cluster-wide when pitcrew lists them per namespace is
    too much). Rules with wildcards are reported whole, since they cannot be proven used."""
    calls = set(calls)
    out: list[str] = []
    for b in bound:
        scope_calls = [c for c in calls if c.namespaced == (b.namespace is not None)]
        for rule in b.rules:
            if has_wildcard(rule) or rule.get("nonResourceURLs") or rule.get("resourceNames"):
                out.append(f"{b.binding}: rule {dict(rule)} cannot be proven used")
                continue
            for verb, group, resource, subresource in sorted(atomic_grants(rule)):
                probe = ApiCall(verb, group, resource, subresource, b.namespace is not None)
                if probe not in scope_calls:
                    out.append(f"{b.binding}: grants unused {probe.spelled()}")
    return out


# ---------------------------------------------------------------------------------------------
# Which client made each request (plugin; registered in tests/conftest.py)
# ---------------------------------------------------------------------------------------------
#
# tests/support/kube.py records every request the emulator serves, including the ones a test makes
# itself with raw HTTP to check the emulator (a PUT, a dry-run DELETE). RBAC is about pitcrew's calls
# only, and all of them go through the `kubernetes` client in bot/cluster.py, which identifies itself by
# its User-Agent. So each `kube` harness gets an observer (kube.py's hook that sees every request, before
# any middleware can answer it) noting the User-Agent beside the call; the RBAC test keeps the calls whose
# User-Agent is the one pitcrew's own loop was seen using.


@dataclass(frozen=True)
class ClientCall:
    call: RecordedCall
    user_agent: str


@dataclass
class ClientCallLog:
    calls: list[ClientCall] = field(default_factory=list)


CLIENT_CALLS = pytest.StashKey[ClientCallLog]()


def client_call_log(config: pytest.Config) -> ClientCallLog:
    return config.stash.setdefault(CLIENT_CALLS, ClientCallLog())


def _user_agent_observer(log: ClientCallLog) -> Callable[[RecordedCall, kmock.Request | None], None]:
    def note_user_agent(call: RecordedCall, request: kmock.Request | None) -> None:
        headers = (
            {} if request is None else {str(k).lower(): str(v) for k, v in dict(request.headers).items()}
        )
        log.calls.append(ClientCall(call, headers.get("user-agent", "")))

    return note_user_agent


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    value = yield
    if isinstance(value, KubeHarness):
        value.observers.append(_user_agent_observer(client_call_log(request.config)))
    return value


@pytest.fixture
def kube_client_calls(pytestconfig: pytest.Config) -> ClientCallLog:
    """Every request of the session to a `kube` harness so far, with the client's User-Agent."""
    return client_call_log(pytestconfig)
