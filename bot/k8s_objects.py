"""Kubernetes objects as plain dicts -> pitcrew's typed evidence. The one parser.

Used by both the live collector (`bot.cluster`, which reads raw JSON, not the client's strict
models) and the bundle reader (`bot.snapshot`). It is lenient: a missing field becomes its default
and an unknown kind is ignored, because bundles are hand-made and partial objects are normal.
A value of the wrong type raises `ObjectError` naming the object, so a bad file gets a clear error.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal, cast

from bot.evidence import (
    EMPTY,
    ClaimTemplate,
    Condition,
    ConfigMap,
    Container,
    ContainerPort,
    ContainerState,
    ContainerStatus,
    CronJob,
    EndpointAddress,
    Endpoints,
    EnvRef,
    Event,
    Evidence,
    HorizontalPodAutoscaler,
    HostFacts,
    HostPathFact,
    HpaMetric,
    Ingress,
    IngressBackend,
    IngressClass,
    IngressPath,
    IngressRule,
    IngressTLS,
    Job,
    LabelSelector,
    LifecycleHook,
    LimitRange,
    LimitRangeItem,
    LogKey,
    Meta,
    NetworkPolicy,
    NetworkPolicyPeer,
    NetworkPolicyPort,
    NetworkPolicyRule,
    Node,
    OwnerRef,
    PersistentVolume,
    PersistentVolumeClaim,
    Pod,
    PodDisruptionBudget,
    PodSpec,
    Probe,
    ResourceQuota,
    SecretName,
    SecurityContext,
    SelectorRequirement,
    Service,
    ServicePort,
    StorageClass,
    Volume,
    VolumeMount,
    VolumeSource,
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
        "Job",
        "CronJob",
        "Ingress",
        "IngressClass",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ResourceQuota",
        "LimitRange",
        "NetworkPolicy",
        "Secret",
    }
)

# Kinds whose typed form has a `raw` field (remediation patches and backs them up, or the bundle writer
# writes them as read, when kept: see ALWAYS_RAW_KINDS). The others are written back from their
# fields (`to_manifest`).
RAW_KINDS = frozenset(
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

# Of RAW_KINDS, those that keep `raw` whatever the caller asks: plans read them as the API gave them
# (JSON Patch `test` values from the pod template). The others keep raw only when the caller will
# write the objects back as a bundle (`keep_raw=True`): a diagnosis reads the typed fields, and the
# raw dicts of 10,000 pods would be most of the memory it takes.
ALWAYS_RAW_KINDS = frozenset({"StatefulSet", "Deployment", "DaemonSet", "ReplicaSet"})

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
    | Job
    | CronJob
    | Ingress
    | IngressClass
    | HorizontalPodAutoscaler
    | PodDisruptionBudget
    | ResourceQuota
    | LimitRange
    | NetworkPolicy
    | SecretName
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


# Read-only string maps by content: the pods of one controller carry the same labels (and often
# annotations), so they share one map. Bounded like the container cache.
_STR_MAPS: dict[tuple[tuple[str, str], ...], Mapping[str, str]] = {}
_CACHE_LIMIT = 4096  # entries per cache; a full cache is cleared (a bound, not an eviction policy)


def _str_map(d: Mapping[str, Any], key: str) -> Mapping[str, str]:
    m = _map(d, key)
    if not m:
        return EMPTY
    items = tuple(m.items())
    if all(type(k) is str and type(v) is str for k, v in items):
        found = _STR_MAPS.get(items)
        if found is None:
            found = MappingProxyType(dict(items))
            if len(_STR_MAPS) >= _CACHE_LIMIT:
                _STR_MAPS.clear()
            _STR_MAPS[items] = found
        return found
    return MappingProxyType({str(k): "" if v is None else str(v) for k, v in items})


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 as Kubernetes writes it (`2025-10-09T21:54:40Z`, optional fraction); None if absent."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if type(value) is str:
        return _parse_time_text(value)
    return _parse_time_text(str(value))


@functools.lru_cache(maxsize=4096)
def _parse_time_text(value: str) -> datetime:
    """Cached: a cluster's objects share few distinct timestamps (pods of one rollout start together),
    so 10,000 pods parse a few hundred strings and share their (immutable) datetimes."""
    text = value.strip()
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
    timeout = _int(p, "timeoutSeconds") or 1
    return Probe(handler, port, path, command, delay, period, threshold, timeout)


def _hook(d: Mapping[str, Any], key: str) -> LifecycleHook | None:
    h = _map(_map(d, "lifecycle"), key)
    if not h:
        return None
    if "exec" in h:
        return LifecycleHook("exec", command=tuple(str(c) for c in _list(_map(h, "exec"), "command")))
    if "httpGet" in h:
        get = _map(h, "httpGet")
        return LifecycleHook("httpGet", port=_int_or_str(get.get("port")), path=_str(get, "path", "/"))
    if "tcpSocket" in h:
        return LifecycleHook("tcpSocket", port=_int_or_str(_map(h, "tcpSocket").get("port")))
    if "sleep" in h:
        return LifecycleHook("sleep", seconds=_int(_map(h, "sleep"), "seconds"))
    return LifecycleHook("none")


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


# Parsed containers by their JSON's repr: the pods of one controller share their template, so a
# 10,000-pod cluster has a few hundred distinct containers. repr() of a small dict is C code and far
# cheaper than parsing it again; equal repr means equal JSON, so sharing the (immutable) result is
# safe. Bounded: cleared when full.
_CONTAINERS: dict[str, Container] = {}


def _container(c: Mapping[str, Any]) -> Container:
    if type(c) is not dict:
        return _parse_container(c)
    key = repr(c)
    found = _CONTAINERS.get(key)
    if found is None:
        found = _parse_container(c)
        if len(_CONTAINERS) >= _CACHE_LIMIT:
            _CONTAINERS.clear()
        _CONTAINERS[key] = found
    return found


def _parse_container(c: Mapping[str, Any]) -> Container:
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
        startup_probe=_probe(c, "startupProbe"),
        post_start=_hook(c, "postStart"),
        pre_stop=_hook(c, "preStop"),
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
    if "projected" in v:
        sources: list[VolumeSource] = []
        for src in _list(_map(v, "projected"), "sources"):
            if not isinstance(src, Mapping):
                continue
            if "configMap" in src:
                ref = _map(src, "configMap")
                sources.append(VolumeSource("ConfigMap", _str(ref, "name"), bool(_bool(ref, "optional"))))
            if "secret" in src:
                ref = _map(src, "secret")
                sources.append(VolumeSource("Secret", _str(ref, "name"), bool(_bool(ref, "optional"))))
        return Volume(name, "projected", sources=tuple(sources))
    if "csi" in v:
        return Volume(name, "csi", driver=_str(_map(v, "csi"), "driver"))
    return Volume(name, "emptyDir" if "emptyDir" in v else "other")


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
        field_path=_str(inv, "fieldPath"),
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
    updated = _int(status, "updatedNumberScheduled" if kind == "DaemonSet" else "updatedReplicas")
    return Workload(
        kind=kind,  # type: ignore[arg-type]
        meta=parse_meta(d),
        selector=_str_map(_map(spec, "selector"), "matchLabels"),
        template_labels=_str_map(_map(template, "metadata"), "labels"),
        template=parse_pod_spec(_map(template, "spec")),
        replicas=replicas,
        ready_replicas=ready,
        available_replicas=available,
        updated_replicas=updated,
        generation=_int(_map(d, "metadata"), "generation"),
        observed_generation=_int(status, "observedGeneration"),
        conditions=_conditions(status),
        service_name=_str(spec, "serviceName"),
        claim_templates=tuple(
            ClaimTemplate(
                name=_str(_map(t, "metadata"), "name"),
                storage_class=_opt_str(_map(t, "spec"), "storageClassName"),
            )
            for t in _list(spec, "volumeClaimTemplates")
            if isinstance(t, Mapping)
        ),
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


# ---------------------------------------------------------------------------------------------
# kinds the breadth handlers read (no raw form kept; `to_manifest` writes them back)
# ---------------------------------------------------------------------------------------------


def _opt_str(d: Mapping[str, Any], key: str) -> str | None:
    v = d.get(key)
    return None if v is None else _str(d, key)


def _selector(d: Mapping[str, Any], key: str) -> LabelSelector | None:
    """A metav1.LabelSelector at `key`; None when the field is absent (which selects nothing)."""
    if d.get(key) is None:
        return None
    sel = _map(d, key)
    return LabelSelector(
        match_labels=_str_map(sel, "matchLabels"),
        match_expressions=tuple(
            SelectorRequirement(
                key=_str(e, "key"),
                operator=_str(e, "operator"),
                values=tuple(str(v) for v in _list(e, "values")),
            )
            for e in _list(sel, "matchExpressions")
            if isinstance(e, Mapping)
        ),
    )


def _job(d: Mapping[str, Any]) -> Job:
    spec = _map(d, "spec")
    status = _map(d, "status")
    template = _map(spec, "template")
    return Job(
        meta=parse_meta(d),
        template=parse_pod_spec(_map(template, "spec")),
        template_labels=_str_map(_map(template, "metadata"), "labels"),
        completions=_int(spec, "completions"),
        parallelism=_int(spec, "parallelism"),
        backoff_limit=_int(spec, "backoffLimit"),
        active_deadline_seconds=_int(spec, "activeDeadlineSeconds"),
        suspend=bool(_bool(spec, "suspend")),
        active=_int(status, "active") or 0,
        succeeded=_int(status, "succeeded") or 0,
        failed=_int(status, "failed") or 0,
        conditions=_conditions(status),
        start_time=parse_time(status.get("startTime")),
        completion_time=parse_time(status.get("completionTime")),
    )


def _cronjob(d: Mapping[str, Any]) -> CronJob:
    spec = _map(d, "spec")
    status = _map(d, "status")
    return CronJob(
        meta=parse_meta(d),
        schedule=_str(spec, "schedule"),
        suspend=bool(_bool(spec, "suspend")),
        concurrency_policy=_str(spec, "concurrencyPolicy", "Allow"),
        active=tuple(_str(a, "name") for a in _list(status, "active") if isinstance(a, Mapping)),
        last_schedule_time=parse_time(status.get("lastScheduleTime")),
        last_successful_time=parse_time(status.get("lastSuccessfulTime")),
    )


def _ingress_backend(b: Mapping[str, Any]) -> IngressBackend:
    if "service" in b:  # networking.k8s.io/v1
        svc = _map(b, "service")
        port = _map(svc, "port")
        return IngressBackend(
            service_name=_str(svc, "name"), port_number=_int(port, "number"), port_name=_str(port, "name")
        )
    if "serviceName" in b:  # extensions / networking.k8s.io v1beta1, still in old fixtures
        port_v = _int_or_str(b.get("servicePort"))
        return IngressBackend(
            service_name=_str(b, "serviceName"),
            port_number=port_v if isinstance(port_v, int) else None,
            port_name=port_v if isinstance(port_v, str) else "",
        )
    res = _map(b, "resource")
    return IngressBackend(resource_kind=_str(res, "kind"), resource_name=_str(res, "name"))


def _ingress(d: Mapping[str, Any]) -> Ingress:
    spec = _map(d, "spec")
    meta = parse_meta(d)
    default = _map(spec, "defaultBackend") or _map(spec, "backend")
    rules = []
    for r in _list(spec, "rules"):
        if not isinstance(r, Mapping):
            continue
        paths = tuple(
            IngressPath(
                path=_str(p, "path"),
                path_type=_str(p, "pathType"),
                backend=_ingress_backend(_map(p, "backend")),
            )
            for p in _list(_map(r, "http"), "paths")
            if isinstance(p, Mapping)
        )
        rules.append(IngressRule(host=_str(r, "host"), paths=paths))
    lb = _map(_map(d, "status"), "loadBalancer")
    return Ingress(
        meta=meta,
        class_name=_str(spec, "ingressClassName") or meta.annotations.get("kubernetes.io/ingress.class", ""),
        default_backend=_ingress_backend(default) if default else None,
        rules=tuple(rules),
        tls=tuple(
            IngressTLS(hosts=tuple(str(h) for h in _list(t, "hosts")), secret_name=_str(t, "secretName"))
            for t in _list(spec, "tls")
            if isinstance(t, Mapping)
        ),
        load_balancer=tuple(
            _str(i, "ip") or _str(i, "hostname") for i in _list(lb, "ingress") if isinstance(i, Mapping)
        ),
    )


def _ingress_class(d: Mapping[str, Any]) -> IngressClass:
    return IngressClass(meta=parse_meta(d), controller=_str(_map(d, "spec"), "controller"))


def _metric_value(v: Mapping[str, Any]) -> str:
    """A MetricTarget / MetricValueStatus as kubectl prints it: "80%" for a utilization."""
    utilization = _int(v, "averageUtilization")
    if utilization is not None:
        return f"{utilization}%"
    return _str(v, "averageValue") or _str(v, "value")


_METRIC_SOURCES = {
    "Resource": "resource",
    "ContainerResource": "containerResource",
    "Pods": "pods",
    "Object": "object",
    "External": "external",
}


def _metric_key(m: Mapping[str, Any]) -> tuple[str, str]:
    type_ = _str(m, "type")
    source = _map(m, _METRIC_SOURCES.get(type_, type_.lower()))
    name = _str(source, "name") or _str(_map(source, "metric"), "name")
    return type_, name


def _hpa(d: Mapping[str, Any]) -> HorizontalPodAutoscaler:
    spec = _map(d, "spec")
    status = _map(d, "status")
    meta = parse_meta(d)
    target = _map(spec, "scaleTargetRef")
    current: dict[tuple[str, str], str] = {}
    for m in _list(status, "currentMetrics"):
        if isinstance(m, Mapping):
            source = _map(m, _METRIC_SOURCES.get(_str(m, "type"), _str(m, "type").lower()))
            current[_metric_key(m)] = _metric_value(_map(source, "current"))
    metrics: list[HpaMetric] = []
    for m in _list(spec, "metrics"):
        if isinstance(m, Mapping):
            type_, name = _metric_key(m)
            source = _map(m, _METRIC_SOURCES.get(type_, type_.lower()))
            metrics.append(
                HpaMetric(type_, name, _metric_value(_map(source, "target")), current.get((type_, name), ""))
            )
    conditions = _conditions(status)
    cpu_target = _int(spec, "targetCPUUtilizationPercentage")
    if cpu_target is not None or "autoscaling.alpha.kubernetes.io/conditions" in meta.annotations:
        # autoscaling/v1, as older fixtures hold it: the CPU target in the spec, conditions in an annotation.
        if cpu_target is not None and not metrics:
            cpu_now = _int(status, "currentCPUUtilizationPercentage")
            metrics.append(
                HpaMetric("Resource", "cpu", f"{cpu_target}%", "" if cpu_now is None else f"{cpu_now}%")
            )
        if not conditions:
            conditions = _annotation_conditions(
                meta.annotations.get("autoscaling.alpha.kubernetes.io/conditions", "")
            )
    return HorizontalPodAutoscaler(
        meta=meta,
        target_kind=_str(target, "kind"),
        target_name=_str(target, "name"),
        min_replicas=_int(spec, "minReplicas") or 1,
        max_replicas=_int(spec, "maxReplicas") or 0,
        current_replicas=_int(status, "currentReplicas") or 0,
        desired_replicas=_int(status, "desiredReplicas") or 0,
        metrics=tuple(metrics),
        conditions=conditions,
    )


def _annotation_conditions(text: str) -> tuple[Condition, ...]:
    if not text:
        return ()
    try:
        data = json.loads(text)
    except ValueError:
        raise ObjectError("autoscaling.alpha.kubernetes.io/conditions: not JSON") from None
    if not isinstance(data, list):
        raise ObjectError("autoscaling.alpha.kubernetes.io/conditions: expected a list")
    return _conditions({"conditions": data})


def _pdb(d: Mapping[str, Any]) -> PodDisruptionBudget:
    spec = _map(d, "spec")
    status = _map(d, "status")
    return PodDisruptionBudget(
        meta=parse_meta(d),
        selector=_selector(spec, "selector"),
        min_available=_int_or_str(spec.get("minAvailable")),
        max_unavailable=_int_or_str(spec.get("maxUnavailable")),
        current_healthy=_int(status, "currentHealthy") or 0,
        desired_healthy=_int(status, "desiredHealthy") or 0,
        expected_pods=_int(status, "expectedPods") or 0,
        disruptions_allowed=_int(status, "disruptionsAllowed") or 0,
        observed_generation=_int(status, "observedGeneration"),
        conditions=_conditions(status),
    )


def _resource_quota(d: Mapping[str, Any]) -> ResourceQuota:
    spec = _map(d, "spec")
    status = _map(d, "status")
    return ResourceQuota(
        meta=parse_meta(d),
        hard=_str_map(status, "hard") or _str_map(spec, "hard"),
        used=_str_map(status, "used"),
        scopes=tuple(str(x) for x in _list(spec, "scopes")),
    )


def _limit_range(d: Mapping[str, Any]) -> LimitRange:
    return LimitRange(
        meta=parse_meta(d),
        limits=tuple(
            LimitRangeItem(
                type=_str(i, "type"),
                max=_str_map(i, "max"),
                min=_str_map(i, "min"),
                default=_str_map(i, "default"),
                default_request=_str_map(i, "defaultRequest"),
                max_limit_request_ratio=_str_map(i, "maxLimitRequestRatio"),
            )
            for i in _list(_map(d, "spec"), "limits")
            if isinstance(i, Mapping)
        ),
    )


def _np_rule(r: Mapping[str, Any], peers_key: str) -> NetworkPolicyRule:
    peers = tuple(
        NetworkPolicyPeer(
            pod_selector=_selector(p, "podSelector"),
            namespace_selector=_selector(p, "namespaceSelector"),
            ip_block=_str(_map(p, "ipBlock"), "cidr"),
            ip_block_except=tuple(str(x) for x in _list(_map(p, "ipBlock"), "except")),
        )
        for p in _list(r, peers_key)
        if isinstance(p, Mapping)
    )
    ports = tuple(
        NetworkPolicyPort(
            protocol=_str(p, "protocol", "TCP"), port=_int_or_str(p.get("port")), end_port=_int(p, "endPort")
        )
        for p in _list(r, "ports")
        if isinstance(p, Mapping)
    )
    return NetworkPolicyRule(peers=peers, ports=ports)


def _network_policy(d: Mapping[str, Any]) -> NetworkPolicy:
    spec = _map(d, "spec")
    ingress = tuple(_np_rule(r, "from") for r in _list(spec, "ingress") if isinstance(r, Mapping))
    egress = tuple(_np_rule(r, "to") for r in _list(spec, "egress") if isinstance(r, Mapping))
    types = tuple(str(t) for t in _list(spec, "policyTypes"))
    if not types:  # the API's default
        types = ("Ingress", "Egress") if "egress" in spec else ("Ingress",)
    return NetworkPolicy(
        meta=parse_meta(d),
        pod_selector=_selector(spec, "podSelector") or LabelSelector(),
        policy_types=types,
        ingress=ingress,
        egress=egress,
    )


def _secret(d: Mapping[str, Any]) -> SecretName:
    # Name and namespace only: never `data`, and not the annotations (kubectl's last-applied-configuration
    # holds the data too) nor the labels.
    m = _map(d, "metadata")
    return SecretName(meta=Meta(name=_str(m, "name"), namespace=_str(m, "namespace") or None))


def parse_object(
    obj: Mapping[str, Any], *, default_kind: str = "", keep_raw: bool = False
) -> ParsedObject | None:
    """One Kubernetes object (a dict as the API or kubectl gives it) -> its typed form.

    `default_kind` is for list items from the API, which carry no `kind`. Unknown kinds -> None.
    `raw` is kept for ALWAYS_RAW_KINDS, and for every RAW_KINDS kind with `keep_raw` (to write a
    bundle); it then owns `obj` (no copy). Raises ObjectError naming the object when a field has the
    wrong type."""
    if not isinstance(obj, Mapping):
        raise ObjectError(f"expected an object (mapping), got {type(obj).__name__}")
    kind = str(obj.get("kind") or default_kind)
    if kind not in KINDS:
        return None
    # Parse from the plain dict (fast).
    d: dict[str, Any] = obj if type(obj) is dict else thaw(obj)
    raw: Mapping[str, Any] = EMPTY
    if kind in ALWAYS_RAW_KINDS or (keep_raw and kind in RAW_KINDS):
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
            case "Job":
                return _job(d)
            case "CronJob":
                return _cronjob(d)
            case "Ingress":
                return _ingress(d)
            case "IngressClass":
                return _ingress_class(d)
            case "HorizontalPodAutoscaler":
                return _hpa(d)
            case "PodDisruptionBudget":
                return _pdb(d)
            case "ResourceQuota":
                return _resource_quota(d)
            case "LimitRange":
                return _limit_range(d)
            case "NetworkPolicy":
                return _network_policy(d)
            case "Secret":
                return _secret(d)
    except ObjectError as exc:
        meta = _map(obj, "metadata")
        where = "/".join(
            x for x in (str(meta.get("namespace") or ""), kind, str(meta.get("name") or "?")) if x
        )
        raise ObjectError(f"{where}: {exc}") from None
    return None


# ---------------------------------------------------------------------------------------------
# writing back (bundles): the kinds kept without `raw`, as manifests that parse to the same value
# ---------------------------------------------------------------------------------------------

_API_VERSIONS: Mapping[str, str] = MappingProxyType(
    {
        "Job": "batch/v1",
        "CronJob": "batch/v1",
        "Ingress": "networking.k8s.io/v1",
        "IngressClass": "networking.k8s.io/v1",
        "NetworkPolicy": "networking.k8s.io/v1",
        "HorizontalPodAutoscaler": "autoscaling/v2",
        "PodDisruptionBudget": "policy/v1",
        "ResourceQuota": "v1",
        "LimitRange": "v1",
        "Secret": "v1",
    }
)


def _time_out(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None and v != {} and v != []}


def _meta_out(meta: Meta) -> dict[str, Any]:
    return _drop_none(
        {
            "name": meta.name,
            "namespace": meta.namespace,
            "uid": meta.uid or None,
            "resourceVersion": meta.resource_version,
            "labels": dict(meta.labels),
            "annotations": dict(meta.annotations),
            "ownerReferences": [
                {"kind": o.kind, "name": o.name, "controller": o.controller} for o in meta.owners
            ],
            "creationTimestamp": _time_out(meta.created_at),
            "deletionTimestamp": "1970-01-01T00:00:00Z" if meta.deleting else None,
        }
    )


def _conditions_out(conditions: Iterable[Condition]) -> list[dict[str, Any]]:
    return [
        _drop_none(
            {
                "type": c.type,
                "status": c.status,
                "reason": c.reason or None,
                "message": c.message or None,
                "lastTransitionTime": _time_out(c.last_transition),
            }
        )
        for c in conditions
    ]


def _selector_out(sel: LabelSelector | None) -> dict[str, Any] | None:
    if sel is None:
        return None
    out: dict[str, Any] = {}
    if sel.match_labels:
        out["matchLabels"] = dict(sel.match_labels)
    if sel.match_expressions:
        out["matchExpressions"] = [
            _drop_none({"key": r.key, "operator": r.operator, "values": list(r.values)})
            for r in sel.match_expressions
        ]
    return out


def _pod_spec_out(spec: PodSpec) -> dict[str, Any]:
    """Enough of a pod template for the parser to give the same PodSpec back."""

    def probe(p: Probe | None) -> dict[str, Any] | None:
        if p is None:
            return None
        out: dict[str, Any] = {
            "initialDelaySeconds": p.initial_delay_seconds,
            "periodSeconds": p.period_seconds,
            "failureThreshold": p.failure_threshold,
        }
        if p.handler == "httpGet":
            out["httpGet"] = {"port": p.port, "path": p.path}
        elif p.handler in ("tcpSocket", "grpc"):
            out[p.handler] = {"port": p.port}
        elif p.handler == "exec":
            out["exec"] = {"command": list(p.command)}
        return out

    def sc(s: SecurityContext) -> dict[str, Any] | None:
        return (
            None
            if s.is_empty
            else _drop_none(
                {
                    "runAsUser": s.run_as_user,
                    "runAsGroup": s.run_as_group,
                    "fsGroup": s.fs_group,
                    "runAsNonRoot": s.run_as_non_root,
                }
            )
        )

    def env(c: Container) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        env_from: list[dict[str, Any]] = []
        env_list: list[dict[str, Any]] = []
        for r in c.env_refs:
            field = "configMap" if r.kind == "ConfigMap" else "secret"
            if r.key:
                env_list.append(
                    {
                        "name": r.key,
                        "valueFrom": {
                            f"{field}KeyRef": {"name": r.name, "key": r.key, "optional": r.optional}
                        },
                    }
                )
            else:
                env_from.append({f"{field}Ref": {"name": r.name, "optional": r.optional}})
        return env_from, env_list

    def container(c: Container) -> dict[str, Any]:
        env_from, env_list = env(c)
        return _drop_none(
            {
                "name": c.name,
                "image": c.image or None,
                "command": list(c.command),
                "args": list(c.args),
                "ports": [
                    _drop_none(
                        {"containerPort": p.container_port, "name": p.name or None, "protocol": p.protocol}
                    )
                    for p in c.ports
                ],
                "volumeMounts": [
                    _drop_none(
                        {
                            "name": m.name,
                            "mountPath": m.mount_path,
                            "subPath": m.sub_path or None,
                            "readOnly": m.read_only or None,
                        }
                    )
                    for m in c.volume_mounts
                ],
                "readinessProbe": probe(c.readiness_probe),
                "livenessProbe": probe(c.liveness_probe),
                "securityContext": sc(c.security_context),
                "resources": _drop_none({"limits": dict(c.limits), "requests": dict(c.requests)}),
                "envFrom": env_from,
                "env": env_list,
            }
        )

    def volume(v: Volume) -> dict[str, Any]:
        source: dict[str, Any]
        match v.kind:
            case "persistentVolumeClaim":
                source = {"claimName": v.claim_name}
            case "hostPath":
                source = {"path": v.host_path}
            case "configMap":
                source = {"name": v.config_map, "optional": v.optional}
            case "secret":
                source = {"secretName": v.secret, "optional": v.optional}
            case _:
                source = {}
        return {"name": v.name, ("emptyDir" if v.kind == "other" else v.kind): source}

    return _drop_none(
        {
            "containers": [container(c) for c in spec.containers],
            "initContainers": [container(c) for c in spec.init_containers],
            "volumes": [volume(v) for v in spec.volumes if v.kind != "other"],
            "securityContext": sc(spec.security_context),
            "nodeName": spec.node_name or None,
            "serviceAccountName": spec.service_account or None,
        }
    )


def _backend_out(b: IngressBackend) -> dict[str, Any]:
    if b.service_name:
        port = {"number": b.port_number} if b.port_number is not None else {"name": b.port_name}
        return {"service": {"name": b.service_name, "port": port}}
    return {"resource": {"kind": b.resource_kind, "name": b.resource_name}}


def _metric_target_out(value: str) -> dict[str, Any]:
    if value.endswith("%") and value[:-1].isdigit():
        return {"type": "Utilization", "averageUtilization": int(value[:-1])}
    return {"type": "AverageValue", "averageValue": value} if value else {}


def _hpa_out(h: HorizontalPodAutoscaler) -> tuple[dict[str, Any], dict[str, Any]]:
    spec_metrics: list[dict[str, Any]] = []
    current: list[dict[str, Any]] = []
    for m in h.metrics:
        field = _METRIC_SOURCES.get(m.type, m.type.lower())
        named = (
            {"name": m.name} if m.type in ("Resource", "ContainerResource") else {"metric": {"name": m.name}}
        )
        spec_metrics.append({"type": m.type, field: {**named, "target": _metric_target_out(m.target)}})
        if m.current:
            cur = _metric_target_out(m.current)
            cur.pop("type", None)
            current.append({"type": m.type, field: {**named, "current": cur}})
    spec = {
        "scaleTargetRef": {"kind": h.target_kind, "name": h.target_name},
        "minReplicas": h.min_replicas,
        "maxReplicas": h.max_replicas,
        "metrics": spec_metrics,
    }
    status = _drop_none(
        {
            "currentReplicas": h.current_replicas,
            "desiredReplicas": h.desired_replicas,
            "currentMetrics": current,
            "conditions": _conditions_out(h.conditions),
        }
    )
    return spec, status


def _rule_out(rule: NetworkPolicyRule, peers_key: str) -> dict[str, Any]:
    return _drop_none(
        {
            peers_key: [
                _drop_none(
                    {
                        "podSelector": _selector_out(p.pod_selector),
                        "namespaceSelector": _selector_out(p.namespace_selector),
                        "ipBlock": _drop_none({"cidr": p.ip_block, "except": list(p.ip_block_except)})
                        if p.ip_block
                        else None,
                    }
                )
                for p in rule.peers
            ],
            "ports": [
                _drop_none({"protocol": p.protocol, "port": p.port, "endPort": p.end_port})
                for p in rule.ports
            ],
        }
    )


def to_manifest(obj: ParsedObject) -> dict[str, Any]:
    """A parsed object as a Kubernetes manifest: `raw` when the object keeps it, else rebuilt from the
    typed fields so that parsing it gives the same value back (what bundles are written from).
    A Secret comes out as its name and namespace only."""
    raw = getattr(obj, "raw", None)
    if raw is not None:
        out: dict[str, Any] = thaw(raw)
        return out
    spec: dict[str, Any]
    status: dict[str, Any] = {}
    match obj:
        case Job():
            kind = "Job"
            spec = _drop_none(
                {
                    "template": _drop_none(
                        {
                            "metadata": _drop_none({"labels": dict(obj.template_labels)}),
                            "spec": _pod_spec_out(obj.template),
                        }
                    ),
                    "completions": obj.completions,
                    "parallelism": obj.parallelism,
                    "backoffLimit": obj.backoff_limit,
                    "activeDeadlineSeconds": obj.active_deadline_seconds,
                    "suspend": obj.suspend or None,
                }
            )
            status = _drop_none(
                {
                    "active": obj.active or None,
                    "succeeded": obj.succeeded or None,
                    "failed": obj.failed or None,
                    "conditions": _conditions_out(obj.conditions),
                    "startTime": _time_out(obj.start_time),
                    "completionTime": _time_out(obj.completion_time),
                }
            )
        case CronJob():
            kind = "CronJob"
            spec = {
                "schedule": obj.schedule,
                "suspend": obj.suspend,
                "concurrencyPolicy": obj.concurrency_policy,
            }
            status = _drop_none(
                {
                    "active": [{"kind": "Job", "name": n} for n in obj.active],
                    "lastScheduleTime": _time_out(obj.last_schedule_time),
                    "lastSuccessfulTime": _time_out(obj.last_successful_time),
                }
            )
        case Ingress():
            kind = "Ingress"
            spec = _drop_none(
                {
                    "ingressClassName": obj.class_name or None,
                    "defaultBackend": _backend_out(obj.default_backend) if obj.default_backend else None,
                    "rules": [
                        _drop_none(
                            {
                                "host": r.host or None,
                                "http": {
                                    "paths": [
                                        {
                                            "path": p.path,
                                            "pathType": p.path_type,
                                            "backend": _backend_out(p.backend),
                                        }
                                        for p in r.paths
                                    ]
                                }
                                if r.paths
                                else None,
                            }
                        )
                        for r in obj.rules
                    ],
                    "tls": [
                        _drop_none({"hosts": list(t.hosts), "secretName": t.secret_name or None})
                        for t in obj.tls
                    ],
                }
            )
            if obj.load_balancer:
                status = {"loadBalancer": {"ingress": [{"ip": a} for a in obj.load_balancer]}}
        case IngressClass():
            kind = "IngressClass"
            spec = {"controller": obj.controller}
        case HorizontalPodAutoscaler():
            kind = "HorizontalPodAutoscaler"
            spec, status = _hpa_out(obj)
        case PodDisruptionBudget():
            kind = "PodDisruptionBudget"
            spec = _drop_none(
                {
                    "selector": _selector_out(obj.selector) if obj.selector is not None else None,
                    "minAvailable": obj.min_available,
                    "maxUnavailable": obj.max_unavailable,
                }
            )
            if obj.selector is not None and obj.selector.is_empty:
                spec["selector"] = {}  # present and empty: selects every pod in the namespace
            status = _drop_none(
                {
                    "currentHealthy": obj.current_healthy,
                    "desiredHealthy": obj.desired_healthy,
                    "expectedPods": obj.expected_pods,
                    "disruptionsAllowed": obj.disruptions_allowed,
                    "observedGeneration": obj.observed_generation,
                    "conditions": _conditions_out(obj.conditions),
                }
            )
        case ResourceQuota():
            kind = "ResourceQuota"
            spec = _drop_none({"hard": dict(obj.hard), "scopes": list(obj.scopes)})
            status = _drop_none({"hard": dict(obj.hard), "used": dict(obj.used)})
        case LimitRange():
            kind = "LimitRange"
            spec = {
                "limits": [
                    _drop_none(
                        {
                            "type": i.type,
                            "max": dict(i.max),
                            "min": dict(i.min),
                            "default": dict(i.default),
                            "defaultRequest": dict(i.default_request),
                            "maxLimitRequestRatio": dict(i.max_limit_request_ratio),
                        }
                    )
                    for i in obj.limits
                ]
            }
        case NetworkPolicy():
            kind = "NetworkPolicy"
            spec = {
                "podSelector": _selector_out(obj.pod_selector),
                "policyTypes": list(obj.policy_types),
                "ingress": [_rule_out(r, "from") for r in obj.ingress],
                "egress": [_rule_out(r, "to") for r in obj.egress],
            }
        case SecretName():
            return {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": _drop_none({"name": obj.meta.name, "namespace": obj.meta.namespace}),
            }
        case _:
            raise ObjectError(f"{type(obj).__name__} without its raw form cannot be written")
    out = {"apiVersion": _API_VERSIONS[kind], "kind": kind, "metadata": _meta_out(obj.meta), "spec": spec}
    if status:
        out["status"] = status
    return out


def expand_lists(doc: Any) -> Iterable[Mapping[str, Any]]:
    """Objects in a document: itself, or the items of a `kind: List` / `*List` (recursively)."""
    for obj, kind in expand_lists_kinds(doc):
        if kind and "kind" not in obj:
            obj = {"kind": kind, **obj}
        yield obj


def expand_lists_kinds(doc: Any, default_kind: str = "") -> Iterator[tuple[Mapping[str, Any], str]]:
    """(object, kind its list names) for each object in a document, without copying any.

    A List's items are taken out of it as they are yielded (the list is emptied), so a caller that
    parses each item and drops it never holds the whole document and its typed form at once."""
    if doc is None:
        return
    if not isinstance(doc, Mapping):
        raise ObjectError(f"expected a Kubernetes object, got {type(doc).__name__}")
    kind = str(doc.get("kind") or "")
    items = doc.get("items")
    if (kind == "List" or kind.endswith("List")) and isinstance(items, list):
        item_kind = kind[: -len("List")] if kind != "List" else ""
        items.reverse()  # pop() from the end is O(1): take the items in their order
        while items:
            yield from expand_lists_kinds(items.pop(), item_kind)
        return
    yield doc, default_kind


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
        jobs=tuple(buckets.get(Job, [])),
        cronjobs=tuple(buckets.get(CronJob, [])),
        ingresses=tuple(buckets.get(Ingress, [])),
        ingress_classes=tuple(buckets.get(IngressClass, [])),
        hpas=tuple(buckets.get(HorizontalPodAutoscaler, [])),
        pdbs=tuple(buckets.get(PodDisruptionBudget, [])),
        resource_quotas=tuple(buckets.get(ResourceQuota, [])),
        limit_ranges=tuple(buckets.get(LimitRange, [])),
        network_policies=tuple(buckets.get(NetworkPolicy, [])),
        secrets=tuple(buckets.get(SecretName, [])),
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
