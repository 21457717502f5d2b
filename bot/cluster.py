"""The Kubernetes adapter: the only module that imports `kubernetes`.

`Cluster` is an async facade over the official client. The client is synchronous (urllib3), so each
call runs in a worker thread via `asyncio.to_thread`, behind a semaphore that bounds how many run at
once. Why threads and not kubernetes_asyncio: the product card ships the official `kubernetes`
package (its config loading, in-cluster auth and token refresh are the reference implementation), and
a handful of bounded, time-limited calls per diagnosis gains nothing from a second client stack.

Reads never deserialise into the client's models: those validate strictly and reject the partial
objects real clusters and bundles contain. Every read asks for the raw JSON (`_preload_content=False`)
and hands plain dicts to `bot.k8s_objects`, the one parser shared with the bundle reader.

Shape of the class (the remediation engineer adds write methods in the marked section at the end):
- `Cluster(api_client, settings)`; `Cluster.connect(...)` / `Cluster.from_config(config)` build one;
  `await cluster.close()` (or `async with`).
- `self._run(fn, *args, **kwargs)`: run one blocking client call in a thread, bounded and with
  `_request_timeout` added. Raises `ClusterError` (with `.status`, `.temporary`) on failure.
- `self._json(fn, *args, **kwargs)`: `_run` with `_preload_content=False`, returns the parsed JSON.
- `self.core` (CoreV1Api), `self.apps` (AppsV1Api), `self.discovery`, `self.storage` API objects.
- read side: `ping()`, `collect(scope)`, `get_object(ref)`, `list_pods(namespace)`, `read_log(...)`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeVar

from bot.evidence import (
    ConfigMap,
    Evidence,
    LogKey,
    Node,
    PersistentVolume,
    PersistentVolumeClaim,
    Pod,
    Scope,
    Workload,
    paused_gc,
)
from bot.k8s_objects import ObjectError, ParsedObject, build_evidence, parse_object
from bot.model import ObjectRef
from bot.redact import redact_lines

log = logging.getLogger(__name__)

T = TypeVar("T")


def _kubernetes() -> Any:
    """The client package, imported on first use, not with this module: it is ~30 MiB of RSS and
    0.7 s of import (every API model) that an idle service, or a bundle diagnosis, never needs.
    Typed Any: the package is untyped, and this keeps strict mypy everywhere else."""
    import kubernetes.client
    import kubernetes.config

    return kubernetes


def _api_exception() -> type[Exception]:
    from kubernetes.client.exceptions import ApiException

    exc_type: type[Exception] = ApiException
    return exc_type


def _config_source(use_in_cluster: bool, kubeconfig: str | None, exc: Exception) -> str:
    """What could not be loaded, and why, in words a user can act on: the client's own message for a
    missing file ("Invalid kube-config file. No configuration found.") does not say which file."""
    if use_in_cluster:
        return f"in-cluster service account: {exc}"
    if kubeconfig:
        where = f"kubeconfig {kubeconfig}"
    elif os.environ.get("KUBECONFIG"):
        kubeconfig = os.environ["KUBECONFIG"]
        where = f"kubeconfig {kubeconfig} (from $KUBECONFIG)"
    else:
        kubeconfig = "~/.kube/config"
        # Not "--kubeconfig": `serve` has no such flag; these two work for every verb.
        where = "kubeconfig ~/.kube/config (the default; set cluster.kubeconfig or $KUBECONFIG)"
    if os.pathsep not in kubeconfig and not os.path.exists(os.path.expanduser(kubeconfig)):
        return f"{where}: no such file"
    return f"{where}: {exc}"


class ClusterError(Exception):
    """A failed API call. `temporary` says whether retrying can help (timeouts, 5xx, 429);
    `unreachable` that no HTTP answer came at all (refused, timed out, TLS, not HTTP), and the
    message then reads "cannot reach the Kubernetes API at URL: REASON"."""

    def __init__(
        self, message: str, *, status: int | None = None, temporary: bool = False, unreachable: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.temporary = temporary
        self.unreachable = unreachable


def _transport_reason(exc: BaseException) -> str:
    """Why no HTTP answer came, in a few words (urllib3 wraps the cause in MaxRetryError, whose text
    repeats the pool, the URL and the cause: unreadable in a terminal or a chat message)."""
    import urllib3.exceptions  # only once a call failed: the client (and urllib3) is loaded lazily

    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    text = str(exc)
    if isinstance(exc, urllib3.exceptions.NameResolutionError):
        return "the server name does not resolve"
    # NewConnectionError is a ConnectTimeoutError subclass in urllib3 2: test it first.
    if isinstance(exc, urllib3.exceptions.NewConnectionError | ConnectionError):
        if "refused" in text.lower() or isinstance(exc, ConnectionRefusedError):
            return "connection refused"
        match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
        return match.group(1).strip().lower() if match else "cannot connect"
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return "connection timed out"
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError | TimeoutError):
        return "no answer (timed out)"
    if isinstance(exc, urllib3.exceptions.SSLError):
        match = re.search(r"\[SSL: [A-Z_]+\] ([^(]+)|certificate verify failed: ([^(]+)", text)
        detail = next((g.strip() for g in match.groups() if g), "") if match else ""
        return "TLS handshake failed" + (f" ({detail})" if detail else "")
    if isinstance(exc, urllib3.exceptions.ProtocolError):
        if "BadStatusLine" in text or "BadStatusLine" in repr(exc.args):
            return "the answer is not HTTP (is this the API server's address?)"
        return "the connection was closed without an answer"
    return f"{type(exc).__name__}: {text}"[:200]


class ClusterSettings(Protocol):
    """The `cluster` config section as this adapter reads it (bot.config owns the real class)."""

    @property
    def kubeconfig(self) -> str | None: ...
    @property
    def context(self) -> str | None: ...
    @property
    def in_cluster(self) -> bool | str: ...
    @property
    def namespaces(self) -> Any: ...
    @property
    def request_timeout_seconds(self) -> float: ...
    @property
    def log_tail_lines(self) -> int: ...
    @property
    def log_concurrency(self) -> int: ...


@dataclass(frozen=True)
class CollectOptions:
    request_timeout_seconds: float = 10.0
    log_tail_lines: int = 100
    log_concurrency: int = 4
    api_concurrency: int = 8  # calls in flight at once (worker threads in use)
    max_log_containers: int = 50  # bound on log reads per collection, whatever the outage size
    max_log_lines_since: int = 2000  # bound on one "log since the fix" read (a chatty container)
    # Bytes of one log read, whatever its lines' length (a container writing huge lines); the API
    # server stops there, so a cut falls on the newest lines of the window.
    max_log_bytes: int = 2 * 1024 * 1024
    # Items per list page (`limit`): a page of 500 pods is ~1.5 MB of JSON, read and parsed at once.
    list_page_size: int = 500


# kind -> (API attribute, namespaced list method, cluster-wide list method, RBAC resource name)
_NAMESPACED_KINDS: tuple[tuple[str, str, str, str], ...] = (
    ("Pod", "core", "list_namespaced_pod", "pods"),
    ("Event", "core", "list_namespaced_event", "events"),
    ("Service", "core", "list_namespaced_service", "services"),
    ("Endpoints", "core", "list_namespaced_endpoints", "endpoints"),
    ("EndpointSlice", "discovery", "list_namespaced_endpoint_slice", "endpointslices"),
    ("StatefulSet", "apps", "list_namespaced_stateful_set", "statefulsets"),
    ("Deployment", "apps", "list_namespaced_deployment", "deployments"),
    ("DaemonSet", "apps", "list_namespaced_daemon_set", "daemonsets"),
    ("ReplicaSet", "apps", "list_namespaced_replica_set", "replicasets"),
    ("ConfigMap", "core", "list_namespaced_config_map", "configmaps"),
    ("PersistentVolumeClaim", "core", "list_namespaced_persistent_volume_claim", "persistentvolumeclaims"),
    ("Job", "batch", "list_namespaced_job", "jobs"),
    ("CronJob", "batch", "list_namespaced_cron_job", "cronjobs"),
    ("Ingress", "networking", "list_namespaced_ingress", "ingresses"),
    ("NetworkPolicy", "networking", "list_namespaced_network_policy", "networkpolicies"),
    (
        "HorizontalPodAutoscaler",
        "autoscaling",
        "list_namespaced_horizontal_pod_autoscaler",
        "horizontalpodautoscalers",
    ),
    ("PodDisruptionBudget", "policy", "list_namespaced_pod_disruption_budget", "poddisruptionbudgets"),
    ("ResourceQuota", "core", "list_namespaced_resource_quota", "resourcequotas"),
    ("LimitRange", "core", "list_namespaced_limit_range", "limitranges"),
    ("Secret", "core", "list_namespaced_secret", "secrets"),
)
_CLUSTER_KINDS: tuple[tuple[str, str, str, str], ...] = (
    ("Node", "core", "list_node", "nodes"),
    ("PersistentVolume", "core", "list_persistent_volume", "persistentvolumes"),
    ("StorageClass", "storage", "list_storage_class", "storageclasses"),
    ("IngressClass", "networking", "list_ingress_class", "ingressclasses"),
)
# Kinds whose API may legitimately be absent: a 404 on their list is not worth reporting.
_OPTIONAL_KINDS = frozenset({"EndpointSlice"})
# Secrets are listed as metadata only: the API server answers a PartialObjectMetadataList (names,
# labels, annotations), so their data never reaches pitcrew; the parser then keeps the names only.
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
_LIST_HEADERS: Mapping[str, Mapping[str, str]] = {"Secret": {"Accept": METADATA_ONLY}}

# get by kind, for get_object()
_GETTERS: Mapping[str, tuple[str, str, bool]] = {
    "Pod": ("core", "read_namespaced_pod", True),
    "Service": ("core", "read_namespaced_service", True),
    "Endpoints": ("core", "read_namespaced_endpoints", True),
    "ConfigMap": ("core", "read_namespaced_config_map", True),
    "PersistentVolumeClaim": ("core", "read_namespaced_persistent_volume_claim", True),
    "StatefulSet": ("apps", "read_namespaced_stateful_set", True),
    "Deployment": ("apps", "read_namespaced_deployment", True),
    "DaemonSet": ("apps", "read_namespaced_daemon_set", True),
    "ReplicaSet": ("apps", "read_namespaced_replica_set", True),
    "Node": ("core", "read_node", False),
    "PersistentVolume": ("core", "read_persistent_volume", False),
}


def _reason(exc: Any) -> str:
    """Why an ApiException failed, in words."""
    status = exc.status
    if status == 403:
        return "forbidden"
    if status == 401:
        return "unauthorized"
    if status == 404:
        return "not found"
    try:
        body = json.loads(exc.body or "{}")
        message = str(body.get("message") or "")
    except (ValueError, AttributeError):
        message = ""
    return f"HTTP {status}" + (f": {message[:200]}" if message else "")


def _log_targets(pods: Iterable[Pod]) -> list[LogKey]:
    """Containers worth reading logs of: not ready, restarted, or terminated (current and previous).
    Those in trouble now come first (in `pods` order), then the ones that only restarted once, so a
    short log budget goes to what a diagnosis needs."""
    keys = list(_log_candidates(pods))
    return [key for _, key in sorted(keys, key=lambda pair: not pair[0])]


def _log_candidates(pods: Iterable[Pod]) -> Iterable[tuple[bool, LogKey]]:
    """(in trouble now, log key) for each log worth reading."""
    for pod in pods:
        for status in pod.container_statuses + pod.init_container_statuses:
            if status.init and status.state.state == "terminated" and status.state.exit_code == 0:
                continue  # a finished init container did its job
            unhealthy = (not status.ready and not status.init) or status.state.state == "terminated"
            restarted = status.restart_count > 0 or status.last_state is not None
            if status.init and status.state.state == "waiting" and status.restart_count > 0:
                unhealthy = True
            if not (unhealthy or restarted):
                continue
            if status.state.state in ("running", "terminated"):
                yield unhealthy, LogKey(pod.namespace, pod.name, status.name, False)
            if restarted:
                yield unhealthy, LogKey(pod.namespace, pod.name, status.name, True)


def _parse_page(data: bytes, kind: str, keep_raw: bool, errors: list[str]) -> tuple[list[ParsedObject], str]:
    """One list page -> (its objects, typed; the continue token, "" on the last page). An object that
    cannot be understood is a line in `errors`, the others are kept. Runs in a worker thread:
    decoding and parsing 500 objects would hold the event loop for tens of ms."""
    try:
        page = json.loads(data)
    except ValueError as exc:
        raise ClusterError(f"unreadable API response: {exc}", temporary=True) from None
    if not isinstance(page, dict):
        raise ClusterError("unreadable API response: not a list", temporary=True)
    items = page.get("items") or []
    token = str((page.get("metadata") or {}).get("continue") or "")
    del page
    objects: list[ParsedObject] = []
    if isinstance(items, list):
        items.reverse()  # pop() from the end: each item's dict is dropped once parsed
        while items:
            item = items.pop()
            if type(item) is not dict:
                continue
            # The kind is the list's: API items carry none, metadata-only ones say PartialObjectMetadata.
            item["kind"] = kind
            try:
                parsed = parse_object(item, default_kind=kind, keep_raw=keep_raw)
            except ObjectError as exc:
                errors.append(f"cannot understand {exc}")
                continue
            if parsed is not None:
                objects.append(parsed)
    return objects, token


def _keep_relevant(objects: list[ParsedObject]) -> list[ParsedObject]:
    """Keep what the pods in scope need: referenced ConfigMaps, PVs bound to their claims, their
    nodes. Whole namespaces are listed (one call each); this trims the rest. StorageClasses all stay
    (a handful per cluster): a claim naming one that does not exist is told only by the others."""
    pods = [o for o in objects if isinstance(o, Pod)]
    workloads = [o for o in objects if isinstance(o, Workload)]
    pvcs = [o for o in objects if isinstance(o, PersistentVolumeClaim)]
    configmaps: set[tuple[str, str]] = set()
    for ns, spec in [(p.namespace, p.spec) for p in pods] + [
        (w.meta.namespace or "", w.template) for w in workloads
    ]:
        for v in spec.volumes:
            if v.config_map:
                configmaps.add((ns, v.config_map))
        for c in spec.containers + spec.init_containers:
            for ref in c.env_refs:
                if ref.kind == "ConfigMap":
                    configmaps.add((ns, ref.name))
    claims = {(c.meta.namespace or "", c.meta.name) for c in pvcs}
    volume_names = {c.volume_name for c in pvcs if c.volume_name}
    node_names = {p.node_name for p in pods if p.node_name}
    kept: list[ParsedObject] = []
    for o in objects:
        if isinstance(o, ConfigMap) and (o.meta.namespace or "", o.meta.name) not in configmaps:
            continue
        if isinstance(o, PersistentVolume):
            if o.meta.name not in volume_names and (o.claim_namespace, o.claim_name) not in claims:
                continue
            node_names.update(o.node_names)
        kept.append(o)
    return [o for o in kept if not (isinstance(o, Node) and o.meta.name not in node_names)]


def _collection_failed(server: str, failures: list[ClusterError]) -> ClusterError:
    unreachable = next((f for f in failures if f.unreachable), None)
    if unreachable is not None:
        return ClusterError(str(unreachable), temporary=True, unreachable=True)
    reasons = sorted({str(f) for f in failures})
    first = failures[0]
    return ClusterError(
        f"the Kubernetes API at {server} refused every read: " + "; ".join(reasons)[:300],
        status=first.status,
        temporary=all(f.temporary for f in failures),
    )


def _load_client(
    kubeconfig: str | None, context: str | None, in_cluster: Literal["auto", "true", "false"] | str | bool
) -> Any:
    """A configured `kubernetes.client.ApiClient`; ClusterError (permanent) saying what could not load."""
    kubernetes = _kubernetes()
    configuration = kubernetes.client.Configuration()
    mode = str(in_cluster).lower()
    use_in_cluster = mode == "true" or (
        mode == "auto" and kubeconfig is None and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    )
    try:
        if use_in_cluster:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        else:
            kubernetes.config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
    except (kubernetes.config.ConfigException, OSError, TypeError, ValueError) as exc:
        raise ClusterError(
            f"cannot load {_config_source(use_in_cluster, kubeconfig, exc)}", temporary=False
        ) from None
    # A diagnosis must not hang on a dead API server: one retry at most, then report.
    configuration.retries = 1
    return kubernetes.client.ApiClient(configuration)


# API objects of the client by the attribute name they are reached under (`cluster.core`, ...).
_APIS: Mapping[str, str] = {
    "core": "CoreV1Api",
    "apps": "AppsV1Api",
    "discovery": "DiscoveryV1Api",
    "storage": "StorageV1Api",
    "batch": "BatchV1Api",
    "networking": "NetworkingV1Api",
    "autoscaling": "AutoscalingV2Api",
    "policy": "PolicyV1Api",
    "version_api": "VersionApi",
    "coordination": "CoordinationV1Api",
}


class Cluster:
    """`Cluster(api_client)` uses a client made elsewhere; `connect(..., lazy=True)` (what the service
    does) loads the configuration and imports the client on the first call, in a worker thread, and a
    configuration that cannot be loaded then fails every call with the same ClusterError."""

    def __init__(
        self,
        api_client: Any | None,
        options: CollectOptions | None = None,
        *,
        connector: Callable[[], Any] | None = None,
    ) -> None:
        if api_client is None and connector is None:
            raise ValueError("Cluster needs an api_client or a connector")
        self._api_client = api_client
        self._connector = connector
        self._connect_error: ClusterError | None = None
        self._apis: dict[str, Any] = {}
        self.options = options or CollectOptions()
        self._limit = asyncio.Semaphore(max(1, self.options.api_concurrency))

    @property
    def api_client(self) -> Any:
        if self._api_client is None:
            if self._connect_error is not None:
                raise self._connect_error
            assert self._connector is not None
            try:
                self._api_client = self._connector()
            except ClusterError as exc:
                self._connect_error = exc
                raise
        return self._api_client

    def _api(self, name: str) -> Any:
        api = self._apis.get(name)
        if api is None:
            api = self._apis[name] = getattr(_kubernetes().client, _APIS[name])(self.api_client)
        return api

    @property
    def core(self) -> Any:
        return self._api("core")

    @property
    def apps(self) -> Any:
        return self._api("apps")

    @property
    def discovery(self) -> Any:
        return self._api("discovery")

    @property
    def storage(self) -> Any:
        return self._api("storage")

    @property
    def batch(self) -> Any:
        return self._api("batch")

    @property
    def networking(self) -> Any:
        return self._api("networking")

    @property
    def autoscaling(self) -> Any:
        return self._api("autoscaling")

    @property
    def policy(self) -> Any:
        return self._api("policy")

    @property
    def version_api(self) -> Any:
        return self._api("version_api")

    @property
    def coordination(self) -> Any:
        return self._api("coordination")

    async def connected(self) -> None:
        """Make the client now (in a worker thread: the import and kubeconfig load block), if a lazy
        cluster has not yet; raises ClusterError when the configuration cannot be loaded."""
        if self._api_client is None:
            await asyncio.to_thread(lambda: self.api_client)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        in_cluster: Literal["auto", "true", "false"] | str | bool = "auto",
        options: CollectOptions | None = None,
        lazy: bool = False,
    ) -> Cluster:
        """In-cluster service account, or a kubeconfig file and context.

        `in_cluster="auto"`: in-cluster when running in a pod (service host variable set) and no
        kubeconfig was given, else kubeconfig (the file given, $KUBECONFIG, ~/.kube/config).
        `lazy`: load it (and import the client) on the first call instead of now."""

        def load() -> Any:
            return _load_client(kubeconfig, context, in_cluster)

        if lazy:
            return cls(None, options, connector=load)
        return cls(load(), options)

    @classmethod
    def from_config(cls, settings: ClusterSettings, *, lazy: bool = False) -> Cluster:
        return cls.connect(
            kubeconfig=settings.kubeconfig,
            context=settings.context,
            in_cluster=settings.in_cluster,
            options=CollectOptions(
                request_timeout_seconds=settings.request_timeout_seconds,
                log_tail_lines=settings.log_tail_lines,
                log_concurrency=settings.log_concurrency,
            ),
            lazy=lazy,
        )

    async def close(self) -> None:
        if self._api_client is not None:
            await asyncio.to_thread(self._api_client.close)

    async def __aenter__(self) -> Cluster:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- call plumbing ------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One blocking client call in a worker thread: bounded concurrency, always a timeout."""
        timeout = self.options.request_timeout_seconds
        kwargs.setdefault("_request_timeout", (timeout, timeout))

        def call() -> T:
            result = fn(*args, **kwargs)
            if kwargs.get("_preload_content") is False:
                # A raw response's body is read on first `.data` (then cached): read it here, in the
                # worker thread, not later on the event loop, where a slow or large answer would stall
                # webhooks and Slack acks.
                _ = result.data  # type: ignore[attr-defined]
            return result

        async with self._limit:
            try:
                return await asyncio.to_thread(call)
            except ClusterError:
                raise
            except _api_exception() as exc:
                status = getattr(exc, "status", None) or None
                temporary = status is None or status >= 500 or status == 429
                raise ClusterError(_reason(exc), status=status, temporary=temporary) from None
            except Exception as exc:  # urllib3 timeouts, connection refused, TLS errors
                log.debug("Kubernetes API call %s failed", getattr(fn, "__name__", fn), exc_info=True)
                raise ClusterError(
                    f"cannot reach the Kubernetes API at {self.server}: {_transport_reason(exc)}",
                    temporary=True,
                    unreachable=True,
                ) from None

    async def _json(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        response = await self._run(fn, *args, _preload_content=False, **kwargs)
        try:
            return json.loads(response.data)
        except ValueError as exc:
            raise ClusterError(f"unreadable API response: {exc}", temporary=True) from None

    @property
    def server(self) -> str:
        """The API server's URL, as the kubeconfig (or the service account) names it."""
        return str(self.api_client.configuration.host)

    # -- read side ----------------------------------------------------------------------------

    async def ping(self) -> bool:
        """True when the API server answers /version within the request timeout."""
        try:
            await self.connected()
        except ClusterError:
            return False
        try:
            await self._json(self.version_api.get_code)
        except ClusterError:
            return False
        return True

    async def get_object(self, ref: ObjectRef) -> dict[str, Any]:
        """One object as raw JSON (for backups and re-reads). Raises ClusterError (404 -> status 404)."""
        await self.connected()
        getter = _GETTERS.get(ref.kind)
        if getter is None:
            raise ClusterError(f"reading {ref.kind} is not supported", temporary=False)
        api, method, namespaced = getter
        fn = getattr(self._api(api), method)
        args = (ref.name, ref.namespace) if namespaced else (ref.name,)
        data: dict[str, Any] = await self._json(fn, *args)
        data.setdefault("kind", ref.kind)
        return data

    async def list_pods(self, namespace: str, *, label_selector: str | None = None) -> list[Pod]:
        await self.connected()
        kwargs = {"label_selector": label_selector} if label_selector else {}
        data = await self._json(self.core.list_namespaced_pod, namespace, **kwargs)
        return [
            p
            for p in (parse_object(i, default_kind="Pod") for i in data.get("items") or ())
            if isinstance(p, Pod)
        ]

    async def read_log(
        self,
        namespace: str,
        pod: str,
        container: str,
        *,
        previous: bool = False,
        tail_lines: int | None = None,
    ) -> tuple[str, ...]:
        await self.connected()
        response: Any = await self._run(
            self.core.read_namespaced_pod_log,
            pod,
            namespace,
            container=container,
            previous=previous,
            tail_lines=tail_lines or self.options.log_tail_lines,
            limit_bytes=self.options.max_log_bytes,
            _preload_content=False,
        )
        text = response.data.decode("utf-8", errors="replace")
        return tuple(text.splitlines())

    async def collect(self, scope: Scope, *, keep_raw: bool = False) -> Evidence:
        """One paginated list per kind per namespace (plus one per cluster-scoped kind), then logs of
        unhealthy containers. A failed call becomes a line in `evidence.errors`, never an abort.

        Lists are read `list_page_size` items at a time (`limit` + `continue`), and each page is
        parsed into typed objects in the worker thread that read it, its JSON dropped: neither the API
        server nor pitcrew ever holds a whole 10,000-pod answer. `keep_raw` keeps every object's raw
        form (to write a bundle); otherwise only RAW_KINDS keep theirs."""
        await self.connected()
        errors: list[str] = []
        parsed: dict[tuple[str, str], list[ParsedObject]] = {}
        failures: list[ClusterError] = []
        answered = 0

        async def list_kind(kind: str, api: str, method: str, resource: str, namespace: str | None) -> None:
            nonlocal answered
            where = f" in {namespace}" if namespace else ""
            fn = getattr(self._api(api), method)
            headers = _LIST_HEADERS.get(kind)
            extra: dict[str, Any] = {"_headers": dict(headers)} if headers else {}
            try:
                parsed[kind, namespace or ""] = await self._list_parsed(
                    kind, fn, namespace, keep_raw, errors, extra
                )
            except ClusterError as exc:
                if not (exc.status == 404 and kind in _OPTIONAL_KINDS):
                    # A 404 here is an API group the cluster does not serve (e.g. no autoscaling/v2).
                    errors.append(f"cannot list {resource}{where}: {exc}")
                    failures.append(exc)
                return
            answered += 1

        calls: list[Awaitable[None]] = [
            list_kind(kind, api, method, resource, ns)
            for ns in scope.namespaces
            for kind, api, method, resource in _NAMESPACED_KINDS
        ]
        calls += [
            list_kind(kind, api, method, resource, None) for kind, api, method, resource in _CLUSTER_KINDS
        ]
        await asyncio.gather(*calls)
        if not answered and failures:
            # Nothing was read: that is a failed collection, not an empty (healthy-looking) cluster.
            raise _collection_failed(self.server, failures)

        with paused_gc():
            objects = _keep_relevant([o for key in sorted(parsed) for o in parsed[key]])
        pods = [o for o in objects if isinstance(o, Pod)]
        # When the log budget is short, the pods the alerts name come first.
        focus = {(r.namespace, r.name) for r in scope.focus if r.kind == "Pod"}
        pods.sort(key=lambda p: (p.namespace, p.name) not in focus)
        logs = await self._collect_logs(pods, errors)
        return build_evidence(
            objects,
            namespaces=scope.namespaces,
            logs=logs,
            errors=sorted(errors),
            observed_at=datetime.now(UTC),
        )

    async def _list_parsed(
        self,
        kind: str,
        fn: Callable[..., Any],
        namespace: str | None,
        keep_raw: bool,
        errors: list[str],
        extra: Mapping[str, Any],
    ) -> list[ParsedObject]:
        """Every object of one list, page by page. A list that changes between pages is read on from
        the token (the API server keeps its snapshot); an expired token (410) restarts the list once
        from the top, as kubectl does, rather than give a half list."""
        limit = self.options.list_page_size
        args = (namespace,) if namespace else ()
        restarted = False
        objects: list[ParsedObject] = []
        token = ""
        while True:
            page = {"limit": limit, **({"_continue": token} if token else {})}
            try:
                response = await self._run(fn, *args, _preload_content=False, **page, **extra)
            except ClusterError as exc:
                if exc.status == 410 and token and not restarted:
                    restarted, token, objects = True, "", []
                    continue
                raise
            data: bytes = response.data
            del response
            items, token = await asyncio.to_thread(_parse_page, data, kind, keep_raw, errors)
            del data
            objects += items
            if not token:
                return objects

    async def _collect_logs(self, pods: Iterable[Pod], errors: list[str]) -> dict[LogKey, tuple[str, ...]]:
        wanted = _log_targets(pods)
        limit = self.options.max_log_containers
        if len(wanted) > limit:
            errors.append(f"logs skipped for {len(wanted) - limit} containers (limit {limit} per collection)")
            wanted = wanted[:limit]
        gate = asyncio.Semaphore(max(1, self.options.log_concurrency))
        logs: dict[LogKey, tuple[str, ...]] = {}

        async def fetch(key: LogKey) -> None:
            async with gate:
                try:
                    lines = await self.read_log(key.namespace, key.pod, key.container, previous=key.previous)
                except ClusterError as exc:
                    # A container that never ran has no previous log: not worth a report line.
                    if not (key.previous and exc.status == 400):
                        which = "previous log" if key.previous else "log"
                        errors.append(
                            f"cannot read {which} of {key.namespace}/{key.pod}/{key.container}: {exc}"
                        )
                    return
            logs[key] = tuple(redact_lines(lines))

        await asyncio.gather(*(fetch(k) for k in wanted))
        return logs

    # =========================================================================================
    # WRITE SIDE (owner: remediation). Add write methods to `Cluster` below this line, using
    # `self._run` / `self._json` so they get the same timeouts, bounds and ClusterError mapping.
    # =========================================================================================

    # Kinds the executor may patch: kind -> (API attribute, patch method).
    _PATCHERS: Mapping[str, tuple[str, str]] = {
        "StatefulSet": ("apps", "patch_namespaced_stateful_set"),
        "Deployment": ("apps", "patch_namespaced_deployment"),
        "DaemonSet": ("apps", "patch_namespaced_daemon_set"),
        "ConfigMap": ("core", "patch_namespaced_config_map"),
    }

    async def require_reachable(self) -> None:
        """Raise ClusterError saying why when the API server does not answer `/version`. The CLI
        verbs ask first: an unreachable cluster must be an error, never an empty, healthy-looking one."""
        await self.connected()
        try:
            await self._json(self.version_api.get_code)
        except ClusterError as exc:
            if exc.unreachable:
                raise
            raise ClusterError(
                f"the Kubernetes API at {self.server} answers /version with: {exc}",
                status=exc.status,
                temporary=exc.temporary,
            ) from None

    async def read_raw(self, ref: ObjectRef) -> dict[str, Any] | None:
        """The object as raw JSON, or None when the API server says it does not exist."""
        try:
            return await self.get_object(ref)
        except ClusterError as exc:
            if exc.status == 404:
                return None
            raise

    async def json_patch(
        self, ref: ObjectRef, ops: Iterable[Mapping[str, Any]], *, dry_run: bool = False
    ) -> dict[str, Any]:
        """RFC 6902 JSON Patch. A failed `test` op is HTTP 422, a stale resourceVersion 409: both raise
        ClusterError with that status and nothing is changed. `dry_run` sends `dryRun=All`: the server
        runs the whole write path and answers with the result without persisting it."""
        await self.connected()
        patcher = self._PATCHERS.get(ref.kind)
        if patcher is None or ref.namespace is None:
            raise ClusterError(f"patching {ref} is not supported", temporary=False)
        api, method = patcher
        kwargs: dict[str, Any] = {"_content_type": "application/json-patch+json"}
        if dry_run:
            kwargs["dry_run"] = "All"
        data: dict[str, Any] = await self._json(
            getattr(self._api(api), method), ref.name, ref.namespace, [dict(op) for op in ops], **kwargs
        )
        data.setdefault("kind", ref.kind)
        return data

    async def delete_pod(self, ref: ObjectRef) -> None:
        """Delete a pod so its controller recreates it. ClusterError status 404 if already gone."""
        await self.connected()
        if ref.kind != "Pod" or ref.namespace is None:
            raise ClusterError(f"{ref} is not a pod", temporary=False)
        await self._run(self.core.delete_namespaced_pod, ref.name, ref.namespace, _preload_content=False)

    async def read_log_since(
        self, namespace: str, pod: str, container: str, *, since_seconds: int
    ) -> tuple[str, ...]:
        """Log lines a container wrote in the last `since_seconds` seconds, the newest
        `max_log_lines_since` of them at most (redacted)."""
        await self.connected()
        response: Any = await self._run(
            self.core.read_namespaced_pod_log,
            pod,
            namespace,
            container=container,
            since_seconds=max(1, since_seconds),
            tail_lines=self.options.max_log_lines_since,
            limit_bytes=self.options.max_log_bytes,
            _preload_content=False,
        )
        return tuple(redact_lines(response.data.decode("utf-8", errors="replace").splitlines()))

    async def service_proxy_get(
        self,
        namespace: str,
        service: str,
        port: int | str,
        path: str,
        params: Mapping[str, str] | None = None,
    ) -> tuple[int, str]:
        """GET through the API server's service proxy; returns (HTTP status, body text). A status the
        service answered (e.g. 503 "not ready") is returned, not raised."""
        await self.connected()
        from urllib.parse import quote  # imported here to keep the write side in its own section

        quoted = "/".join(quote(part, safe="-._~") for part in path.lstrip("/").split("/"))
        resource_path = (
            f"/api/v1/namespaces/{quote(namespace, safe='')}/services/"
            f"{quote(f'{service}:{port}', safe=':')}/proxy/{quoted}"
        )

        def call(_request_timeout: Any = None) -> tuple[int, str]:
            method, url, headers, body, post = self.api_client.param_serialize(
                method="GET",
                resource_path=resource_path,
                query_params=list((params or {}).items()),
                header_params={"Accept": "*/*"},
                auth_settings=["BearerToken"],
            )
            response: Any = self.api_client.call_api(
                method,
                url,
                header_params=headers,
                body=body,
                post_params=post,
                _request_timeout=_request_timeout,
            )
            raw: bytes = response.read()
            return int(response.status), raw.decode("utf-8", errors="replace")

        return await self._run(call)

    # -- coordination.k8s.io/v1 Leases (leader election, bot/leader.py) -----------------------------

    async def get_lease(self, namespace: str, name: str) -> LeaseRecord | None:
        """The Lease, or None when it does not exist yet."""
        await self.connected()
        try:
            data = await self._json_lease(self.coordination.read_namespaced_lease, name, namespace)
        except ClusterError as exc:
            if exc.status == 404:
                return None
            raise
        return LeaseRecord.from_json(data)

    async def create_lease(self, namespace: str, name: str, spec: LeaseSpec) -> LeaseRecord:
        """Create the Lease; `LeaseConflict` when another replica created it first (409 AlreadyExists)."""
        await self.connected()
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec.to_json(),
        }
        data = await self._json_lease(self.coordination.create_namespaced_lease, namespace, body)
        return LeaseRecord.from_json(data)

    async def update_lease(self, current: LeaseRecord, spec: LeaseSpec) -> LeaseRecord:
        """Replace the Lease's spec if it is still at `current.resource_version` (compare-and-swap);
        `LeaseConflict` when someone wrote it in between (409)."""
        await self.connected()
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": current.name,
                "namespace": current.namespace,
                "resourceVersion": current.resource_version,
            },
            "spec": spec.to_json(),
        }
        data = await self._json_lease(
            self.coordination.replace_namespaced_lease, current.name, current.namespace, body
        )
        return LeaseRecord.from_json(data)

    async def _json_lease(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
        # Not behind the collection's semaphore: a renewal must not queue behind 50 log reads.
        timeout = min(self.options.request_timeout_seconds, LEASE_REQUEST_TIMEOUT_SECONDS)

        def call() -> bytes:
            response = fn(*args, _preload_content=False, _request_timeout=(timeout, timeout))
            return bytes(response.data)

        try:
            raw = await asyncio.to_thread(call)
        except ClusterError:
            raise  # a lazy client whose configuration cannot be loaded
        except _api_exception() as exc:
            if getattr(exc, "status", None) == 409:
                raise LeaseConflict(_reason(exc)) from None
            status = getattr(exc, "status", None) or None
            temporary = status is None or status >= 500 or status == 429
            raise ClusterError(_reason(exc), status=status, temporary=temporary) from None
        except Exception as exc:  # urllib3 timeouts, connection refused
            raise ClusterError(f"{type(exc).__name__}: {exc}"[:300], temporary=True) from None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ClusterError(f"unreadable API response: {exc}", temporary=True) from None
        if not isinstance(data, dict):
            raise ClusterError("unreadable API response: not an object", temporary=True)
        return data


LEASE_REQUEST_TIMEOUT_SECONDS = 5.0


class LeaseConflict(ClusterError):
    """The Lease changed since it was read (409 Conflict) or already exists (409 AlreadyExists)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=409, temporary=True)


def _micro_time(value: datetime | None) -> str | None:
    # metav1.MicroTime: RFC 3339 with microseconds, UTC.
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_micro_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class LeaseSpec:
    holder: str | None
    duration_seconds: int
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int

    def to_json(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "leaseDurationSeconds": self.duration_seconds,
            "leaseTransitions": self.transitions,
        }
        if self.holder:
            spec["holderIdentity"] = self.holder
        if self.acquire_time is not None:
            spec["acquireTime"] = _micro_time(self.acquire_time)
        if self.renew_time is not None:
            spec["renewTime"] = _micro_time(self.renew_time)
        return spec


@dataclass(frozen=True)
class LeaseRecord:
    namespace: str
    name: str
    resource_version: str
    spec: LeaseSpec

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LeaseRecord:
        meta = data.get("metadata") or {}
        spec = data.get("spec") or {}
        duration = spec.get("leaseDurationSeconds")
        transitions = spec.get("leaseTransitions")
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            resource_version=str(meta.get("resourceVersion") or ""),
            spec=LeaseSpec(
                holder=str(spec["holderIdentity"]) if spec.get("holderIdentity") else None,
                duration_seconds=duration if isinstance(duration, int) and duration > 0 else 0,
                acquire_time=_parse_micro_time(spec.get("acquireTime")),
                renew_time=_parse_micro_time(spec.get("renewTime")),
                transitions=transitions if isinstance(transitions, int) and transitions >= 0 else 0,
            ),
        )
