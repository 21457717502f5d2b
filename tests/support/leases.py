"""coordination.k8s.io/v1 Leases on the kmock emulator, with the API server's concurrency rules.

kmock 0.8 has no Lease semantics: it serves no PUT, lets a POST overwrite an existing object and keeps
no resourceVersion. `install_leases(kube)` adds one middleware to the harness (tests/support/kube.py)
that serves `.../namespaces/NS/leases[/NAME]` itself, like kube-apiserver:

- GET NAME: the Lease, or 404 NotFound;
- POST: create; 409 AlreadyExists if the name exists; sets uid, creationTimestamp, resourceVersion;
- PUT NAME: replace the spec; 409 Conflict when the body's metadata.resourceVersion is not the stored
  one (compare-and-swap, what leader election relies on); 404 if missing; every write a new version;
- DELETE NAME.
All of it under one lock (etcd's serialisation). `LeaseServer.before_write` (a one-shot hook, called
inside the lock just before a write is checked) lets a test land a competing write exactly between a
replica's read and its write; `LeaseServer.fail_next` answers the next N Lease requests with 503 (an
API server outage). `writes` counts the writes that were applied, by holder.
Requests are still recorded in `kube.calls` (the RBAC test sees them).
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import itertools
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp.web
import kmock
import pytest_asyncio

from tests.support.kube import KubeHarness

LEASES = "coordination.k8s.io/v1/leases"


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    return aiohttp.web.json_response(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        },
        status=code,
    )


class LeaseServer:
    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: Counter[str] = Counter()  # applied writes by spec.holderIdentity ("" = released)
        self.conflicts = 0  # writes refused with 409
        self.before_write: Callable[[LeaseServer, str, str], None] | None = None
        self.fail_next = 0
        self._lock = asyncio.Lock()
        self._versions = itertools.count(1)

    def holder(self, namespace: str, name: str) -> str | None:
        lease = self.leases.get((namespace, name))
        return None if lease is None else lease.get("spec", {}).get("holderIdentity")

    def put(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Write a Lease directly (a competing writer), bumping its resourceVersion."""
        lease = self.leases.get((namespace, name)) or {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": _now(),
            },
        }
        lease = copy.deepcopy(lease)
        lease["spec"] = copy.deepcopy(spec)
        lease["metadata"]["resourceVersion"] = str(next(self._versions))
        self.leases[(namespace, name)] = lease
        return lease

    async def __call__(
        self, request: kmock.Request, harness: KubeHarness
    ) -> aiohttp.web.StreamResponse | None:
        resource = request.resource
        if resource is None or (resource.group, resource.plural) != ("coordination.k8s.io", "leases"):
            return None
        method = str(request.method.value if hasattr(request.method, "value") else request.method).upper()
        namespace, name = request.namespace or "", request.name
        if self.fail_next > 0:
            self.fail_next -= 1
            return _status(503, "ServiceUnavailable", "etcdserver: request timed out")
        async with self._lock:
            if method == "GET" and name:
                lease = self.leases.get((namespace, name))
                if lease is None:
                    return _status(404, "NotFound", f'leases.coordination.k8s.io "{name}" not found')
                return aiohttp.web.json_response(lease)
            if method == "POST":
                body = request.data if isinstance(request.data, dict) else {}
                name = str((body.get("metadata") or {}).get("name") or "")
                if self.before_write is not None:
                    hook, self.before_write = self.before_write, None
                    hook(self, namespace, name)
                if (namespace, name) in self.leases:
                    self.conflicts += 1
                    return _status(
                        409, "AlreadyExists", f'leases.coordination.k8s.io "{name}" already exists'
                    )
                lease = self.put(namespace, name, dict(body.get("spec") or {}))
                self.writes[lease["spec"].get("holderIdentity", "")] += 1
                return aiohttp.web.json_response(lease, status=201)
            if method == "PUT" and name:
                if self.before_write is not None:
                    hook, self.before_write = self.before_write, None
                    hook(self, namespace, name)
                stored = self.leases.get((namespace, name))
                if stored is None:
                    return _status(404, "NotFound", f'leases.coordination.k8s.io "{name}" not found')
                body = request.data if isinstance(request.data, dict) else {}
                sent = (body.get("metadata") or {}).get("resourceVersion")
                if sent is not None and sent != stored["metadata"]["resourceVersion"]:
                    self.conflicts += 1
                    return _status(
                        409,
                        "Conflict",
                        f'Operation cannot be fulfilled on leases.coordination.k8s.io "{name}": the object'
                        " has been modified; please apply your changes to the latest version and try again",
                    )
                lease = self.put(namespace, name, dict(body.get("spec") or {}))
                self.writes[lease["spec"].get("holderIdentity", "")] += 1
                return aiohttp.web.json_response(lease)
            if method == "DELETE" and name:
                if self.leases.pop((namespace, name), None) is None:
                    return _status(404, "NotFound", f'leases.coordination.k8s.io "{name}" not found')
                return aiohttp.web.json_response({"kind": "Status", "status": "Success"})
        return _status(405, "MethodNotAllowed", f"{method} on leases is not served by the test emulator")


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def install_leases(harness: KubeHarness) -> LeaseServer:
    server = LeaseServer()
    harness.emulator.resources[LEASES] = kmock.ResourceInfo(
        kind="Lease", namespaced=True, verbs={"get", "create", "update", "delete"}
    )
    # First: nothing else (write semantics, kmock itself) may answer a Lease request.
    harness.middlewares.insert(0, server)
    return server


@pytest_asyncio.fixture
async def kube_leases(kube: KubeHarness) -> AsyncIterator[tuple[KubeHarness, LeaseServer]]:
    yield kube, install_leases(kube)
