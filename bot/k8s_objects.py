"""Kubernetes objects as plain dicts -> pitcrew's typed evidence. The one parser.

Used by both the live collector (`bot.cluster`, which reads raw JSON, not the client's strict
models) and the bundle reader (`bot.snapshot`). It is lenient: a missing field becomes its default
and an unknown kind is ignored, because bundles are hand-made and partial objects are normal.
A value of the wrong type raises `ObjectError` naming the object, so a bad file gets a clear error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal, cast

from bot.evidence import (
    EMPTY,
    Condition,
    ConfigMap,
    Container,
    ContainerPort,
    ContainerState,
    ContainerStatus,
    EndpointAddress,
    Endpoints,
    EnvRef,
    Event,
    Evidence,
    HostFacts,
    HostPathFact,
    LogKey,
    Meta,
    Node,
    OwnerRef,
    PersistentVolume,
    PersistentVolumeClaim,
    Pod,
    PodSpec,
    Probe,
    SecurityContext,
    Service,
    ServicePort,
    StorageClass,
    Volume,
    VolumeKind,
    VolumeMount,
    Workload,
    freeze,
    thaw,
)
from bot.model import ObjectRef

KINDS = frozenset(
    {
        "Pod",
        "Event",
        "Service",
        "Endpoints",
        "EndpointSlice",
        "StatefulSet",
        "Deployment",
        "DaemonSet",
        "ReplicaSet",
        "ConfigMap",
        "PersistentVolumeClaim",
        "PersistentVolume",
        "Node",
        "StorageClass",
    }
)

ParsedObject = (
    Pod
    | Event
    | Service
    | Endpoints
    | Workload
    | ConfigMap
    | PersistentVolumeClaim
    | PersistentVolume
    | Node
    | StorageClass
)


class ObjectError(ValueError):
    """An object that cannot be understood (wrong type where a field is)."""


# ---------------------------------------------------------------------------------------------
# small typed accessors
# ---------------------------------------------------------------------------------------------


def _map(d: Any, key: str) -> Mapping[str, Any]:
    v = d.get(key) if type(d) is dict or isinstance(d, Mapping) else None
    if v is None:
        return EMPTY
    if type(v) is not dict and not isinstance(v, Mapping):
        raise ObjectError(f"{key}: expected a mapping, got {type(v).__name__}")
    return v


def _list(d: Mapping[str, Any], key: str) -> list[Any]:
    v = d.get(key)
    if v is None:
        return []
    if type(v) is list:
        return v
    if not isinstance(v, list | tuple):
        raise ObjectError(f"{key}: expected a list, got {type(v).__name__}")
    return list(v)


def _str(d: Mapping[str, Any], key: str, default: str = "") -> str:
    v = d.get(key)
    if v is None:
        return default
    if type(v) is str:
        return v
    if isinstance(v, bool | dict | list):
        raise ObjectError(f"{key}: expected a string, got {type(v).__name__}")
    return str(v)


def _int(d: Mapping[str, Any], key: str) -> int | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool):
        raise ObjectError(f"{key}: expected an integer, got a boolean")
    try:
        return int(v)
    except (TypeError, ValueError):
        raise ObjectError(f"{key}: expected an integer, got {v!r}") from None


def _bool(d: Mapping[str, Any], key: str) -> bool | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise ObjectError(f"{key}: expected true or false, got {v!r}")


def _str_map(d: Mapping[str, Any], key: str) -> Mapping[str, str]:
    m = _map(d, key)
    if not m:
        return EMPTY
    return MappingProxyType({str(k): "" if v is None else str(v) for k, v in m.items()})


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 as Kubernetes writes it (`2025-10-09T21:54:40Z`, optional fraction); None if absent."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ObjectError(f"not an RFC 3339 time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _int_or_str(v: Any) -> int | str | None:
    if v is None:
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    text = str(v)
    return int(text) if text.isdigit() else text


# ---------------------------------------------------------------------------------------------
# pieces
# ---------------------------------------------------------------------------------------------


def parse_meta(d: Mapping[str, Any]) -> Meta:
    m = _map(d, "metadata")
    owners = tuple(
        OwnerRef(kind=_str(o, "kind"), name=_str(o, "name"), controller=bool(_bool(o, "controller")))
        for o in _list(m, "ownerReferences")
        if isinstance(o, Mapping)
    )
    return Meta(
        name=_str(m, "name"),
        namespace=_str(m, "namespace") or None,
        uid=_str(m, "uid"),
        resource_version=_str(m, "resourceVersion") or None,
        labels=_str_map(m, "labels"),
        annotations=_str_map(m, "annotations"),
        owners=owners,
        created_at=parse_time(m.get("creationTimestamp")),
        deleting=m.get("deletionTimestamp") is not None,
    )


def _conditions(status: Mapping[str, Any]) -> tuple[Condition, ...]:
    return tuple(
        Condition(
            type=_str(c, "type"),
            status=_str(c, "status", "Unknown"),
            reason=_str(c, "reason"),
            message=_str(c, "message"),
            last_transition=parse_time(c.get("lastTransitionTime")),
        )
        for c in _list(status, "conditions")
        if isinstance(c, Mapping)
    )


def _security_context(d: Mapping[str, Any]) -> SecurityContext:
    sc = _map(d, "securityContext")
    if not sc:
        return SecurityContext()
    return SecurityContext(
        run_as_user=_int(sc, "runAsUser"),
        run_as_group=_int(sc, "runAsGroup"),
        fs_group=_int(sc, "fsGroup"),
        run_as_non_root=_bool(sc, "runAsNonRoot"),
    )


def _probe(d: Mapping[str, Any], key: str) -> Probe | None:
    p = _map(d, key)
    if not p:
        return None
    delay = _int(p, "initialDelaySeconds") or 0
    period = _int(p, "periodSeconds") or 10
    threshold = _int(p, "failureThreshold") or 3
    handler: Literal["httpGet", "tcpSocket", "exec", "grpc", "none"] = "none"
    port: int | str | None = None
    path = ""
    command: tuple[str, ...] = ()
    if "httpGet" in p:
        handler, port, path = (
            "httpGet",
            _int_or_str(_map(p, "httpGet").get("port")),
            _str(_map(p, "httpGet"), "path", "/"),
        )
    elif "tcpSocket" in p:
        handler, port = "tcpSocket", _int_or_str(_map(p, "tcpSocket").get("port"))
    elif "grpc" in p:
        handler, port = "grpc", _int_or_str(_map(p, "grpc").get("port"))
    elif "exec" in p:
        handler, command = "exec", tuple(str(c) for c in _list(_map(p, "exec"), "command"))
    return Probe(handler, port, path, command, delay, period, threshold)


def _env_refs(c: Mapping[str, Any]) -> tuple[EnvRef, ...]:
    refs: list[EnvRef] = []
    for src in _list(c, "envFrom"):
        if not isinstance(src, Mapping):
            continue
        if "configMapRef" in src:
            r = _map(src, "configMapRef")
            refs.append(EnvRef("ConfigMap", _str(r, "name"), optional=bool(_bool(r, "optional"))))
        if "secretRef" in src:
            r = _map(src, "secretRef")
            refs.append(EnvRef("Secret", _str(r, "name"), optional=bool(_bool(r, "optional"))))
    for env in _list(c, "env"):
        if not isinstance(env, Mapping):
            continue
        vf = _map(env, "valueFrom")
        if "configMapKeyRef" in vf:
            r = _map(vf, "configMapKeyRef")
            refs.append(EnvRef("ConfigMap", _str(r, "name"), _str(r, "key"), bool(_bool(r, "optional"))))
        if "secretKeyRef" in vf:
            r = _map(vf, "secretKeyRef")
            refs.append(EnvRef("Secret", _str(r, "name"), _str(r, "key"), bool(_bool(r, "optional"))))
    return tuple(refs)


def _container(c: Mapping[str, Any]) -> Container:
    resources = _map(c, "resources")
    return Container(
        name=_str(c, "name"),
        image=_str(c, "image"),
        command=tuple(str(x) for x in _list(c, "command")),
        args=tuple(str(x) for x in _list(c, "args")),
        ports=tuple(
            ContainerPort(
                container_port=_int(p, "containerPort") or 0,
                name=_str(p, "name"),
                protocol=_str(p, "protocol", "TCP"),
            )
            for p in _list(c, "ports")
            if isinstance(p, Mapping)
        ),
        volume_mounts=tuple(
            VolumeMount(
                name=_str(m, "name"),
                mount_path=_str(m, "mountPath"),
                sub_path=_str(m, "subPath"),
                read_only=bool(_bool(m, "readOnly")),
            )
            for m in _list(c, "volumeMounts")
            if isinstance(m, Mapping)
        ),
        readiness_probe=_probe(c, "readinessProbe"),
        liveness_probe=_probe(c, "livenessProbe"),
        security_context=_security_context(c),
        limits=_str_map(resources, "limits"),
        requests=_str_map(resources, "requests"),
        env_refs=_env_refs(c),
    )


def _volume(v: Mapping[str, Any]) -> Volume:
    name = _str(v, "name")
    if "persistentVolumeClaim" in v:
        return Volume(
            name, "persistentVolumeClaim", claim_name=_str(_map(v, "persistentVolumeClaim"), "claimName")
        )
    if "hostPath" in v:
        return Volume(name, "hostPath", host_path=_str(_map(v, "hostPath"), "path"))
    if "configMap" in v:
        cm = _map(v, "configMap")
        return Volume(name, "configMap", config_map=_str(cm, "name"), optional=bool(_bool(cm, "optional")))
    if "secret" in v:
        s = _map(v, "secret")
        return Volume(name, "secret", secret=_str(s, "secretName"), optional=bool(_bool(s, "optional")))
    kind: VolumeKind = "emptyDir" if "emptyDir" in v else "projected" if "projected" in v else "other"
    return Volume(name, kind)


def parse_pod_spec(spec: Mapping[str, Any]) -> PodSpec:
    return PodSpec(
        containers=tuple(_container(c) for c in _list(spec, "containers") if isinstance(c, Mapping)),
        init_containers=tuple(_container(c) for c in _list(spec, "initContainers") if isinstance(c, Mapping)),
        volumes=tuple(_volume(v) for v in _list(spec, "volumes") if isinstance(v, Mapping)),
        security_context=_security_context(spec),
        node_name=_str(spec, "nodeName"),
        service_account=_str(spec, "serviceAccountName"),
    )


def _state(s: Mapping[str, Any]) -> ContainerState | None:
    if not s:
        return None
    names: tuple[Literal["waiting", "running", "terminated"], ...] = ("waiting", "running", "terminated")
    for name in names:
        if name in s and s.get(name) is not None:
            d = _map(s, name)
            return ContainerState(
                state=name,
                reason=_str(d, "reason"),
                message=_str(d, "message"),
                exit_code=_int(d, "exitCode"),
                started_at=parse_time(d.get("startedAt")),
                finished_at=parse_time(d.get("finishedAt")),
            )
    return None


def _container_status(s: Mapping[str, Any], *, init: bool) -> ContainerStatus:
    return ContainerStatus(
        name=_str(s, "name"),
        ready=bool(_bool(s, "ready")),
        restart_count=_int(s, "restartCount") or 0,
        state=_state(_map(s, "state")) or ContainerState("unknown"),
        last_state=_state(_map(s, "lastState")),
        image=_str(s, "image"),
        started=_bool(s, "started"),
        init=init,
    )


# ---------------------------------------------------------------------------------------------
# kinds
# ---------------------------------------------------------------------------------------------


def _pod(d: Mapping[str, Any], raw: Mapping[str, Any]) -> Pod:
    status = _map(d, "status")
    return Pod(
        meta=parse_meta(d),
        spec=parse_pod_spec(_map(d, "spec")),
        phase=_str(status, "phase"),
        reason=_str(status, "reason"),
        message=_str(status, "message"),
        conditions=_conditions(status),
        container_statuses=tuple(
            _container_status(s, init=False)
            for s in _list(status, "containerStatuses")
            if isinstance(s, Mapping)
        ),
        init_container_statuses=tuple(
            _container_status(s, init=True)
            for s in _list(status, "initContainerStatuses")
            if isinstance(s, Mapping)
        ),
        pod_ip=_str(status, "podIP"),
        start_time=parse_time(status.get("startTime")),
        raw=raw,
    )


def _event(d: Mapping[str, Any], raw: Mapping[str, Any]) -> Event:
    meta = parse_meta(d)
    # core/v1 Event (involvedObject, message, lastTimestamp) or events.k8s.io/v1 (regarding, note, series).
    inv = _map(d, "involvedObject") or _map(d, "regarding")
    series = _map(d, "series")
    count = _int(d, "count") or _int(series, "count") or _int(d, "deprecatedCount") or 1
    first = parse_time(d.get("firstTimestamp") or d.get("deprecatedFirstTimestamp") or d.get("eventTime"))
    last = parse_time(
        d.get("lastTimestamp")
        or series.get("lastObservedTime")
        or d.get("deprecatedLastTimestamp")
        or d.get("eventTime")
        or d.get("firstTimestamp")
    )
    source = (
        _str(_map(d, "source"), "component")
        or _str(d, "reportingController")
        or _str(d, "reportingComponent")
    )
    return Event(
        meta=meta,
        involved=ObjectRef(
            kind=_str(inv, "kind"), name=_str(inv, "name"), namespace=_str(inv, "namespace") or meta.namespace
        ),
        reason=_str(d, "reason"),
        message=_str(d, "message") or _str(d, "note"),
        type=_str(d, "type", "Normal"),
        count=count,
        first_seen=first,
        last_seen=last or first,
        source=source,
        raw=raw,
    )


def _service(d: Mapping[str, Any], raw: Mapping[str, Any]) -> Service:
    spec = _map(d, "spec")
    return Service(
        meta=parse_meta(d),
        selector=_str_map(spec, "selector"),
        ports=tuple(
            ServicePort(
                port=_int(p, "port") or 0,
                target_port=_int_or_str(p.get("targetPort")),
                name=_str(p, "name"),
                protocol=_str(p, "protocol", "TCP"),
            )
            for p in _list(spec, "ports")
            if isinstance(p, Mapping)
        ),
        type=_str(spec, "type", "ClusterIP"),
        cluster_ip=_str(spec, "clusterIP"),
        raw=raw,
    )


def _address(a: Mapping[str, Any], ip: str) -> EndpointAddress:
    target = _map(a, "targetRef")
    pod = _str(target, "name") if _str(target, "kind", "Pod") == "Pod" else ""
    return EndpointAddress(ip=ip, pod=pod, node=_str(a, "nodeName"))


def _endpoints(d: Mapping[str, Any], raw: Mapping[str, Any]) -> Endpoints:
    ready: list[EndpointAddress] = []
    not_ready: list[EndpointAddress] = []
    for subset in _list(d, "subsets"):
        if not isinstance(subset, Mapping):
            continue
        ready += [_address(a, _str(a, "ip")) for a in _list(subset, "addresses") if isinstance(a, Mapping)]
        not_ready += [
            _address(a, _str(a, "ip")) for a in _list(subset, "notReadyAddresses") if isinstance(a, Mapping)
        ]
    return Endpoints(meta=parse_meta(d), ready=tuple(ready), not_ready=tuple(not_ready), raw=raw)


def _endpoint_slice(d: Mapping[str, Any], raw: Mapping[str, Any]) -> Endpoints | None:
    meta = parse_meta(d)
    service = meta.labels.get("kubernetes.io/service-name", "")
    if not service:
        return None
    ready: list[EndpointAddress] = []
    not_ready: list[EndpointAddress] = []
    for ep in _list(d, "endpoints"):
        if not isinstance(ep, Mapping):
            continue
        cond = _bool(_map(ep, "conditions"), "ready")
        addresses = [str(a) for a in _list(ep, "addresses")] or [""]
        node = _str(ep, "nodeName")
        for ip in addresses:
            addr = _address(ep, ip)
            addr = EndpointAddress(ip=addr.ip, pod=addr.pod, node=node or addr.node)
            # Per the API, an unknown ready condition is to be read as ready.
            (ready if cond is None or cond else not_ready).append(addr)
    # Keyed by the Service name so lookups merge slices with core Endpoints.
    meta = Meta(
        name=service,
        namespace=meta.namespace,
        uid=meta.uid,
        resource_version=meta.resource_version,
        labels=meta.labels,
        annotations=meta.annotations,
        owners=meta.owners,
        created_at=meta.created_at,
    )
    return Endpoints(
        meta=meta, ready=tuple(ready), not_ready=tuple(not_ready), source="EndpointSlice", raw=raw
    )


def _workload(kind: str, d: Mapping[str, Any], raw: Mapping[str, Any]) -> Workload:
    spec = _map(d, "spec")
    status = _map(d, "status")
    template = _map(spec, "template")
    if kind == "DaemonSet":
        replicas = _int(status, "desiredNumberScheduled")
        ready = _int(status, "numberReady") or 0
        available = _int(status, "numberAvailable") or 0
    else:
        replicas = _int(spec, "replicas")
        if replicas is None and spec:
            replicas = 1  # the API's default
        ready = _int(status, "readyReplicas") or 0
        available = _int(status, "availableReplicas") or 0
    return Workload(
        kind=kind,  # type: ignore[arg-type]
        meta=parse_meta(d),
        selector=_str_map(_map(spec, "selector"), "matchLabels"),
        template_labels=_str_map(_map(template, "metadata"), "labels"),
        template=parse_pod_spec(_map(template, "spec")),
        replicas=replicas,
        ready_replicas=ready,
        available_replicas=available,
        raw=raw,
    )


def _configmap(d: Mapping[str, Any], raw: Mapping[str, Any]) -> ConfigMap:
    return ConfigMap(meta=parse_meta(d), data=_str_map(d, "data"), raw=raw)


def _pvc(d: Mapping[str, Any], raw: Mapping[str, Any]) -> PersistentVolumeClaim:
    spec = _map(d, "spec")
    sc = spec.get("storageClassName")
    return PersistentVolumeClaim(
        meta=parse_meta(d),
        phase=_str(_map(d, "status"), "phase"),
        storage_class=None if sc is None else str(sc),
        volume_name=_str(spec, "volumeName"),
        requested=_str(_map(_map(spec, "resources"), "requests"), "storage"),
        access_modes=tuple(str(m) for m in _list(spec, "accessModes")),
        raw=raw,
    )


def _pv_nodes(spec: Mapping[str, Any]) -> tuple[str, ...]:
    required = _map(_map(spec, "nodeAffinity"), "required")
    nodes: list[str] = []
    for term in _list(required, "nodeSelectorTerms"):
        if not isinstance(term, Mapping):
            continue
        for expr in _list(term, "matchExpressions"):
            if (
                isinstance(expr, Mapping)
                and _str(expr, "key") == "kubernetes.io/hostname"
                and _str(expr, "operator", "In") == "In"
            ):
                nodes += [str(v) for v in _list(expr, "values")]
    return tuple(dict.fromkeys(nodes))


def _pv(d: Mapping[str, Any], raw: Mapping[str, Any]) -> PersistentVolume:
    spec = _map(d, "spec")
    claim = _map(spec, "claimRef")
    sc = spec.get("storageClassName")
    return PersistentVolume(
        meta=parse_meta(d),
        phase=_str(_map(d, "status"), "phase"),
        storage_class=None if sc is None else str(sc),
        claim_namespace=_str(claim, "namespace"),
        claim_name=_str(claim, "name"),
        host_path=_str(_map(spec, "hostPath"), "path"),
        local_path=_str(_map(spec, "local"), "path"),
        node_names=_pv_nodes(spec),
        capacity=_str(_map(spec, "capacity"), "storage"),
        raw=raw,
    )


def _node(d: Mapping[str, Any], raw: Mapping[str, Any]) -> Node:
    spec = _map(d, "spec")
    taints = tuple(
        f"{_str(t, 'key')}{'=' + _str(t, 'value') if t.get('value') else ''}:{_str(t, 'effect')}"
        for t in _list(spec, "taints")
        if isinstance(t, Mapping)
    )
    return Node(
        meta=parse_meta(d),
        conditions=_conditions(_map(d, "status")),
        unschedulable=bool(_bool(spec, "unschedulable")),
        taints=taints,
        raw=raw,
    )


def _storage_class(d: Mapping[str, Any], raw: Mapping[str, Any]) -> StorageClass:
    return StorageClass(
        meta=parse_meta(d),
        provisioner=_str(d, "provisioner"),
        volume_binding_mode=_str(d, "volumeBindingMode", "Immediate"),
        raw=raw,
    )


def parse_object(obj: Mapping[str, Any], *, default_kind: str = "") -> ParsedObject | None:
    """One Kubernetes object (a dict as the API or kubectl gives it) -> its typed form.

    `default_kind` is for list items from the API, which carry no `kind`. Unknown kinds -> None.
    Raises ObjectError naming the object when a field has the wrong type."""
    if not isinstance(obj, Mapping):
        raise ObjectError(f"expected an object (mapping), got {type(obj).__name__}")
    kind = str(obj.get("kind") or default_kind)
    if kind not in KINDS:
        return None
    # Parse from the plain dict (fast); keep it as the read-only raw form (no copy: we own it now).
    d: dict[str, Any] = obj if type(obj) is dict else thaw(obj)
    if "kind" not in d:
        d = {"kind": kind, **d}
    raw = cast(Mapping[str, Any], freeze(d))
    try:
        match kind:
            case "Pod":
                return _pod(d, raw)
            case "Event":
                return _event(d, raw)
            case "Service":
                return _service(d, raw)
            case "Endpoints":
                return _endpoints(d, raw)
            case "EndpointSlice":
                return _endpoint_slice(d, raw)
            case "StatefulSet" | "Deployment" | "DaemonSet" | "ReplicaSet":
                return _workload(kind, d, raw)
            case "ConfigMap":
                return _configmap(d, raw)
            case "PersistentVolumeClaim":
                return _pvc(d, raw)
            case "PersistentVolume":
                return _pv(d, raw)
            case "Node":
                return _node(d, raw)
            case "StorageClass":
                return _storage_class(d, raw)
    except ObjectError as exc:
        meta = _map(obj, "metadata")
        where = "/".join(
            x for x in (str(meta.get("namespace") or ""), kind, str(meta.get("name") or "?")) if x
        )
        raise ObjectError(f"{where}: {exc}") from None
    return None


def expand_lists(doc: Any) -> Iterable[Mapping[str, Any]]:
    """Objects in a document: itself, or the items of a `kind: List` / `*List` (recursively)."""
    if doc is None:
        return
    if not isinstance(doc, Mapping):
        raise ObjectError(f"expected a Kubernetes object, got {type(doc).__name__}")
    kind = str(doc.get("kind") or "")
    items = doc.get("items")
    if (kind == "List" or kind.endswith("List")) and isinstance(items, list):
        item_kind = kind[: -len("List")] if kind != "List" else ""
        for item in items:
            if isinstance(item, Mapping) and "kind" not in item and item_kind:
                item = {"kind": item_kind, **item}
            yield from expand_lists(item)
        return
    yield doc


def parse_host_facts(host: str, doc: Any) -> HostFacts:
    """`hosts/<host>.yaml`: `paths: [{path, uid, gid, mode}]`.

    `mode` is octal text as `stat -c %a` prints it ("755" or "0755"), or a number that is the value
    itself. The bundle reader loads host files without YAML type guessing, so `mode: 0755` is text."""
    if doc is None:
        return HostFacts(host=host)
    if not isinstance(doc, Mapping):
        raise ObjectError("expected a mapping with `paths`")
    facts: list[HostPathFact] = []
    for i, entry in enumerate(_list(doc, "paths")):
        if not isinstance(entry, Mapping) or not _str(entry, "path"):
            raise ObjectError(f"paths[{i}]: expected a mapping with a `path`")
        mode_raw = entry.get("mode")
        mode: int | None
        if mode_raw is None:
            mode = None
        elif isinstance(mode_raw, int) and not isinstance(mode_raw, bool):
            mode = mode_raw  # a number is the value itself (JSON); text is octal digits
        else:
            try:
                mode = int(str(mode_raw), 8)
            except ValueError:
                raise ObjectError(
                    f"paths[{i}].mode: expected octal permission bits, got {mode_raw!r}"
                ) from None
        try:
            facts.append(
                HostPathFact(
                    path=_str(entry, "path"), uid=_int(entry, "uid"), gid=_int(entry, "gid"), mode=mode
                )
            )
        except ObjectError as exc:
            raise ObjectError(f"paths[{i}]: {exc}") from None
    return HostFacts(host=host, paths=tuple(facts))


def build_evidence(
    objects: Iterable[ParsedObject],
    *,
    namespaces: Iterable[str] = (),
    logs: Mapping[LogKey, tuple[str, ...]] | None = None,
    hosts: Iterable[HostFacts] = (),
    errors: Iterable[str] = (),
    observed_at: datetime | None = None,
) -> Evidence:
    """Sort parsed objects into an Evidence value. `observed_at` defaults to the newest timestamp
    found in the objects (a bundle's best guess of when it was taken)."""
    buckets: dict[type, list[Any]] = {}
    for obj in objects:
        buckets.setdefault(type(obj), []).append(obj)
    pods: list[Pod] = buckets.get(Pod, [])
    events: list[Event] = buckets.get(Event, [])
    if observed_at is None:
        observed_at = _newest_time(pods, events)
    ns_list = list(dict.fromkeys(namespaces))
    if not ns_list:
        seen = {p.namespace for p in pods} | {
            o.meta.namespace
            for b in buckets.values()
            for o in b
            if getattr(o, "meta", None) and o.meta.namespace
        }
        ns_list = sorted(n for n in seen if n)
    return Evidence(
        namespaces=tuple(ns_list),
        pods=tuple(pods),
        events=tuple(events),
        services=tuple(buckets.get(Service, [])),
        endpoints=tuple(buckets.get(Endpoints, [])),
        workloads=tuple(buckets.get(Workload, [])),
        configmaps=tuple(buckets.get(ConfigMap, [])),
        pvcs=tuple(buckets.get(PersistentVolumeClaim, [])),
        pvs=tuple(buckets.get(PersistentVolume, [])),
        nodes=tuple(buckets.get(Node, [])),
        storage_classes=tuple(buckets.get(StorageClass, [])),
        logs=MappingProxyType(dict(logs or {})),
        hosts=tuple(hosts),
        errors=tuple(errors),
        observed_at=observed_at,
    )


def _newest_time(pods: Iterable[Pod], events: Iterable[Event]) -> datetime | None:
    newest: datetime | None = None

    def see(t: datetime | None) -> None:
        nonlocal newest
        if t is not None and (newest is None or t > newest):
            newest = t

    for p in pods:
        see(p.start_time)
        for c in p.conditions:
            see(c.last_transition)
        for s in p.container_statuses + p.init_container_statuses:
            for st in (s.state, s.last_state):
                if st is not None:
                    see(st.started_at)
                    see(st.finished_at)
    for e in events:
        see(e.last_seen)
    return newest
