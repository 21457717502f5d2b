"""`loki-frontend-worker-all-in-one`: Loki runs as a single binary (`-target=all` or no target) with a
`frontend_worker` block configured. Its querier workers dial the query frontend (its own gRPC port)
before it serves, log "error contacting frontend" / connection refused, and the pod never turns Ready.

In microservices mode (`-target=querier`, `read`, ...) a frontend_worker is how queriers find the
frontend, and it is correct: no finding.

Plan: edit the ConfigMap key holding the config to comment out the `frontend_worker:` block (a text
edit: every other byte stays as it is), restart the pods, wait until Ready.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.evidence import ConfigMap, Container, ContainerStatus, Evidence, Pod
from bot.model import EditConfigMapStep, Finding, Plan, RestartPodStep, Severity, Step, WaitReadyStep
from handlers.base import (
    Settings,
    clip,
    containers_with_status,
    describe_status,
    failing_logs,
    grep,
    image_name,
    is_failing,
    live_pods,
    pod_keeps_name,
    refs,
)

CODE = "loki-frontend-worker-all-in-one"
ALERTS = ("LokiDown", "LokiNotReady", "KubePodNotReady", "KubeStatefulSetReplicasMismatch", "TargetDown")

FRONTEND_ERROR = re.compile(
    r"error contacting (?:the )?(?:query[- ])?(?:frontend|scheduler)"
    r"|(?:frontend|scheduler)_processor.*(?:connection refused|Unavailable)",
    re.IGNORECASE,
)
CONNECTION_REFUSED = re.compile(r"connection refused", re.IGNORECASE)
WORKER_ADDRESS = re.compile(r"^\s+(?:frontend|scheduler)_address\s*:\s*[\"']?\S*?:(\d+)")
GRPC_PORT = re.compile(r"^\s+grpc_listen_port\s*:\s*[\"']?(\d+)")
BLOCK_START = re.compile(r"^frontend_worker\s*:")
CONFIG_TARGET = re.compile(r"^target\s*:\s*[\"']?([A-Za-z0-9_,\-]+)")


def flag_value(argv: Sequence[str], name: str) -> str | None:
    """Value of a Go-style flag: `-name=v`, `--name=v`, `-name v`, `--name v`."""
    for i, arg in enumerate(argv):
        for prefix in (f"-{name}", f"--{name}"):
            if arg.startswith(prefix + "="):
                return arg[len(prefix) + 1 :]
            if arg == prefix and i + 1 < len(argv):
                return argv[i + 1]
    return None


def frontend_worker_block(text: str) -> tuple[int, int] | None:
    """Line range [start, end] (inclusive) of the top-level, uncommented `frontend_worker:` block."""
    lines = text.splitlines()
    for start, line in enumerate(lines):
        if not BLOCK_START.match(line):
            continue
        end = start
        for j in range(start + 1, len(lines)):
            following = lines[j]
            if not following.strip() or following.lstrip().startswith("#"):
                continue  # blank/comment lines inside the block; only indented content extends it
            if following[0] in " \t":
                end = j
                continue
            break
        return start, end
    return None


def comment_out_frontend_worker(text: str) -> str:
    """`text` with the frontend_worker block commented out ("# " before each non-blank line of it);
    every other byte, line endings included, unchanged."""
    block = frontend_worker_block(text)
    if block is None:
        return text
    start, end = block
    lines = text.splitlines(keepends=True)
    for i in range(start, end + 1):
        if lines[i].strip() and not lines[i].lstrip().startswith("#"):
            lines[i] = "# " + lines[i]
    return "".join(lines)


def worker_ports(text: str) -> set[str]:
    """The gRPC ports the querier worker dials: the frontend_worker addresses' ports, and Loki's own
    gRPC port (server.grpc_listen_port, 9095 by default), which is what an all-in-one dials."""
    ports: set[str] = set()
    own = "9095"
    block = frontend_worker_block(text)
    for i, line in enumerate(text.splitlines()):
        if block is not None and block[0] <= i <= block[1] and (match := WORKER_ADDRESS.match(line)):
            ports.add(match.group(1))
        elif match := GRPC_PORT.match(line):
            own = match.group(1)
    return ports | {own}


def worker_errors(lines: Sequence[str], config_text: str) -> list[str]:
    """Log lines proving the worker cannot reach the frontend: Loki's own wording ("error contacting
    frontend" / "scheduler"), or any connection refused on a port the worker dials (other versions
    and log formats word it differently, e.g. "error connecting" with the address)."""
    ports = worker_ports(config_text)
    dials = re.compile(r":(?:" + "|".join(sorted(ports)) + r")\b")
    found = grep(lines, FRONTEND_ERROR, limit=2)
    if found:
        return found
    return [x for x in grep(lines, CONNECTION_REFUSED, limit=10) if dials.search(x)][-2:]


def loki_target(argv: Sequence[str], config_text: str) -> str:
    target = flag_value(argv, "target")
    if target is None:
        for line in config_text.splitlines():
            match = CONFIG_TARGET.match(line)
            if match:
                target = match.group(1)
                break
    return target or "all"  # Loki's default target


def is_all_in_one(target: str) -> bool:
    return "all" in {t.strip() for t in target.split(",")}


def is_loki(container: Container) -> bool:
    if image_name(container.image) == "loki":
        return True
    return bool(container.command) and container.command[0].rsplit("/", 1)[-1] == "loki"


@dataclass(frozen=True)
class _Config:
    configmap: ConfigMap
    key: str
    path: str


# The grafana/loki image's default command line reads this file when the pod spec gives no flag.
DEFAULT_CONFIG_FILE = "/etc/loki/local-config.yaml"


def _config_of(evidence: Evidence, pod: Pod, container: Container) -> _Config | None:
    path = flag_value(container.argv, "config.file") or DEFAULT_CONFIG_FILE
    best = None
    for mount in container.volume_mounts:
        root = mount.mount_path.rstrip("/")
        if (path == root or path.startswith(root + "/")) and (
            best is None or len(root) > len(best.mount_path)
        ):
            best = mount
    if best is None:
        return None
    volume = pod.spec.volume(best.name)
    if volume is None or volume.kind != "configMap":
        return None
    cm = evidence.configmap(pod.namespace, volume.config_map)
    if cm is None:
        return None
    key = best.sub_path or path[len(best.mount_path.rstrip("/")) + 1 :]
    if key in cm.data:
        return _Config(cm, key, path)
    # Items can rename keys to paths; fall back to the one key that holds a frontend_worker block.
    holders = [k for k, v in cm.data.items() if frontend_worker_block(v) is not None]
    return _Config(cm, holders[0], path) if len(holders) == 1 else None


@dataclass(frozen=True)
class _Hit:
    pod: Pod
    container: Container
    status: ContainerStatus
    target: str
    log_lines: tuple[str, ...]


def _finding(evidence: Evidence, config: _Config, hits: list[_Hit]) -> Finding:
    cm = config.configmap
    old = cm.data[config.key]
    new = comment_out_frontend_worker(old)
    block = frontend_worker_block(old)
    assert block is not None
    block_lines = old.splitlines()[block[0] : block[1] + 1]
    first = hits[0]
    lines = [f"{h.pod.ref}: {describe_status(h.status)}" for h in hits]
    lines.append(
        f"{first.pod.name} runs Loki as a single binary (target={first.target}; args: "
        f"{' '.join(first.container.args)})"
    )
    lines.append(f"ConfigMap {cm.meta.name} key {config.key} (mounted as {config.path}) configures:")
    lines += [f"  {clip(x)}" for x in block_lines if x.strip()]
    lines += [f"log: {x}" for x in first.log_lines]
    for hit in hits:
        for event in evidence.events_for(hit.pod.ref):
            if event.reason == "Unhealthy" and "Readiness" in event.message:
                lines.append(f"event: {event.reason} x{event.count}: {clip(event.message)}")
                break
    steps: list[Step] = [
        EditConfigMapStep(
            target=cm.ref,
            key=config.key,
            old_content=old,
            new_content=new,
            description=f"comment out the frontend_worker block in {cm.meta.name}/{config.key} "
            "(not used by a single-binary Loki)",
            resource_version=cm.meta.resource_version,
        )
    ]
    for hit in hits:
        steps.append(
            RestartPodStep(
                target=hit.pod.ref, description=f"delete {hit.pod.name} so Loki reloads its config"
            )
        )
        if pod_keeps_name(evidence, hit.pod):
            steps.append(WaitReadyStep(target=hit.pod.ref, description=f"wait until {hit.pod.name} is Ready"))
    names = ", ".join(h.pod.name for h in hits)
    return Finding(
        code=CODE,
        severity=Severity.CRITICAL,
        summary=(
            f"{names}: Loki runs all-in-one (-target={first.target}) with frontend_worker configured; "
            "its querier cannot reach the frontend (error contacting frontend) and the pod never "
            "becomes Ready"
        ),
        objects=refs(*(h.pod.ref for h in hits), cm.ref),
        evidence=tuple(lines),
        plan=Plan(steps=tuple(steps), validation=("pods-ready", "loki-query", "endpoints")),
    )


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    groups: dict[tuple[str, str, str], tuple[_Config, list[_Hit]]] = {}
    for pod in live_pods(evidence):
        for container, status in containers_with_status(pod):
            if status.init or not is_loki(container) or not is_failing(status):
                continue
            config = _config_of(evidence, pod, container)
            if config is None or frontend_worker_block(config.configmap.data[config.key]) is None:
                continue
            target = loki_target(container.argv, config.configmap.data[config.key])
            if not is_all_in_one(target):
                continue  # microservices / simple scalable: frontend_worker is how queriers find the frontend
            found = worker_errors(
                failing_logs(evidence, pod, status, settings), config.configmap.data[config.key]
            )
            if not found:
                continue
            key = (pod.namespace, config.configmap.meta.name, config.key)
            groups.setdefault(key, (config, []))[1].append(_Hit(pod, container, status, target, tuple(found)))
    return [
        _finding(evidence, config, hits) for _, (config, hits) in sorted(groups.items(), key=lambda kv: kv[0])
    ]
