"""The immutable, typed evidence a diagnosis works on.

`Evidence` is what handlers see: Kubernetes objects parsed once (by `bot.k8s_objects`) from plain
dicts into the frozen dataclasses below, container logs, host facts and what could not be read.
Both sources build it the same way: `bot.cluster.Cluster.collect` (live) and
`bot.snapshot.read_bundle` (offline). Handlers never call the cluster.

Handlers read the typed fields. Workloads (`bot.k8s_objects.ALWAYS_RAW_KINDS`) also keep `raw`, the
object as the API server (or the bundle) gave it, read-only (a `FrozenJson` mapping: nested objects
read-only too, arrays as tuples): plans need it for JSON Patch `test` ops (exact spec values);
`thaw(raw)` gives back plain JSON data. The other kinds' `raw` is empty unless the evidence was read
to be written back as a bundle (`keep_raw=True`): at 10,000 pods the raw dicts were most of the
memory. A handler that needs a field adds it to the typed view (as `Event.field_path`), never raw.
"""

from __future__ import annotations

import contextlib
import functools
import gc
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from bot.model import ObjectRef

EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty_map() -> Mapping[str, Any]:
    return EMPTY


@contextlib.contextmanager
def paused_gc(*, keep: bool = False) -> Iterator[None]:
    """Pause the cyclic garbage collector around parsing and diagnosing: both allocate millions of
    small acyclic objects, and the collector would walk the growing heap again and again (seconds at
    10,000 pods). Reference counting still frees everything; collection resumes afterwards.

    `keep`: what exists when the block ends is moved out of the collector's reach (`gc.freeze`), for
    a one-shot process (the CLI reading a bundle) that keeps its evidence until it exits: the first
    collection after the pause would otherwise walk every new object once more (0.3 s at 10,000
    pods). Frozen objects are still freed by reference counting; the evidence holds no cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if keep:
            gc.freeze()
        if enabled:
            gc.enable()


class FrozenJson(Mapping[str, Any]):
    """A read-only view of a JSON object: nested objects come out as FrozenJson, arrays as tuples.

    Wrapping is lazy (done on access), so keeping the raw form of 10,000 objects costs nothing up
    front. It owns the dict it wraps: callers hand over freshly parsed JSON and keep no reference."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return _wrap(self._data[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __repr__(self) -> str:
        return f"FrozenJson({self._data!r})"

    def thaw(self) -> dict[str, Any]:
        copied: dict[str, Any] = _copy(self._data)
        return copied


def _wrap(value: Any) -> Any:
    if type(value) is dict:
        return FrozenJson(value)
    if type(value) is list:
        return tuple(_wrap(v) for v in value)
    return value


def _copy(value: Any) -> Any:
    if type(value) is dict:
        return {k: _copy(v) for k, v in value.items()}
    if type(value) is list:
        return [_copy(v) for v in value]
    return value


def freeze(value: Any) -> Any:
    """Read-only JSON data: objects become FrozenJson views, arrays tuples (takes ownership)."""
    if isinstance(value, FrozenJson):
        return value
    if isinstance(value, dict):
        return FrozenJson(value)
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Plain, mutable JSON data (dict/list) from frozen data; a deep copy, safe to json.dumps or edit."""
    if isinstance(value, FrozenJson):
        return value.thaw()
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# Common pieces
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OwnerRef:
    kind: str
    name: str
    controller: bool = False


@dataclass(frozen=True, slots=True)
class Meta:
    name: str
    namespace: str | None = None
    uid: str = ""
    resource_version: str | None = None
    labels: Mapping[str, str] = field(default_factory=_empty_map)
    annotations: Mapping[str, str] = field(default_factory=_empty_map)
    owners: tuple[OwnerRef, ...] = ()
    created_at: datetime | None = None
    deleting: bool = False  # metadata.deletionTimestamp is set

    @property
    def controller(self) -> OwnerRef | None:
        for owner in self.owners:
            if owner.controller:
                return owner
        return self.owners[0] if self.owners else None


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str = ""
    message: str = ""
    last_transition: datetime | None = None


# ---------------------------------------------------------------------------------------------
# Pod spec (also the template of workloads)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SecurityContext:
    run_as_user: int | None = None
    run_as_group: int | None = None
    fs_group: int | None = None
    run_as_non_root: bool | None = None

    @property
    def is_empty(self) -> bool:
        return self == SecurityContext()


@dataclass(frozen=True, slots=True)
class ContainerPort:
    container_port: int
    name: str = ""
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True)
class Probe:
    handler: Literal["httpGet", "tcpSocket", "exec", "grpc", "none"]
    port: int | str | None = None  # number or named port
    path: str = ""
    command: tuple[str, ...] = ()
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    failure_threshold: int = 3
    timeout_seconds: int = 1


@dataclass(frozen=True, slots=True)
class LifecycleHook:
    """A postStart or preStop hook: what the kubelet runs (exec, httpGet, tcpSocket, sleep)."""

    handler: Literal["exec", "httpGet", "tcpSocket", "sleep", "none"]
    port: int | str | None = None
    path: str = ""
    command: tuple[str, ...] = ()
    seconds: int | None = None  # sleep


@dataclass(frozen=True, slots=True)
class VolumeMount:
    name: str
    mount_path: str
    sub_path: str = ""
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class EnvRef:
    """A ConfigMap or Secret the container needs (envFrom or env valueFrom); `key` empty for envFrom."""

    kind: Literal["ConfigMap", "Secret"]
    name: str
    key: str = ""
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Container:
    name: str
    image: str = ""
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    volume_mounts: tuple[VolumeMount, ...] = ()
    readiness_probe: Probe | None = None
    liveness_probe: Probe | None = None
    startup_probe: Probe | None = None
    post_start: LifecycleHook | None = None
    pre_stop: LifecycleHook | None = None
    security_context: SecurityContext = SecurityContext()
    limits: Mapping[str, str] = field(default_factory=_empty_map)
    requests: Mapping[str, str] = field(default_factory=_empty_map)
    env_refs: tuple[EnvRef, ...] = ()

    @property
    def argv(self) -> tuple[str, ...]:
        return self.command + self.args


VolumeKind = Literal[
    "persistentVolumeClaim", "hostPath", "configMap", "secret", "emptyDir", "projected", "csi", "other"
]


@dataclass(frozen=True, slots=True)
class VolumeSource:
    """A ConfigMap or Secret a projected volume is made of."""

    kind: Literal["ConfigMap", "Secret"]
    name: str
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Volume:
    name: str
    kind: VolumeKind
    claim_name: str = ""  # persistentVolumeClaim
    host_path: str = ""  # hostPath
    config_map: str = ""  # configMap
    secret: str = ""  # secret
    optional: bool = False
    sources: tuple[VolumeSource, ...] = ()  # projected: its ConfigMaps and Secrets
    driver: str = ""  # csi: the CSI driver's name


@dataclass(frozen=True, slots=True)
class PodSpec:
    containers: tuple[Container, ...] = ()
    init_containers: tuple[Container, ...] = ()
    volumes: tuple[Volume, ...] = ()
    security_context: SecurityContext = SecurityContext()
    node_name: str = ""
    service_account: str = ""

    def container(self, name: str) -> Container | None:
        for c in self.containers + self.init_containers:
            if c.name == name:
                return c
        return None

    def volume(self, name: str) -> Volume | None:
        for v in self.volumes:
            if v.name == name:
                return v
        return None


# ---------------------------------------------------------------------------------------------
# Pod status
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContainerState:
    state: Literal["waiting", "running", "terminated", "unknown"]
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ContainerStatus:
    name: str
    ready: bool
    restart_count: int
    state: ContainerState
    last_state: ContainerState | None = None  # lastState.terminated, when there was one
    image: str = ""
    started: bool | None = None
    init: bool = False


@dataclass(frozen=True, slots=True)
class Pod:
    meta: Meta
    spec: PodSpec
    phase: str = ""
    reason: str = ""  # status.reason, e.g. Evicted
    message: str = ""
    conditions: tuple[Condition, ...] = ()
    container_statuses: tuple[ContainerStatus, ...] = ()
    init_container_statuses: tuple[ContainerStatus, ...] = ()
    pod_ip: str = ""
    start_time: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=_empty_map, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def namespace(self) -> str:
        return self.meta.namespace or ""

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef("Pod", self.meta.name, self.meta.namespace)

    @property
    def node_name(self) -> str:
        return self.spec.node_name

    def condition(self, type_: str) -> Condition | None:
        for c in self.conditions:
            if c.type == type_:
                return c
        return None

    @property
    def ready(self) -> bool:
        cond = self.condition("Ready")
        return cond is not None and cond.status == "True"

    def status_of(self, container: str) -> ContainerStatus | None:
        for s in self.container_statuses + self.init_container_statuses:
            if s.name == container:
                return s
        return None


# ---------------------------------------------------------------------------------------------
# Other kinds
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    meta: Meta
    involved: ObjectRef
    reason: str = ""
    message: str = ""
    type: str = "Normal"  # Normal | Warning
    count: int = 1
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    source: str = ""
    # involvedObject.fieldPath (events.k8s.io: regarding.fieldPath), e.g. "spec.containers{app}".
    field_path: str = ""
    raw: Mapping[str, Any] = field(default_factory=_empty_map, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class ServicePort:
    port: int
    target_port: int | str | None = None
    name: str = ""
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True)
class Service:
    meta: Meta
    selector: Mapping[str, str] = field(default_factory=_empty_map)
    ports: tuple[ServicePort, ...] = ()
    type: str = "ClusterIP"
    cluster_ip: str = ""
    raw: Mapping[str, Any] = field(default_factory=_empty_map, repr=False, compare=False)

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef("Service", self.meta.name, self.meta.namespace)


@dataclass(frozen=True, slots=True)
class EndpointAddress:
    ip: str
    pod: str = ""  # targetRef name when the target is a Pod
    node: str = ""


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Endpoints of one Service, from a core/v1 Endpoints object or merged EndpointSlices."""

    meta: Meta
    ready: tuple[EndpointAddress, ...] = ()
    not_ready: tuple[EndpointAddress, ...] = ()
    source: Literal["Endpoints", "EndpointSlice"] = "Endpoints"
    raw: Mapping[str, Any] = field(default_factory=_empty_map, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class ClaimTemplate:
    """One StatefulSet volumeClaimTemplate: its name and storageClassName (None: the default class)."""

    name: str
    storage_class: str | None = None


@dataclass(frozen=True, slots=True)
class Workload:
    """StatefulSet, Deployment, DaemonSet or ReplicaSet."""

    kind: Literal["StatefulSet", "Deployment", "DaemonSet", "ReplicaSet"]
    meta: Meta
    selector: Mapping[str, str] = field(
        default_factory=_empty_map
    )  # matchLabels (matchExpressions are not modelled)
    template_labels: Mapping[str, str] = field(default_factory=_empty_map)
    template: PodSpec = PodSpec()
    replicas: int | None = None  # desired (DaemonSet: desiredNumberScheduled)
    ready_replicas: int = 0
    available_replicas: int = 0
    # Rollout state: status.updatedReplicas (DaemonSet: updatedNumberScheduled), the generation the
    # controller has seen against metadata.generation, and the status conditions (Progressing, ...).
    updated_replicas: int | None = None
    generation: int | None = None
    observed_generation: int | None = None
    conditions: tuple[Condition, ...] = ()
    # StatefulSet: spec.serviceName and the volumeClaimTemplates.
    service_name: str = ""
    claim_templates: tuple[ClaimTemplate, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=_empty_map, repr=False, compare=False)

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(self.kind, self.meta.name, self.meta.namespace)

    def condition(self, type_: str) -> Condition | None:
        for c in self.conditions:
            if c.type == type_:
                return c
        return None


@dataclass(frozen=True, slots=True)
class ConfigMap:
    meta: Meta
    data: Mapping[str, str] = field(default_factory=_empty_map)
    raw: Mapping[str, Any] = field(default_factory=_empty_map, repr=False, compare=False)

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef("ConfigMap", self.meta.name, self.meta.namespace)


@dataclass(frozen=True, slots=True)
class PersistentVolumeClaim:
    meta: Meta
    phase: str = ""
    storage_class: str | None = None
    volume_name: str = ""
    requested: str = ""
    access_modes: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=_empty_map, repr=False, compare=False)

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef("PersistentVolumeClaim", self.meta.name, self.meta.namespace)


@dataclass(frozen=True, slots=True)
class PersistentVolume:
    meta: Meta
    phase: str = ""
    storage_class: str | None = None
    claim_namespace: str = ""
    claim_name: str = ""
    host_path: str = ""  # spec.hostPath.path
    local_path: str = ""  # spec.local.path
    node_names: tuple[str, ...] = ()  # nodeAffinity required kubernetes.io/hostname values
    capacity: str = ""
    raw: Mapping[str, Any] = field(default_factory=_empty_map, repr=False, compare=False)

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef("PersistentVolume", self.meta.name)

    @property
    def path_on_node(self) -> str:
        return self.local_path or self.host_path


@dataclass(frozen=True, slots=True)
class Node:
    meta: Meta
    conditions: tuple[Condition, ...] = ()
    unschedulable: bool = False
    taints: tuple[str, ...] = ()  # "key=value:Effect"
    raw: Mapping[str, Any] = field(default_factory=_empty_map, repr=False, compare=False)

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef("Node", self.meta.name)

    @property
    def ready_condition(self) -> Condition | None:
        for c in self.conditions:
            if c.type == "Ready":
                return c
        return None


@dataclass(frozen=True, slots=True)
class StorageClass:
    meta: Meta
    provisioner: str = ""
    volume_binding_mode: str = "Immediate"
    raw: Mapping[str, Any] = field(default_factory=_empty_map, repr=False, compare=False)


# ---------------------------------------------------------------------------------------------
# Kinds the breadth handlers read (batch, networking, autoscaling, policy, quotas, secret names).
# They keep no raw form: nothing patches them, and `bot.k8s_objects.to_manifest` writes them back
# into bundles from these fields.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SelectorRequirement:
    key: str
    operator: str  # In | NotIn | Exists | DoesNotExist
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        match self.operator:
            case "In":
                return labels.get(self.key) in self.values
            case "NotIn":
                return labels.get(self.key) not in self.values
            case "Exists":
                return self.key in labels
            case "DoesNotExist":
                return self.key not in labels
        return False


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A metav1.LabelSelector. As the API reads it, an empty selector selects everything."""

    match_labels: Mapping[str, str] = field(default_factory=_empty_map)
    match_expressions: tuple[SelectorRequirement, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            r.matches(labels) for r in self.match_expressions
        )


@dataclass(frozen=True, slots=True)
class Job:
    meta: Meta
    template: PodSpec = PodSpec()
    template_labels: Mapping[str, str] = field(default_factory=_empty_map)
    completions: int | None = None
    parallelism: int | None = None
    backoff_limit: int | None = None
    active_deadline_seconds: int | None = None
    suspend: bool = False
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    conditions: tuple[Condition, ...] = ()
    start_time: datetime | None = None
    completion_time: datetime | None = None

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef("Job", self.meta.name, self.meta.namespace)

    def condition(self, type_: str) -> Condition | None:
        for c in self.conditions:
            if c.type == type_:
                return c
        return None

    @property
    def failed_condition(self) -> Condition | None:
        """The `Failed=True` condition (BackoffLimitExceeded, DeadlineExceeded, ...), if the Job failed."""
        cond = self.condition("Failed")
        return cond if cond is not None and cond.status == "True" else None

    @property
    def complete(self) -> bool:
        cond = self.condition("Complete")
        return cond is not None and cond.status == "True"


@dataclass(frozen=True, slots=True)
class CronJob:
    meta: Meta
    schedule: str = ""
    suspend: bool = False
    concurrency_policy: str = "Allow"
    active: tuple[str, ...] = ()  # names of the Jobs running now
    last_schedule_time: datetime | None = None
    last_successful_time: datetime | None = None

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef("CronJob", self.meta.name, self.meta.namespace)


@dataclass(frozen=True, slots=True)
class IngressBackend:
    """A Service backend (`service_name` and a port number or name) or a resource backend."""

    service_name: str = ""
    port_number: int | None = None
    port_name: str = ""
    resource_kind: str = ""
    resource_name: str = ""

    @property
    def port(self) -> str:
        return str(self.port_number) if self.port_number is not None else self.port_name

    def __str__(self) -> str:
        if self.service_name:
            return f"service {self.service_name}:{self.port or '?'}"
        return f"{self.resource_kind or 'resource'} {self.resource_name}"


@dataclass(frozen=True, slots=True)
class IngressPath:
    path: str
    path_type: str
    backend: IngressBackend


@dataclass(frozen=True, slots=True)
class IngressRule:
    host: str = ""
    paths: tuple[IngressPath, ...] = ()


@dataclass(frozen=True, slots=True)
class IngressTLS:
    hosts: tuple[str, ...] = ()
    secret_name: str = ""


@dataclass(frozen=True, slots=True)
class Ingress:
    meta: Meta
    class_name: str = ""  # spec.ingressClassName, else the kubernetes.io/ingress.class annotation
    default_backend: IngressBackend | None = None
    rules: tuple[IngressRule, ...] = ()
    tls: tuple[IngressTLS, ...] = ()
    load_balancer: tuple[str, ...] = ()  # status.loadBalancer.ingress IPs / hostnames

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef("Ingress", self.meta.name, self.meta.namespace)


@dataclass(frozen=True, slots=True)
class IngressClass:
    meta: Meta
    controller: str = ""

    @property
    def is_default(self) -> bool:
        return self.meta.annotations.get("ingressclass.kubernetes.io/is-default-class") == "true"


@dataclass(frozen=True, slots=True)
class HpaMetric:
    """One metric of an autoscaling/v2 HPA: the spec's target, joined with the status's current value.

    `target` and `current` are as kubectl prints them: "80%" for a utilization, else the quantity."""

    type: str  # Resource | ContainerResource | Pods | Object | External
    name: str  # cpu, memory, or the metric's name
    target: str = ""
    current: str = ""


@dataclass(frozen=True, slots=True)
class HorizontalPodAutoscaler:
    meta: Meta
    target_kind: str = ""
    target_name: str = ""
    min_replicas: int = 1
    max_replicas: int = 0
    current_replicas: int = 0
    desired_replicas: int = 0
    metrics: tuple[HpaMetric, ...] = ()
    conditions: tuple[Condition, ...] = ()

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef("HorizontalPodAutoscaler", self.meta.name, self.meta.namespace)

    def condition(self, type_: str) -> Condition | None:
        for c in self.conditions:
            if c.type == type_:
                return c
        return None


@dataclass(frozen=True, slots=True)
class PodDisruptionBudget:
    meta: Meta
    selector: LabelSelector | None = None  # None: no selector (selects nothing in policy/v1)
    min_available: int | str | None = None
    max_unavailable: int | str | None = None
    current_healthy: int = 0
    desired_healthy: int = 0
    expected_pods: int = 0
    disruptions_allowed: int = 0
    observed_generation: int | None = None
    conditions: tuple[Condition, ...] = ()

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef("PodDisruptionBudget", self.meta.name, self.meta.namespace)


@dataclass(frozen=True, slots=True)
class ResourceQuota:
    meta: Meta
    hard: Mapping[str, str] = field(default_factory=_empty_map)  # status.hard (spec.hard if no status)
    used: Mapping[str, str] = field(default_factory=_empty_map)
    scopes: tuple[str, ...] = ()

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef("ResourceQuota", self.meta.name, self.meta.namespace)


@dataclass(frozen=True, slots=True)
class LimitRangeItem:
    type: str  # Container | Pod | PersistentVolumeClaim
    max: Mapping[str, str] = field(default_factory=_empty_map)
    min: Mapping[str, str] = field(default_factory=_empty_map)
    default: Mapping[str, str] = field(default_factory=_empty_map)
    default_request: Mapping[str, str] = field(default_factory=_empty_map)
    max_limit_request_ratio: Mapping[str, str] = field(default_factory=_empty_map)


@dataclass(frozen=True, slots=True)
class LimitRange:
    meta: Meta
    limits: tuple[LimitRangeItem, ...] = ()

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef("LimitRange", self.meta.name, self.meta.namespace)


@dataclass(frozen=True, slots=True)
class NetworkPolicyPort:
    protocol: str = "TCP"
    port: int | str | None = None  # None: every port
    end_port: int | None = None


@dataclass(frozen=True, slots=True)
class NetworkPolicyPeer:
    """One `from`/`to` entry. Both selectors None and no `ip_block`: not a valid peer (never matches)."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: str = ""  # CIDR
    ip_block_except: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkPolicyRule:
    """An ingress or egress rule. Empty `peers`: any peer; empty `ports`: any port."""

    peers: tuple[NetworkPolicyPeer, ...] = ()
    ports: tuple[NetworkPolicyPort, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    meta: Meta
    pod_selector: LabelSelector = LabelSelector()
    policy_types: tuple[str, ...] = ()  # as the API defaults them: Ingress, plus Egress if egress rules
    ingress: tuple[NetworkPolicyRule, ...] = ()
    egress: tuple[NetworkPolicyRule, ...] = ()

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef("NetworkPolicy", self.meta.name, self.meta.namespace)


@dataclass(frozen=True, slots=True)
class SecretName:
    """That a Secret exists: its name and namespace, nothing else. pitcrew lists Secrets metadata-only
    and keeps neither data nor annotations (`last-applied-configuration` would hold the data)."""

    meta: Meta

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef("Secret", self.meta.name, self.meta.namespace)


@dataclass(frozen=True, slots=True)
class HostPathFact:
    path: str
    uid: int | None = None
    gid: int | None = None
    mode: int | None = None  # permission bits, e.g. 0o755


@dataclass(frozen=True, slots=True)
class HostFacts:
    host: str  # host name from config `hosts` (or the bundle's hosts/<host>.yaml)
    paths: tuple[HostPathFact, ...] = ()

    def fact_for(self, path: str) -> HostPathFact | None:
        """The fact about `path` itself or the nearest parent path that has one."""
        best: HostPathFact | None = None
        for fact in self.paths:
            p = fact.path.rstrip("/") or "/"
            if (path == p or path.startswith(p + "/") or p == "/") and (
                best is None or len(p) > len(best.path)
            ):
                best = fact
        return best


class LogKey(NamedTuple):
    namespace: str
    pod: str
    container: str
    previous: bool


# ---------------------------------------------------------------------------------------------
# Scope of a collection
# ---------------------------------------------------------------------------------------------

# Alert labels that name an object in scope, and the kind each one names.
SCOPE_LABELS: Mapping[str, str] = MappingProxyType(
    {
        "pod": "Pod",
        "statefulset": "StatefulSet",
        "deployment": "Deployment",
        "daemonset": "DaemonSet",
        "service": "Service",
        "persistentvolumeclaim": "PersistentVolumeClaim",
        "node": "Node",
    }
)


@dataclass(frozen=True, slots=True)
class Scope:
    """What to collect: whole namespaces, plus the objects alerts named (for ordering/focus)."""

    namespaces: tuple[str, ...]
    focus: tuple[ObjectRef, ...] = ()

    @classmethod
    def from_alerts(cls, alerts: Iterable[Any], default_namespaces: Iterable[str]) -> Scope:
        """Namespaces from config plus each alert's `namespace` label; focus from its object labels.

        `alerts` are `bot.model.Alert` (anything with `.labels`)."""
        namespaces = list(dict.fromkeys(default_namespaces))
        focus: list[ObjectRef] = []
        for alert in alerts:
            labels: Mapping[str, str] = alert.labels
            ns = labels.get("namespace")
            if ns and ns not in namespaces:
                namespaces.append(ns)
            for label, kind in SCOPE_LABELS.items():
                name = labels.get(label)
                if name:
                    ref = ObjectRef(kind, name, None if kind == "Node" else ns)
                    if ref not in focus:
                        focus.append(ref)
        return cls(namespaces=tuple(namespaces), focus=tuple(focus))


# ---------------------------------------------------------------------------------------------
# Evidence
# ---------------------------------------------------------------------------------------------


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@dataclass(frozen=True)
class Evidence:
    """Everything one diagnosis knows. Index helpers are computed once and cached (the value never
    changes), so handlers stay linear in the size of the cluster."""

    namespaces: tuple[str, ...] = ()
    pods: tuple[Pod, ...] = ()
    events: tuple[Event, ...] = ()
    services: tuple[Service, ...] = ()
    endpoints: tuple[Endpoints, ...] = ()
    workloads: tuple[Workload, ...] = ()
    configmaps: tuple[ConfigMap, ...] = ()
    pvcs: tuple[PersistentVolumeClaim, ...] = ()
    pvs: tuple[PersistentVolume, ...] = ()
    nodes: tuple[Node, ...] = ()
    storage_classes: tuple[StorageClass, ...] = ()
    jobs: tuple[Job, ...] = ()
    cronjobs: tuple[CronJob, ...] = ()
    ingresses: tuple[Ingress, ...] = ()
    ingress_classes: tuple[IngressClass, ...] = ()
    hpas: tuple[HorizontalPodAutoscaler, ...] = ()
    pdbs: tuple[PodDisruptionBudget, ...] = ()
    resource_quotas: tuple[ResourceQuota, ...] = ()
    limit_ranges: tuple[LimitRange, ...] = ()
    network_policies: tuple[NetworkPolicy, ...] = ()
    secrets: tuple[SecretName, ...] = ()
    logs: Mapping[LogKey, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    hosts: tuple[HostFacts, ...] = ()
    errors: tuple[str, ...] = ()
    # When the evidence describes the cluster (collection time, or the newest timestamp in a bundle);
    # lets handlers tell a fresh crash from an old, already-recovered one.
    observed_at: datetime | None = None

    # -- lookups ------------------------------------------------------------------------------

    def unlisted(self, resource: str, namespace: str | None = None) -> bool:
        """Whether listing `resource` (RBAC plural, e.g. "pods") failed in `namespace` (None: the
        cluster-scoped list): then an object missing from the evidence proves nothing."""
        where = f" in {namespace}" if namespace else ""
        return any(e.startswith(f"cannot list {resource}{where}:") for e in self.errors)

    def log(self, namespace: str, pod: str, container: str, *, previous: bool = False) -> tuple[str, ...]:
        return self.logs.get(LogKey(namespace, pod, container, previous), ())

    def pod(self, namespace: str, name: str) -> Pod | None:
        return self._pods_by_key.get((namespace, name))

    def configmap(self, namespace: str, name: str) -> ConfigMap | None:
        return self._configmaps_by_key.get((namespace, name))

    def pvc(self, namespace: str, name: str) -> PersistentVolumeClaim | None:
        return self._pvcs_by_key.get((namespace, name))

    def pv(self, name: str) -> PersistentVolume | None:
        return self._pvs_by_name.get(name)

    def pv_for_claim(self, namespace: str, claim: str) -> PersistentVolume | None:
        pvc = self.pvc(namespace, claim)
        if pvc is not None and pvc.volume_name:
            pv = self.pv(pvc.volume_name)
            if pv is not None:
                return pv
        return self._pvs_by_claim.get((namespace, claim))

    def node(self, name: str) -> Node | None:
        return self._nodes_by_name.get(name)

    def storage_class(self, name: str) -> StorageClass | None:
        for sc in self.storage_classes:
            if sc.meta.name == name:
                return sc
        return None

    def service(self, namespace: str, name: str) -> Service | None:
        return self._services_by_key.get((namespace, name))

    def job(self, namespace: str, name: str) -> Job | None:
        return self._jobs_by_key.get((namespace, name))

    def secret_exists(self, namespace: str, name: str) -> bool:
        """Whether the Secret was listed. Check `unlisted("secrets", namespace)` before reading a
        False as "missing": without the list, absence proves nothing."""
        return (namespace, name) in self._secret_keys

    def ingress_class(self, name: str) -> IngressClass | None:
        for ic in self.ingress_classes:
            if ic.meta.name == name:
                return ic
        return None

    def workload(self, kind: str, namespace: str, name: str) -> Workload | None:
        return self._workloads_by_key.get((kind, namespace, name))

    def endpoints_for(self, namespace: str, service: str) -> Endpoints | None:
        return self._endpoints_by_key.get((namespace, service))

    def events_for(self, ref: ObjectRef) -> tuple[Event, ...]:
        return self._events_by_object.get((ref.kind, ref.namespace or "", ref.name), ())

    def host_facts(self, host: str) -> HostFacts | None:
        for h in self.hosts:
            if h.host == host:
                return h
        return None

    def pods_in(self, namespace: str) -> tuple[Pod, ...]:
        return self._pods_by_namespace.get(namespace, ())

    def pods_selected_by(self, namespace: str, selector: Mapping[str, str]) -> tuple[Pod, ...]:
        """Pods in `namespace` whose labels match every `selector` pair (empty selector: none).

        Uses a (namespace, key, value) index, so cost is proportional to the matches, not the cluster."""
        if not selector:
            return ()
        candidates: set[int] | None = None
        for key, value in sorted(
            selector.items(), key=lambda kv: len(self._label_index.get((namespace, *kv), ()))
        ):
            ids = self._label_index.get((namespace, key, value))
            if not ids:
                return ()
            candidates = set(ids) if candidates is None else candidates & ids
            if not candidates:
                return ()
        assert candidates is not None
        return tuple(self.pods[i] for i in sorted(candidates))

    def owning_workload(self, pod: Pod) -> Workload | None:
        """The top-level controller of a pod: a ReplicaSet's Deployment when known, else the owner."""
        owner = pod.meta.controller
        if owner is None:
            return None
        workload = self.workload(owner.kind, pod.namespace, owner.name)
        if workload is not None and workload.kind == "ReplicaSet":
            parent = workload.meta.controller
            if parent is not None:
                return self.workload(parent.kind, pod.namespace, parent.name) or workload
        if workload is None and owner.kind == "ReplicaSet" and "-" in owner.name:
            # The ReplicaSet was not collected; its Deployment is named like it minus the hash.
            return self.workload("Deployment", pod.namespace, owner.name.rsplit("-", 1)[0])
        return workload

    # -- cached indexes -----------------------------------------------------------------------

    @functools.cached_property
    def _pods_by_key(self) -> Mapping[tuple[str, str], Pod]:
        return {(p.namespace, p.name): p for p in self.pods}

    @functools.cached_property
    def _pods_by_namespace(self) -> Mapping[str, tuple[Pod, ...]]:
        out: dict[str, list[Pod]] = {}
        for p in self.pods:
            out.setdefault(p.namespace, []).append(p)
        return {k: tuple(v) for k, v in out.items()}

    @functools.cached_property
    def _label_index(self) -> Mapping[tuple[str, str, str], set[int]]:
        index: dict[tuple[str, str, str], set[int]] = {}
        for i, p in enumerate(self.pods):
            ns = p.namespace
            for k, v in p.meta.labels.items():
                index.setdefault((ns, k, v), set()).add(i)
        return index

    @functools.cached_property
    def _configmaps_by_key(self) -> Mapping[tuple[str, str], ConfigMap]:
        return {(c.meta.namespace or "", c.meta.name): c for c in self.configmaps}

    @functools.cached_property
    def _pvcs_by_key(self) -> Mapping[tuple[str, str], PersistentVolumeClaim]:
        return {(c.meta.namespace or "", c.meta.name): c for c in self.pvcs}

    @functools.cached_property
    def _pvs_by_name(self) -> Mapping[str, PersistentVolume]:
        return {v.meta.name: v for v in self.pvs}

    @functools.cached_property
    def _pvs_by_claim(self) -> Mapping[tuple[str, str], PersistentVolume]:
        return {(v.claim_namespace, v.claim_name): v for v in self.pvs if v.claim_name}

    @functools.cached_property
    def _services_by_key(self) -> Mapping[tuple[str, str], Service]:
        return {(v.meta.namespace or "", v.meta.name): v for v in self.services}

    @functools.cached_property
    def _jobs_by_key(self) -> Mapping[tuple[str, str], Job]:
        return {(j.meta.namespace or "", j.meta.name): j for j in self.jobs}

    @functools.cached_property
    def _secret_keys(self) -> frozenset[tuple[str, str]]:
        return frozenset((s.meta.namespace or "", s.meta.name) for s in self.secrets)

    @functools.cached_property
    def _nodes_by_name(self) -> Mapping[str, Node]:
        return {n.meta.name: n for n in self.nodes}

    @functools.cached_property
    def _workloads_by_key(self) -> Mapping[tuple[str, str, str], Workload]:
        return {(w.kind, w.meta.namespace or "", w.meta.name): w for w in self.workloads}

    @functools.cached_property
    def _endpoints_by_key(self) -> Mapping[tuple[str, str], Endpoints]:
        out: dict[tuple[str, str], Endpoints] = {}
        for e in self.endpoints:
            key = (e.meta.namespace or "", e.meta.name)
            # Prefer core Endpoints; merge several EndpointSlices of one Service.
            prev = out.get(key)
            if prev is None:
                out[key] = e
            elif prev.source == "EndpointSlice" and e.source == "EndpointSlice":
                out[key] = Endpoints(
                    meta=prev.meta,
                    ready=prev.ready + e.ready,
                    not_ready=prev.not_ready + e.not_ready,
                    source="EndpointSlice",
                    raw=prev.raw,
                )
            elif prev.source == "EndpointSlice":
                out[key] = e
        return out

    @functools.cached_property
    def _events_by_object(self) -> Mapping[tuple[str, str, str], tuple[Event, ...]]:
        out: dict[tuple[str, str, str], list[Event]] = {}
        for e in self.events:
            key = (e.involved.kind, e.involved.namespace or "", e.involved.name)
            out.setdefault(key, []).append(e)
        return {k: tuple(v) for k, v in out.items()}
