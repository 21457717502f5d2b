"""Make the kmock Kubernetes emulator write like a real API server, for remediation tests.

kmock 0.8 stores objects and applies JSON Patch, but it is simpler than kube-apiserver exactly where
the executor's safety depends on the server. `install_write_semantics(kube)` adds middlewares to the
diagnosis engineer's harness (tests/support/kube.py) so that, like the real API server:

- a JSON Patch whose `test` op fails answers HTTP 422 (Invalid) and changes nothing
  (kmock: HTTP 500 after its own handling);
- `dryRun=All` on PATCH / PUT / POST / DELETE answers with the full result and persists nothing
  (kmock: ignores it and applies the change);
- every persisted write that changes an object gets a new `metadata.resourceVersion` (a no-op patch
  does not), a spec change bumps `metadata.generation`, create sets `uid`, `resourceVersion` and
  `creationTimestamp`, and uid/creationTimestamp cannot be changed (kmock: none of these);
- a PATCH or PUT whose body carries a `metadata.resourceVersion` other than the stored one answers
  HTTP 409 (Conflict) (kmock: PUT on an object is not served at all);
- `GET .../services/NAME:PORT/proxy/PATH` is forwarded to the URL registered in
  `WriteSemantics.service_backends`, like the API server's service proxy (kmock: 404).
Each point has a test in tests/test_remediate_kube_writes.py.

Also here: the `kube_writes` fixture (harness + these semantics + the seed incident bundle), and
`Kubelet`, which plays the StatefulSet controller and the kubelet in tests: it re-creates deleted
pods with a new uid, Ready or never Ready, and fills the Service's Endpoints when they are Ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import itertools
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import jsonpatch
import kmock
import pytest_asyncio
from kmock._internal import dicts

from tests.support.kube import RESOURCES, KubeHarness

SEED_BUNDLE = Path(__file__).resolve().parents[2] / "examples" / "seed-incident"


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _without_versions(obj: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(obj))
    out.get("metadata", {}).pop("resourceVersion", None)
    out.get("metadata", {}).pop("generation", None)
    return out


def live_object(
    harness: KubeHarness, kind: str, name: str, namespace: str | None = None
) -> dict[str, Any] | None:
    """The emulator's current state of an object (a plain copy), or None if absent or deleted.

    (`KubeHarness.object` looks the key up with the resource as a string, which kmock's
    `ObjectsArray.__contains__` does not parse, so it always answers None; this parses it first.)"""
    plural, namespaced = RESOURCES[kind]
    key = (kmock.resource(plural), namespace if namespaced else None, name)
    objects = harness.emulator.objects
    if key not in objects or objects[key].deleted:
        return None
    return copy.deepcopy(dict(objects[key].raw))


def _status_error(status: int, reason: str, message: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=status, reason=reason, message=message, details={})


def _method(request: kmock.Request) -> str:
    return str(request.method.value if hasattr(request.method, "value") else request.method).upper()


class WriteSemantics:
    """The middleware (see module docstring). `before_write` (optional) runs inside the write, just
    before the change is checked and applied: tests use it to make a concurrent edit land between the
    executor's read and its patch, exactly where only the server can catch it."""

    def __init__(self, harness: KubeHarness) -> None:
        self.harness = harness
        self.service_backends: dict[tuple[str, str], str] = {}
        self.before_write: Any = None
        self._versions = itertools.count(1000)

    def next_rv(self) -> str:
        return str(next(self._versions))

    async def __call__(
        self, request: kmock.Request, harness: KubeHarness
    ) -> aiohttp.web.StreamResponse | None:
        if request.resource is None:
            return None
        method = _method(request)
        dry_run = dict(request.params).get("dryRun") == "All"
        if request.name is not None and request.subresource and request.subresource.startswith("proxy"):
            return await self._proxy(request)
        if request.name is not None and request.subresource is None:
            if method == "PATCH":
                return await self._write(request, dry_run, replace=False)
            if method == "PUT":
                return await self._write(request, dry_run, replace=True)
            if method == "DELETE" and dry_run:
                current = self._current(request)
                if current is None:
                    raise kmock.KubernetesObjectNotFoundError()
                return aiohttp.web.json_response(current)
        if request.name is None and method == "POST" and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _now())
            meta["resourceVersion"] = self.next_rv()
            meta.setdefault("generation", 1)
            if dry_run:
                return aiohttp.web.json_response(request.data, status=201)
        return None

    def _key(self, request: kmock.Request) -> tuple[Any, str | None, str]:
        assert request.resource is not None and request.name is not None
        return (request.resource, request.namespace, request.name)

    def _current(self, request: kmock.Request) -> dict[str, Any] | None:
        key = self._key(request)
        objects = self.harness.emulator.objects
        if key not in objects or objects[key].deleted:
            return None
        return copy.deepcopy(dict(objects[key].raw))

    async def _write(
        self, request: kmock.Request, dry_run: bool, *, replace: bool
    ) -> aiohttp.web.StreamResponse:
        emulator = self.harness.emulator
        async with emulator._lock:  # one write at a time, like etcd's compare-and-swap
            if self.before_write is not None:
                hook, self.before_write = self.before_write, None
                hook(request)
            old = self._current(request)
            if old is None:
                raise kmock.KubernetesObjectNotFoundError()
            content_type = dict(request.headers).get("Content-Type", "")
            try:
                if replace:
                    new = copy.deepcopy(request.data) if isinstance(request.data, dict) else {}
                elif "json-patch" in content_type:
                    new = jsonpatch.apply_patch(copy.deepcopy(old), list(request.data or []), in_place=False)
                else:  # merge / strategic merge: kmock's recursive merge
                    new = dict(dicts.merge_patch_dict(copy.deepcopy(old), request.data or {}))
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise _status_error(422, "Invalid", f"the server rejected our request: {exc}") from None
            sent_rv = (new.get("metadata") or {}).get("resourceVersion")
            old_rv = old.get("metadata", {}).get("resourceVersion")
            if sent_rv is not None and sent_rv != old_rv:
                plural = request.resource.plural if request.resource is not None else "objects"
                raise _status_error(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {plural} "{request.name}": the object has been '
                    "modified; please apply your changes to the latest version and try again",
                )
            meta = new.setdefault("metadata", {})
            for immutable in ("uid", "creationTimestamp", "name", "namespace"):
                if immutable in old.get("metadata", {}):
                    meta[immutable] = old["metadata"][immutable]
            if _without_versions(new) == _without_versions(old):
                return aiohttp.web.json_response(old)  # a no-op write: nothing stored, same version
            meta["resourceVersion"] = old_rv if dry_run else self.next_rv()
            generation = int(old.get("metadata", {}).get("generation") or 1)
            plural = request.resource.plural if request.resource is not None else ""
            meta["generation"] = (
                generation + 1 if plural != "pods" and new.get("spec") != old.get("spec") else generation
            )
            if not dry_run:
                emulator.objects[self._key(request)].create(new)  # appends a version to kmock's history
        return aiohttp.web.json_response(new)

    async def _proxy(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        service = (request.name or "").split(":", 1)[0]
        backend = self.service_backends.get((request.namespace or "", service))
        if backend is None:
            raise _status_error(503, "ServiceUnavailable", f'no endpoints available for service "{service}"')
        path = (request.subresource or "").removeprefix("proxy") or "/"
        async with (
            aiohttp.ClientSession() as session,
            session.get(backend.rstrip("/") + path, params=dict(request.params)) as response,
        ):
            body = await response.read()
            return aiohttp.web.Response(body=body, status=response.status, content_type=response.content_type)


def install_write_semantics(harness: KubeHarness) -> WriteSemantics:
    semantics = WriteSemantics(harness)
    harness.middlewares.append(semantics)
    return semantics


# ---------------------------------------------------------------------------------------------
# The controller and kubelet, played by the test
# ---------------------------------------------------------------------------------------------


def _ready_pod(template: Mapping[str, Any], *, ready: bool) -> dict[str, Any]:
    pod = copy.deepcopy(dict(template))
    meta = pod["metadata"]
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = _now()
    meta.pop("deletionTimestamp", None)
    status = "True" if ready else "False"
    containers = [c["name"] for c in pod.get("spec", {}).get("containers", [])]
    pod["status"] = {
        "phase": "Running",
        "podIP": "10.244.0.230",
        "startTime": _now(),
        "conditions": [
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": status},
            {"type": "ContainersReady", "status": status},
            {"type": "PodScheduled", "status": "True"},
        ],
        "containerStatuses": [
            {
                "name": name,
                "ready": ready,
                "restartCount": 0,
                "image": name,
                "started": True,
                "state": {"running": {"startedAt": _now()}},
            }
            for name in containers
        ],
    }
    return pod


class Kubelet:
    """Re-creates the watched pods when deleted (new uid; Ready or never Ready), and when Ready puts
    them in their Service's Endpoints. A background task for the duration of an `async with`."""

    def __init__(self, harness: KubeHarness, semantics: WriteSemantics, *, ready: bool) -> None:
        self.harness = harness
        self.semantics = semantics
        self.ready = ready
        self.recreated: list[str] = []
        self._templates: dict[tuple[str, str], dict[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, namespace: str, name: str) -> None:
        pod = live_object(self.harness, "Pod", name, namespace)
        assert pod is not None, f"no pod {namespace}/{name} to watch"
        self._templates[(namespace, name)] = pod

    async def __aenter__(self) -> Kubelet:
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _loop(self) -> None:
        while True:
            for (namespace, name), template in self._templates.items():
                if live_object(self.harness, "Pod", name, namespace) is not None:
                    continue
                pod = _ready_pod(template, ready=self.ready)
                pod["metadata"]["resourceVersion"] = self.semantics.next_rv()
                self.harness.seed([pod])
                self.recreated.append(f"{namespace}/{name}")
                self._fresh_logs(namespace, pod)
                if self.ready:
                    self._add_endpoint(namespace, pod)
            await asyncio.sleep(0.02)

    def _add_endpoint(self, namespace: str, pod: Mapping[str, Any]) -> None:
        app = pod["metadata"].get("labels", {}).get("app", "")
        endpoints = live_object(self.harness, "Endpoints", app, namespace)
        if endpoints is None:
            return
        ports = [p for subset in endpoints.get("subsets") or () for p in subset.get("ports") or ()]
        endpoints["subsets"] = [
            {
                "addresses": [
                    {
                        "ip": pod["status"]["podIP"],
                        "targetRef": {"kind": "Pod", "name": pod["metadata"]["name"]},
                    }
                ],
                "ports": ports or [{"port": 80, "name": "http"}],
            }
        ]
        endpoints["metadata"]["resourceVersion"] = self.semantics.next_rv()
        self.harness.seed([endpoints])

    def _fresh_logs(self, namespace: str, pod: Mapping[str, Any]) -> None:
        """A new pod has new containers: no previous logs, and only what they wrote since starting."""
        name = pod["metadata"]["name"]
        for key in [k for k in self.harness.logs if k[0] == namespace and k[1] == name]:
            del self.harness.logs[key]
        line = (
            'level=info msg="Server is ready to receive web requests."'
            if self.ready
            else (
                'level=error msg="opening storage failed: lock DB directory: open /prometheus/lock: '
                'permission denied"'
            )
        )
        for container in pod.get("spec", {}).get("containers", []):
            self.harness.logs[(namespace, name, container["name"], False)] = [line]


@pytest_asyncio.fixture
async def kube_writes(kube: KubeHarness) -> AsyncIterator[tuple[KubeHarness, WriteSemantics]]:
    """The `kube` harness seeded with the seed incident bundle, writing like a real API server."""
    semantics = install_write_semantics(kube)
    kube.seed_bundle(SEED_BUNDLE)
    yield kube, semantics
