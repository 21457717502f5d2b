"""A real Kubernetes API over a real socket for tests: kmock's `KubernetesEmulator` on 127.0.0.1.

Fixtures:
- `kube` (async, per test): a `KubeHarness` with a running emulator, a kubeconfig file pointing at it,
  and every API request recorded in `kube.calls`.
- `kube_api_calls` (session): the union of the calls of every `kube` in the session. At session end it
  is written as JSON lines to `$PITCREW_API_CALLS_FILE` when that variable is set (the deploy RBAC
  test checks that the ServiceAccount's Role allows every call the suite made).

Using it:
    async def test_x(kube):
        kube.seed_bundle("examples/seed-incident")      # or kube.seed([obj, ...]); kube.logs[...] = [...]
        async with kube.cluster() as cluster:           # bot.cluster.Cluster via the kubeconfig
            evidence = await cluster.collect(Scope(("monitoring",)))
        assert kube.count(verb="list", resource="pods") == 1

Extending the emulator (hook point): `kube.middlewares` is an ordered list of
`async def middleware(request: kmock.Request, harness: KubeHarness) -> aiohttp.web.StreamResponse | None`.
Each runs before the emulator touches its store (so a dry run or a failed JSON Patch `test` can answer
without the change being applied); the first one returning a response answers the request, or one can
raise `kmock.KubernetesError(status=..., reason=..., message=...)` to answer with a Kubernetes Status.
Returning None passes the request on. To only watch requests (e.g. note the User-Agent), append a
`def observer(call: ApiCall, request: kmock.Request | None) -> None` to `kube.observers`: observers
see every request, before any middleware (a 403 from `forbid`, a dry run) can answer it.
Built in: the pod log middleware (serves `kube.logs`), the Secrets middleware (serves metadata-only
lists as the API server does and refuses any other read of Secrets; `kube.secret_accepts` records the
`Accept` of each request), list pagination (`limit` + `continue`, as the API server pages a list;
kmock alone answers every item at once), `kube.forbid(...)` (answers 403 for a verb/resource/namespace) and
`kube.not_served(group, version)` (answers 404 for an API group the cluster does not serve).
`tests/support/kube_writes.py` (the remediation engineer's) adds dry-run, JSON Patch `test` and
resourceVersion-conflict middlewares.
Seeded objects get `metadata.resourceVersion` "1" and a uid when they have none.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import pytest
import pytest_asyncio
import yaml

from bot.cluster import Cluster, CollectOptions
from bot.evidence import Evidence, LogKey
from bot.k8s_objects import build_evidence, parse_host_facts, parse_object, parse_time
from bot.snapshot import read_bundle_raw

# kind -> (resource as kmock spells it "group/version/plural" ("v1/pods" for core), namespaced)
RESOURCES: Mapping[str, tuple[str, bool]] = {
    "Pod": ("v1/pods", True),
    "Event": ("v1/events", True),
    "Service": ("v1/services", True),
    "Endpoints": ("v1/endpoints", True),
    "ConfigMap": ("v1/configmaps", True),
    "Secret": ("v1/secrets", True),
    "PersistentVolumeClaim": ("v1/persistentvolumeclaims", True),
    "PersistentVolume": ("v1/persistentvolumes", False),
    "Node": ("v1/nodes", False),
    "Namespace": ("v1/namespaces", False),
    "StatefulSet": ("apps/v1/statefulsets", True),
    "Deployment": ("apps/v1/deployments", True),
    "DaemonSet": ("apps/v1/daemonsets", True),
    "ReplicaSet": ("apps/v1/replicasets", True),
    "EndpointSlice": ("discovery.k8s.io/v1/endpointslices", True),
    "StorageClass": ("storage.k8s.io/v1/storageclasses", False),
    "Job": ("batch/v1/jobs", True),
    "CronJob": ("batch/v1/cronjobs", True),
    "Ingress": ("networking.k8s.io/v1/ingresses", True),
    "IngressClass": ("networking.k8s.io/v1/ingressclasses", False),
    "NetworkPolicy": ("networking.k8s.io/v1/networkpolicies", True),
    "HorizontalPodAutoscaler": ("autoscaling/v2/horizontalpodautoscalers", True),
    "PodDisruptionBudget": ("policy/v1/poddisruptionbudgets", True),
    "ResourceQuota": ("v1/resourcequotas", True),
    "LimitRange": ("v1/limitranges", True),
}

# `Accept` of a metadata-only list, as the API server understands it.
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


@dataclass(frozen=True)
class ApiCall:
    """One request as RBAC sees it: `verb` on `group`/`resource`[/`subresource`] in `namespace`."""

    method: str
    path: str
    verb: str  # get | list | watch | create | update | patch | delete | deletecollection
    group: str  # "" for the core API
    resource: str  # plural, e.g. "pods"; "" for non-resource URLs such as /version
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "verb": self.verb,
            "group": self.group,
            "resource": self.resource,
            "subresource": self.subresource,
            "namespace": self.namespace,
            "name": self.name,
            "dry_run": self.dry_run,
        }


def describe_request(request: kmock.Request) -> ApiCall:
    method = str(request.method.value if hasattr(request.method, "value") else request.method).upper()
    params = dict(request.params)
    name = request.name or ""
    if method == "GET" and request.resource is None:
        verb = "get"  # a non-resource URL such as /version
    elif method == "GET":
        verb = "watch" if params.get("watch") in ("true", "1") else ("get" if name else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, "")
        if method == "DELETE":
            verb = "delete" if name else "deletecollection"
        verb = verb or method.lower()
    resource = request.resource
    return ApiCall(
        method=method,
        path=request.url.path,
        verb=verb,
        group=(resource.group or "") if resource is not None else "",
        resource=(resource.plural or "") if resource is not None else "",
        subresource=request.subresource or "",
        namespace=request.namespace or "",
        name=name,
        dry_run="dryRun" in params,
    )


Middleware = Callable[[kmock.Request, "KubeHarness"], Awaitable[aiohttp.web.StreamResponse | None]]


@attrs.define(kw_only=True)
class RecordingEmulator(kmock.KubernetesEmulator):
    """The emulator plus a request log and a middleware chain run before its own handling."""

    harness: KubeHarness | None = None

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        harness = self.harness
        if harness is not None:
            harness.record(describe_request(request), request)
            for middleware in list(harness.middlewares):
                response = await middleware(request, harness)
                if response is not None:
                    return response
        return await super()._handle(request)


class ApiCallCollector:
    """Session-wide union of API calls (see module docstring)."""

    def __init__(self) -> None:
        self.calls: list[ApiCall] = []

    def add(self, call: ApiCall) -> None:
        self.calls.append(call)

    def write(self, path: str | os.PathLike[str]) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            for call in self.calls:
                fh.write(json.dumps(call.to_json(), sort_keys=True) + "\n")


class KubeHarness:
    def __init__(
        self, emulator: RecordingEmulator, url: str, workdir: Path, session: ApiCallCollector | None
    ) -> None:
        self.emulator = emulator
        self.url = url
        self.calls: list[ApiCall] = []
        self.logs: dict[tuple[str, str, str, bool], list[str]] = {}
        self.middlewares: list[Middleware] = [
            serve_version,
            serve_pod_logs,
            serve_secrets_metadata_only,
            serve_list_pages,
        ]
        # The `Accept` header of every request on Secrets (see serve_secrets_metadata_only).
        self.secret_accepts: list[str] = []
        # Called for every request before any middleware can answer it (see the module docstring).
        self.observers: list[Callable[[ApiCall, kmock.Request | None], None]] = []
        self._session = session
        self.kubeconfig = workdir / "kubeconfig.yaml"
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "emulator", "cluster": {"server": url}}],
                    "users": [{"name": "tester", "user": {"token": "test-token"}}],
                    "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}],
                    "current-context": "emulator",
                }
            ),
            encoding="utf-8",
        )
        for kind, (resource, namespaced) in RESOURCES.items():
            # Declared up front, so listing a kind with no objects answers an empty list, not 404.
            self.emulator.resources[resource] = kmock.ResourceInfo(
                kind=kind, namespaced=namespaced, verbs={"get", "list", "watch", "create", "patch", "delete"}
            )

    # -- recording ------------------------------------------------------------------------------

    def record(self, call: ApiCall, request: kmock.Request | None = None) -> None:
        self.calls.append(call)
        if self._session is not None:
            self._session.add(call)
        for observe in list(self.observers):
            observe(call, request)

    def count(self, **match: str) -> int:
        return sum(1 for c in self.calls if all(getattr(c, k) == v for k, v in match.items()))

    def reset_calls(self) -> None:
        self.calls.clear()

    # -- seeding --------------------------------------------------------------------------------

    def seed(self, objects: Iterable[Mapping[str, Any]]) -> None:
        for obj in objects:
            kind = str(obj.get("kind") or "")
            if kind not in RESOURCES:
                continue
            resource, namespaced = RESOURCES[kind]
            data = json.loads(json.dumps(obj))  # a private, plain copy
            meta = data.setdefault("metadata", {})
            meta.setdefault("resourceVersion", "1")
            meta.setdefault("uid", str(uuid.uuid4()))
            namespace = meta.get("namespace") if namespaced else None
            if namespaced and not namespace:
                raise ValueError(f"{kind} {meta.get('name')!r} has no namespace")
            self.emulator.objects[resource, namespace, meta["name"]] = data

    def seed_bundle(self, directory: str | os.PathLike[str]) -> None:
        """Objects and logs of a diagnostic bundle (bot.snapshot layout)."""
        raw = read_bundle_raw(directory)
        self.seed(obj for _, obj in raw.objects)
        for key, lines in raw.logs.items():
            self.logs[(key.namespace, key.pod, key.container, key.previous)] = list(lines)

    def object(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The emulator's current state of an object (a plain copy), or None."""
        resource, namespaced = RESOURCES[kind]
        # kmock's ObjectsArray only matches a parsed resource in its keys, not the "v1/pods" string.
        key = (kmock.resource(resource), namespace if namespaced else None, name)
        if key not in self.emulator.objects:
            return None
        obj = self.emulator.objects[key]
        if obj.deleted:
            return None
        plain: dict[str, Any] = json.loads(json.dumps(obj.raw))
        return plain

    # -- behaviours -----------------------------------------------------------------------------

    def forbid(self, resource: str, *, namespace: str | None = None, verb: str | None = None) -> None:
        """Answer 403 Forbidden (as the API server words it) for matching requests."""

        async def forbidden(
            request: kmock.Request, harness: KubeHarness
        ) -> aiohttp.web.StreamResponse | None:
            call = describe_request(request)
            if call.resource != resource or (namespace is not None and call.namespace != namespace):
                return None
            if verb is not None and call.verb != verb:
                return None
            where = f' in the namespace "{call.namespace}"' if call.namespace else " at the cluster scope"
            message = (
                f'{resource} is forbidden: User "system:serviceaccount:monitoring:pitcrew" cannot '
                f'{call.verb} resource "{resource}" in API group "{call.group}"{where}'
            )
            raise kmock.KubernetesError(status=403, reason="Forbidden", message=message, details={})

        self.middlewares.insert(0, forbidden)

    def not_served(self, group: str, version: str) -> None:
        """Answer 404 for every request in API `group`/`version`, as a cluster that does not serve it
        (an old cluster without autoscaling/v2, policy/v1 or batch/v1 CronJobs)."""

        async def missing(request: kmock.Request, harness: KubeHarness) -> aiohttp.web.StreamResponse | None:
            resource = request.resource
            if resource is None or (resource.group or "") != group or resource.version != version:
                return None
            raise kmock.KubernetesError(
                status=404,
                reason="NotFound",
                message="the server could not find the requested resource",
                details={},
            )

        self.middlewares.insert(0, missing)

    # -- clients --------------------------------------------------------------------------------

    def cluster(self, **options: Any) -> Cluster:
        """Our adapter, connected through the kubeconfig (the real client, over HTTP)."""
        return Cluster.connect(kubeconfig=str(self.kubeconfig), options=CollectOptions(**options))


async def serve_version(request: kmock.Request, harness: KubeHarness) -> aiohttp.web.StreamResponse | None:
    """`/version/` as the official client asks for it (the emulator only knows `/version`)."""
    if request.url.path.rstrip("/") != "/version":
        return None
    return aiohttp.web.json_response({"major": "1", "minor": "30", "gitVersion": "v1.30.0-kmock"})


async def serve_pod_logs(request: kmock.Request, harness: KubeHarness) -> aiohttp.web.StreamResponse | None:
    """`GET .../pods/<name>/log?container=&previous=&tailLines=&limitBytes=` from `harness.logs`, like
    the kubelet: 400 when a previous instance is asked for and there is none."""
    if request.subresource != "log" or request.resource is None or request.resource.plural != "pods":
        return None
    params = dict(request.params)
    previous = params.get("previous") in ("true", "1")
    key = (request.namespace or "", request.name or "", params.get("container", ""), previous)
    lines = harness.logs.get(key)
    if lines is None and previous:
        raise kmock.KubernetesError(
            status=400,
            reason="BadRequest",
            message=f'previous terminated container "{key[2]}" in pod "{key[1]}" not found',
            details={},
        )
    lines = lines or []
    tail = params.get("tailLines")
    if tail and tail.isdigit():
        lines = lines[-int(tail) :] if int(tail) else []
    body = "".join(line + "\n" for line in lines).encode("utf-8")
    limit = params.get("limitBytes")
    if limit and limit.isdigit():
        body = body[: int(limit)]  # the kubelet stops after limitBytes, mid-line if need be
    return aiohttp.web.Response(body=body, content_type="text/plain")


async def serve_secrets_metadata_only(
    request: kmock.Request, harness: KubeHarness
) -> aiohttp.web.StreamResponse | None:
    """Secrets as pitcrew may read them: a list with the metadata-only `Accept`, answered like the API
    server does (a PartialObjectMetadataList: metadata, no data). Any other request on Secrets is
    refused with 403, so a regression that would read Secret data fails the test that makes it."""
    if request.resource is None or request.resource.plural != "secrets":
        return None
    accept = request.headers.get("Accept", "")
    harness.secret_accepts.append(accept)
    call = describe_request(request)
    if call.verb != "list" or "as=PartialObjectMetadataList" not in accept.replace(" ", ""):
        raise kmock.KubernetesError(
            status=403,
            reason="Forbidden",
            message=f"test emulator: secrets are listed metadata-only (got {call.verb}, Accept {accept!r})",
            details={},
        )
    items = [
        {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": json.loads(json.dumps(obj.raw.get("metadata", {}))),
        }
        for (resource, namespace, _), obj in harness.emulator.objects.items()
        if getattr(resource, "plural", None) == "secrets"
        and not obj.deleted
        and (not call.namespace or namespace == call.namespace)
    ]
    return aiohttp.web.json_response(
        {
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": "1"},
            "items": items,
        }
    )


async def serve_list_pages(request: kmock.Request, harness: KubeHarness) -> aiohttp.web.StreamResponse | None:
    """A list with `?limit=N` answers N items and a `continue` token with `remainingItemCount`, like
    the API server; items come in the emulator's own order (the order they were seeded), as they do
    without `limit`, and the token is the offset reached (base64). Without `limit` the emulator
    answers the whole list itself. A token that does not decode is 410 Gone ("Expired")."""
    params = dict(request.params)
    limit = params.get("limit", "")
    if (
        request.resource is None
        or request.name
        or str(request.method.value if hasattr(request.method, "value") else request.method).upper() != "GET"
        or params.get("watch") in ("true", "1")
        or not limit.isdigit()
        or int(limit) <= 0
    ):
        return None
    start = 0
    token = params.get("continue", "")
    if token:
        try:
            start = int(json.loads(base64.urlsafe_b64decode(token.encode()))["offset"])
        except (ValueError, TypeError, KeyError):
            raise kmock.KubernetesError(
                status=410, reason="Expired", message="The provided continue parameter is too old", details={}
            ) from None
    matching = [
        obj
        for (resource, namespace, _), obj in harness.emulator.objects.items()
        if resource == request.resource
        and (request.namespace is None or namespace == request.namespace)
        and not obj.deleted
    ]
    end = start + int(limit)
    metadata: dict[str, Any] = {"resourceVersion": "1"}
    if end < len(matching):
        metadata["continue"] = base64.urlsafe_b64encode(json.dumps({"offset": end}).encode()).decode()
        metadata["remainingItemCount"] = len(matching) - end
    items = [obj.raw for obj in matching[start:end]]
    page = {"apiVersion": "v1", "kind": "List", "metadata": metadata, "items": items}
    return aiohttp.web.json_response(page)


@pytest.fixture(scope="session")
def kube_api_calls() -> Iterator[ApiCallCollector]:
    collector = ApiCallCollector()
    yield collector
    target = os.environ.get("PITCREW_API_CALLS_FILE")
    if target:
        collector.write(target)


@pytest_asyncio.fixture
async def kube(tmp_path: Path, kube_api_calls: ApiCallCollector) -> AsyncIterator[KubeHarness]:
    emulator = RecordingEmulator()
    async with emulator, kmock.Server(emulator) as server:
        harness = KubeHarness(emulator, str(server.url).rstrip("/"), tmp_path, kube_api_calls)
        emulator.harness = harness
        yield harness


# ---------------------------------------------------------------------------------------------
# Object builders: kubectl-shaped dicts for handler tests (and for seeding the emulator).
# ---------------------------------------------------------------------------------------------

T0 = "2025-10-09T22:00:00Z"  # "now" of the evidence built by tests (newest timestamp wins)


def container(
    name: str,
    image: str,
    *,
    args: Iterable[str] = (),
    command: Iterable[str] = (),
    mounts: Iterable[tuple[str, str]] = (),
    ports: Iterable[tuple[str, int]] = (),
    readiness: dict[str, Any] | None = None,
    memory_limit: str | None = None,
    security_context: dict[str, Any] | None = None,
    env: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": image}
    if command:
        c["command"] = list(command)
    if args:
        c["args"] = list(args)
    if mounts:
        c["volumeMounts"] = [{"name": n, "mountPath": p} for n, p in mounts]
    if ports:
        c["ports"] = [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in ports]
    if readiness:
        c["readinessProbe"] = readiness
    if memory_limit:
        c["resources"] = {"limits": {"memory": memory_limit}, "requests": {"memory": memory_limit}}
    if security_context:
        c["securityContext"] = security_context
    if env:
        c["env"] = list(env)
    return c


def running(
    name: str,
    *,
    ready: bool,
    restarts: int = 0,
    started: str = "2025-10-09T21:00:00Z",
    last: dict[str, Any] | None = None,
) -> dict[str, Any]:
    s: dict[str, Any] = {
        "name": name,
        "ready": ready,
        "restartCount": restarts,
        "state": {"running": {"startedAt": started}},
    }
    if last:
        s["lastState"] = {"terminated": last}
    return s


def waiting(
    name: str, reason: str, *, restarts: int = 0, message: str = "", last: dict[str, Any] | None = None
) -> dict[str, Any]:
    state: dict[str, Any] = {"reason": reason}
    if message:
        state["message"] = message
    s: dict[str, Any] = {"name": name, "ready": False, "restartCount": restarts, "state": {"waiting": state}}
    if last:
        s["lastState"] = {"terminated": last}
    return s


def terminated(
    exit_code: int = 1, reason: str = "Error", finished: str = "2025-10-09T21:58:00Z"
) -> dict[str, Any]:
    return {"exitCode": exit_code, "reason": reason, "startedAt": finished, "finishedAt": finished}


def pod(
    name: str,
    namespace: str,
    *,
    labels: Mapping[str, str],
    containers: list[dict[str, Any]],
    statuses: list[dict[str, Any]],
    owner: tuple[str, str] | None = None,
    volumes: list[dict[str, Any]] | None = None,
    node: str = "node-a",
    phase: str = "Running",
    security_context: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    ready = all(s.get("ready") for s in statuses) and phase == "Running"
    spec: dict[str, Any] = {"containers": containers}
    if node:
        spec["nodeName"] = node
    if volumes:
        spec["volumes"] = volumes
    if security_context is not None:
        spec["securityContext"] = security_context
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": dict(labels),
        "resourceVersion": "100",
    }
    if owner:
        meta["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "controller": True}
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": spec,
        "status": {
            "phase": phase,
            "startTime": "2025-10-09T20:00:00Z",
            "conditions": conditions
            if conditions is not None
            else [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": "2025-10-09T20:00:00Z",
                }
            ],
            "containerStatuses": statuses,
        },
    }


def workload(
    kind: str,
    name: str,
    namespace: str,
    *,
    labels: Mapping[str, str],
    spec: dict[str, Any],
    replicas: int = 1,
    ready: int = 0,
    rv: str = "7",
) -> dict[str, Any]:
    """A StatefulSet/Deployment/DaemonSet whose template is `spec` (a pod spec)."""
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels), "resourceVersion": rv},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels)}, "spec": json.loads(json.dumps(spec))},
        },
        "status": {"replicas": replicas, "readyReplicas": ready},
    }


def pvc(
    name: str,
    namespace: str,
    *,
    volume: str = "",
    phase: str = "Bound",
    storage_class: str | None = "standard",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}
    if volume:
        spec["volumeName"] = volume
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
        "status": {"phase": phase},
    }


def pv(
    name: str, *, claim: tuple[str, str], local_path: str = "", node: str = "", csi: bool = False
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "capacity": {"storage": "10Gi"},
        "claimRef": {"namespace": claim[0], "name": claim[1]},
    }
    if local_path:
        spec["local"] = {"path": local_path}
    if csi:
        spec["csi"] = {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}
    if node:
        spec["nodeAffinity"] = {
            "required": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
                        ]
                    }
                ]
            }
        }
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": spec,
        "status": {"phase": "Bound"},
    }


def configmap(name: str, namespace: str, data: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "55"},
        "data": dict(data),
    }


def service(name: str, namespace: str, selector: Mapping[str, str], *, port: int = 80) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": dict(selector),
            "ports": [{"port": port, "targetPort": port, "protocol": "TCP"}],
            "type": "ClusterIP",
        },
    }


def endpoints(
    name: str, namespace: str, *, ready: Iterable[str] = (), not_ready: Iterable[str] = ()
) -> dict[str, Any]:
    subset: dict[str, Any] = {}
    if ready:
        subset["addresses"] = [
            {"ip": f"10.0.0.{i}", "targetRef": {"kind": "Pod", "name": p}} for i, p in enumerate(ready, 1)
        ]
    if not_ready:
        subset["notReadyAddresses"] = [
            {"ip": f"10.0.1.{i}", "targetRef": {"kind": "Pod", "name": p}} for i, p in enumerate(not_ready, 1)
        ]
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": namespace},
        "subsets": [subset] if subset else [],
    }


def event(
    involved: tuple[str, str, str],
    reason: str,
    message: str,
    *,
    type_: str = "Warning",
    count: int = 5,
    last: str = "2025-10-09T21:59:00Z",
) -> dict[str, Any]:
    kind, namespace, name = involved
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{name}.{abs(hash((reason, message))) % 10**8}", "namespace": namespace},
        "involvedObject": {"kind": kind, "name": name, "namespace": namespace},
        "reason": reason,
        "message": message,
        "type": type_,
        "count": count,
        "firstTimestamp": "2025-10-09T21:00:00Z",
        "lastTimestamp": last,
    }


def node(
    name: str, *, ready: str = "True", reason: str = "KubeletReady", message: str = ""
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": ready,
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": "2025-10-09T21:00:00Z",
                }
            ]
        },
    }


def make_evidence(
    objects: Iterable[Mapping[str, Any]],
    *,
    logs: Mapping[tuple[str, str, str, bool], Iterable[str]] | None = None,
    hosts: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
    observed_at: str = T0,
    errors: Iterable[str] = (),
) -> Evidence:
    """Evidence from kubectl-shaped dicts through the real parser (as a bundle or the collector would)."""
    parsed = [p for p in (parse_object(o) for o in objects) if p is not None]
    return build_evidence(
        parsed,
        logs={LogKey(*k): tuple(v) for k, v in (logs or {}).items()},
        hosts=[parse_host_facts(h, {"paths": list(paths)}) for h, paths in (hosts or {}).items()],
        observed_at=parse_time(observed_at),
        errors=errors,
    )
