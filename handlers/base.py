"""What every handler shares: settings, the handler shape, and small pure helpers over Evidence.

A handler is a module with:
- `CODE: str` — the stable finding code (one per module);
- `ALERTS: tuple[str, ...]` — alert names it explains (used to rank findings for an incident);
- `diagnose(evidence: Evidence, settings: Settings) -> list[Finding]` — pure, no I/O; plans are built
  with `bot.model` Step classes and attached to each finding.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol

from bot.evidence import Container, ContainerState, ContainerStatus, Event, Evidence, Pod, Workload, thaw
from bot.model import Finding, ObjectRef


def _default_image_uids() -> Mapping[str, int]:
    return MappingProxyType({"prometheus": 65534, "alertmanager": 65534, "loki": 10001, "grafana": 472})


@dataclass(frozen=True)
class HostTarget:
    """A host pitcrew may run host commands on, and the Kubernetes nodes it is."""

    name: str
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    image_uids: Mapping[str, int] = field(default_factory=_default_image_uids)
    oom_memory_factor: float = 1.5
    hosts: tuple[HostTarget, ...] = ()
    # A termination older than this, with the container Ready since, is history, not a problem.
    recent_seconds: float = 900.0
    # Restarts that make a container "flapping" when its last termination is recent.
    restart_threshold: int = 3
    # A pod younger than this that is still being created or started is not (yet) a problem; a
    # readiness probe's initial delay and failure window extend it for that pod.
    startup_grace_seconds: float = 120.0


DEFAULT_SETTINGS = Settings()


class Handler(Protocol):
    CODE: str
    ALERTS: tuple[str, ...]

    def diagnose(self, evidence: Evidence, settings: Settings) -> list[Finding]: ...


# ---------------------------------------------------------------------------------------------
# time
# ---------------------------------------------------------------------------------------------


def is_recent(evidence: Evidence, when: datetime | None, settings: Settings) -> bool:
    """True when `when` is within the recent window of the evidence's time. Unknown times count as
    recent (we cannot prove the problem is old), unknown evidence time too."""
    if when is None or evidence.observed_at is None:
        return True
    return (evidence.observed_at - when).total_seconds() <= settings.recent_seconds


# ---------------------------------------------------------------------------------------------
# pods and containers
# ---------------------------------------------------------------------------------------------


def live_pods(evidence: Evidence) -> Iterator[Pod]:
    """Pods that matter now: not being deleted, not finished (Succeeded Jobs)."""
    for pod in evidence.pods:
        if pod.meta.deleting or pod.phase == "Succeeded":
            continue
        yield pod


def containers_with_status(pod: Pod) -> Iterator[tuple[Container, ContainerStatus]]:
    for status in pod.init_container_statuses + pod.container_statuses:
        container = pod.spec.container(status.name)
        if container is not None:
            yield container, status


def is_failing(status: ContainerStatus) -> bool:
    """The container is in trouble right now (not a completed init container, not Ready)."""
    if status.init:
        state = status.state
        if state.state == "terminated":
            return state.exit_code not in (0, None)
        return state.state == "waiting" and state.reason not in ("", "PodInitializing")
    return not status.ready


def failing_logs(
    evidence: Evidence, pod: Pod, status: ContainerStatus, settings: Settings
) -> tuple[str, ...]:
    """Log lines of the instance that is failing now, plus its termination message.

    Waiting/terminated: the previous instance crashed, read its log (and the current one, which
    kubectl shows as the last run's). Running but not Ready: the current log, and the previous one
    only if that instance ended recently."""
    lines: list[str] = []
    state = status.state
    last = status.last_state
    include_previous = state.state in ("waiting", "terminated") or (
        last is not None and is_recent(evidence, last.finished_at, settings)
    )
    if include_previous:
        lines += evidence.log(pod.namespace, pod.name, status.name, previous=True)
        if last is not None and last.message:
            lines += last.message.splitlines()
    lines += evidence.log(pod.namespace, pod.name, status.name, previous=False)
    if state.message and state.state == "terminated":
        lines += state.message.splitlines()
    return tuple(lines)


_FIELD_PATH_CONTAINER = re.compile(r"^spec\.(?:initContainers|containers|ephemeralContainers)\{([^}]+)\}$")


def event_container(event: Event) -> str:
    """The container an event is about (its `involvedObject.fieldPath`, `spec.containers{name}`), or ""."""
    match = _FIELD_PATH_CONTAINER.match(event.field_path)
    return match.group(1) if match else ""


def describe_status(status: ContainerStatus) -> str:
    state = status.state
    parts = [f"container {status.name}: {state.state}"]
    if state.reason:
        parts[0] += f" ({state.reason})"
    parts.append(f"ready={str(status.ready).lower()}")
    parts.append(f"restarts={status.restart_count}")
    last = status.last_state
    if last is not None and last.state == "terminated":
        when = f" at {last.finished_at:%Y-%m-%dT%H:%M:%SZ}" if last.finished_at else ""
        parts.append(f"last exit code {last.exit_code} ({last.reason or 'unknown'}){when}")
    elif state.state == "terminated":
        parts.append(f"exit code {state.exit_code} ({state.reason or 'unknown'})")
    return ", ".join(parts)


def grep(lines: Iterable[str], pattern: re.Pattern[str], *, limit: int = 3) -> list[str]:
    """The last `limit` distinct lines matching `pattern`, oldest first."""
    found: list[str] = []
    for line in lines:
        if pattern.search(line):
            if line in found:
                found.remove(line)
            found.append(line)
    return [clip(x) for x in found[-limit:]]


def clip(line: str, width: int = 400) -> str:
    line = line.rstrip()
    return line if len(line) <= width else line[: width - 1] + "…"


ERROR_LINE = re.compile(
    r"""level=(error|fatal|panic|crit)\b|"level"\s*:\s*"(error|fatal|panic|crit)"|^\s*[EF]\d{4}\s|\b(ERROR|FATAL|CRITICAL)\b"""
    r"""|^panic:|\bException\b|\bTraceback\b|\berror:|\bfailed\b""",
    re.IGNORECASE,
)


def last_error_lines(lines: Sequence[str], limit: int = 3) -> list[str]:
    found = grep(lines, ERROR_LINE, limit=limit)
    if found:
        return found
    return [clip(x) for x in lines[-limit:] if x.strip()]


# ---------------------------------------------------------------------------------------------
# the line that names the error (crashes)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorQuote:
    """What a log says went wrong: the line(s) naming the error (`named`), else its last lines.

    `lines` is oldest first; for a Java stack it is the top exception and its root `Caused by:`.
    `headline` is the one line to put in a summary (the root cause when there are two)."""

    lines: tuple[str, ...] = ()
    named: bool = False

    @property
    def headline(self) -> str:
        return self.lines[-1] if self.lines else ""


_PY_TRACEBACK = re.compile(r"^\s*Traceback \(most recent call last\):\s*$")
# The line a Python traceback ends with: an unindented `module.Name: message` (or a bare `Name`).
_PY_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$")
_JAVA_EXCEPTION = re.compile(
    r"^(?:Exception in thread \"[^\"]*\" )?(?:[a-z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error|Throwable)\b"
)
_JAVA_CAUSED_BY = re.compile(r"^\s*Caused by: \S")
_STACK_FRAME = re.compile(r"^\s+at \S|^\s*\.\.\. \d+ (?:more|common frames omitted)")
# JavaScript / TypeScript: `TypeError: x is not a function` followed by `    at ...` frames.
_JS_EXCEPTION = re.compile(r"^(?:Uncaught )?[A-Z]\w*(?:Error|Exception)(?::\s.*)?$")
_GO_PANIC = re.compile(r"^(?:panic|fatal error): \S")
_RUST_PANIC = re.compile(r"^thread '[^']*' panicked at ")
_STRUCTURED_LEVEL = re.compile(
    r"^(?:error|err|fatal|panic|dpanic|crit|critical|alert|emerg|emergency)$", re.I
)
_LOGFMT_PAIR = re.compile(r"""([\w.@-]+)=("(?:[^"\\]|\\.)*"|\S*)""")
_PLAIN_ERROR = re.compile(
    r"""^\s*[EF]\d{4} \d\d:\d\d:\d\d"""  # klog E/F lines
    r"""|(?:^|[\s\[|])(?:ERROR|FATAL|CRITICAL|CRIT|EMERG|PANIC|SEVERE)(?:[\]\s:|]|$)"""
    r"""|^\s*(?:error|fatal|Error|Fatal)(?:\[[^\]]*\])?:\s"""  # "error: ...", "Error: ..."
    r"""|\[(?:error|crit|alert|emerg|fatal)\]"""  # nginx, Apache: "[emerg] host not found"
)
_LEVEL_KEYS = ("level", "lvl", "severity", "log.level", "loglevel", "levelname")
_MESSAGE_KEYS = ("msg", "message", "event", "log")
_ERROR_KEYS = ("err", "error", "error.message", "exception", "reason")


def _structured(line: str) -> tuple[str, str, str] | None:
    """(level, message, error) of a JSON or logfmt record, None for other lines."""
    text = line.strip()
    fields: dict[str, str] = {}
    if text.startswith("{") and text.endswith("}"):
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        for key, value in data.items():
            if isinstance(value, str | int | float):
                fields[str(key).lower()] = str(value)
            elif isinstance(value, dict) and key.lower() in ("error", "log"):
                # ECS: {"log": {"level": "error"}}, {"error": {"message": ...}}
                for sub, subvalue in value.items():
                    if isinstance(subvalue, str):
                        fields[f"{key}.{sub}".lower()] = subvalue
    elif "=" in text:
        for key, raw in _LOGFMT_PAIR.findall(text):
            value = raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw
            fields[key.lower()] = value
        if not any(k in fields for k in _LEVEL_KEYS):
            return None
    else:
        return None
    level = next((fields[k] for k in _LEVEL_KEYS if k in fields), "")
    message = next((fields[k] for k in _MESSAGE_KEYS if fields.get(k)), "")
    error = next((fields[k] for k in _ERROR_KEYS if fields.get(k)), "")
    return level, message, error


def _python_exception(lines: Sequence[str], start: int) -> tuple[int, str] | None:
    """The exception line closing the traceback that starts at `start`: the first unindented line."""
    for i in range(start + 1, len(lines)):
        line = lines[i].rstrip()
        if not line or line[0] in " \t":
            continue
        if _PY_TRACEBACK.match(line):
            return None  # a new traceback began before this one ended
        if _PY_EXCEPTION.match(line) or ": " in line:
            return i, line
        return None
    return None


def quote_error(lines: Sequence[str], *, tail: int = 3) -> ErrorQuote:
    """The line of a crash log that names the error, whatever the runtime wrote.

    Named errors, the last one wins: a Python traceback's exception line (not `Traceback (most
    recent call last):`), a Java exception and its deepest `Caused by:`, a JavaScript error above its
    `at` frames, Go's `panic:` / `fatal error:`, Rust's `panicked at`, and a JSON or logfmt record at
    level error (or worse), quoted as its message and error. Without any of those, the last plain
    error-level line (`ERROR ...`, klog `E1009 ...`, `error: ...`); without that, the last `tail`
    non-empty lines (`named` False)."""
    named: tuple[int, tuple[str, ...]] | None = None  # (position, lines)
    plain: tuple[int, str] | None = None
    i = 0
    count = len(lines)
    while i < count:
        line = lines[i].rstrip()
        stripped = line.strip()
        if not stripped:
            i += 1
            continue
        if _PY_TRACEBACK.match(line):
            found = _python_exception(lines, i)
            if found is not None:
                named = (found[0], (clip(found[1]),))
                i = found[0] + 1
                continue
            i += 1
            continue
        next_line = lines[i + 1] if i + 1 < count else ""
        if _JAVA_EXCEPTION.match(stripped) and (
            stripped.startswith("Exception in thread") or _STACK_FRAME.match(next_line)
        ):
            top = stripped
            root = ""
            j = i + 1
            while j < count:
                candidate = lines[j].rstrip()
                if _JAVA_CAUSED_BY.match(candidate):
                    root = candidate.strip()
                elif not (_STACK_FRAME.match(candidate) or candidate.startswith(("\t", "  "))):
                    break
                j += 1
            named = (j - 1, tuple(clip(x) for x in (top, root) if x))
            i = j
            continue
        if _JS_EXCEPTION.match(stripped) and _STACK_FRAME.match(next_line):
            named = (i, (clip(stripped),))
            i += 1
            continue
        if _GO_PANIC.match(stripped):
            named = (i, (clip(stripped),))
            i += 1
            continue
        if _RUST_PANIC.match(stripped):
            message = stripped
            if stripped.endswith(":") and next_line.strip():
                message = f"{stripped} {next_line.strip()}"  # Rust 1.73+: the message is on the next line
            named = (i, (clip(message),))
            i += 1
            continue
        record = _structured(stripped)
        if record is not None:
            level, message, error = record
            if _STRUCTURED_LEVEL.match(level.strip()):
                text = message or error or stripped
                if error and message and error not in message:
                    text = f"{message}: {error}"
                named = (i, (clip(text),))
        elif _PLAIN_ERROR.search(line):
            plain = (i, clip(stripped))
        i += 1
    if named is not None:
        return ErrorQuote(named[1], named=True)
    if plain is not None:
        return ErrorQuote((plain[1],), named=True)
    return ErrorQuote(tuple(clip(x) for x in [x for x in lines if x.strip()][-tail:]), named=False)


_SIGNALS = {
    1: "SIGHUP",
    2: "SIGINT",
    3: "SIGQUIT",
    4: "SIGILL",
    6: "SIGABRT",
    7: "SIGBUS",
    8: "SIGFPE",
    9: "SIGKILL",
    11: "SIGSEGV",
    13: "SIGPIPE",
    15: "SIGTERM",
}


def describe_exit(state: ContainerState | None) -> str:
    """`exit code 137 (OOMKilled, SIGKILL)` for a terminated state; "" when there is none."""
    if state is None or state.state != "terminated" or state.exit_code is None:
        return ""
    notes = [state.reason] if state.reason else []
    signal = _SIGNALS.get(state.exit_code - 128) if state.exit_code > 128 else None
    if signal:
        notes.append(signal)
    return f"exit code {state.exit_code}" + (f" ({', '.join(notes)})" if notes else "")


# ---------------------------------------------------------------------------------------------
# owners
# ---------------------------------------------------------------------------------------------


def owner_key(evidence: Evidence, pod: Pod) -> ObjectRef:
    """What to group a pod's finding under: its top-level workload, or the pod itself."""
    owner = evidence.owning_workload(pod)
    return owner.ref if owner is not None else pod.ref


def pods_phrase(evidence: Evidence, pods: Sequence[Pod]) -> str:
    """`2/3 pods of deployment/api`, `pod web-0 of statefulset/web`, `pod debug` — for summaries."""
    if not pods:
        return "no pods"
    owner = evidence.owning_workload(pods[0])
    if owner is None:
        return f"pod {pods[0].name}" if len(pods) == 1 else f"{len(pods)} pods"
    of = f"{owner.kind.lower()}/{owner.meta.name}"
    siblings = sum(
        1
        for p in evidence.pods_in(pods[0].namespace)
        if not p.meta.deleting and owner_key(evidence, p) == owner.ref
    )
    if len(pods) == 1 and siblings <= 1:
        return f"pod {pods[0].name} of {of}"
    return f"{len(pods)}/{max(siblings, len(pods))} pods of {of}"


def patchable_owner(evidence: Evidence, pod: Pod) -> Workload | None:
    """The workload whose template makes this pod (Deployment over its ReplicaSet), if collected."""
    workload = evidence.owning_workload(pod)
    if workload is None or workload.kind not in ("StatefulSet", "Deployment", "DaemonSet", "ReplicaSet"):
        return None
    if workload.meta.controller is not None:
        # A ReplicaSet whose Deployment was not collected, or a workload an operator manages (a
        # Prometheus resource owns its StatefulSet): the owner would undo a patch.
        return None
    return workload


def why_not_patchable(evidence: Evidence, pod: Pod) -> str:
    """Why `patchable_owner` found nothing, for the finding's evidence."""
    workload = evidence.owning_workload(pod)
    if workload is None:
        return f"{pod.name} has no controller whose template could be patched"
    owner = workload.meta.controller
    if owner is not None:
        return (
            f"{workload.kind} {workload.meta.name} is managed by {owner.kind} {owner.name}, which would undo "
            f"a patch: change the pod settings in that {owner.kind}"
        )
    return f"{workload.kind} {workload.meta.name} has no pod template pitcrew can patch"


def template_containers(workload: Workload) -> list[tuple[str, int, dict[str, Any]]]:
    """The workload template's containers as plain JSON, with where each sits:
    (`"initContainers"` or `"containers"`, index, container). For JSON Patch paths and `test` values."""
    spec = thaw(workload.raw.get("spec", {})).get("template", {}).get("spec", {})
    return [
        (field, index, c)
        for field in ("initContainers", "containers")
        for index, c in enumerate(spec.get(field) or [])
        if isinstance(c, dict)
    ]


def pod_keeps_name(evidence: Evidence, pod: Pod) -> bool:
    """Whether a deleted pod comes back under the same name (StatefulSet) — then we can wait for it."""
    owner = pod.meta.controller
    return owner is not None and owner.kind == "StatefulSet"


def image_name(image: str) -> str:
    """`quay.io/prometheus/prometheus:v2.48.0@sha256:…` -> `prometheus`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0].lower()


def expected_uid(image: str, settings: Settings) -> int | None:
    """The uid a known image runs as: the longest configured key found in the image's name, then in
    the whole reference (so `grafana/loki` is loki, not grafana)."""
    for text in (image_name(image), image.lower()):
        matches = [k for k in settings.image_uids if k.lower() in text]
        if matches:
            return settings.image_uids[max(matches, key=len)]
    return None


def host_for_node(evidence: Evidence, node: str, settings: Settings) -> str | None:
    """The configured host that is `node`; else a host whose facts were collected under the node's name."""
    for host in settings.hosts:
        if node in host.nodes:
            return host.name
    for host in settings.hosts:
        if host.name == node:
            return host.name
    if evidence.host_facts(node) is not None:
        return node
    return None


def refs(*objects: ObjectRef | None) -> tuple[ObjectRef, ...]:
    out: list[ObjectRef] = []
    for o in objects:
        if o is not None and o not in out:
            out.append(o)
    return tuple(out)


def quantity_bytes(text: str) -> int | None:
    """A Kubernetes memory quantity in bytes ("512Mi", "2G", "1.5Gi", "1048576"); None if unreadable."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E|m)?\s*", text or "")
    if not match:
        return None
    number = float(match.group(1))
    unit = match.group(2) or ""
    scale = {
        "": 1,
        "m": 0.001,
        "k": 10**3,
        "K": 10**3,
        "M": 10**6,
        "G": 10**9,
        "T": 10**12,
        "P": 10**15,
        "E": 10**18,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "Pi": 2**50,
        "Ei": 2**60,
    }[unit]
    return int(number * scale)


def format_mebibytes(value: int) -> str:
    """Bytes as a whole number of Mi, rounded up."""
    return f"{-(-value // 2**20)}Mi"


def json_pointer(*parts: str | int) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)
