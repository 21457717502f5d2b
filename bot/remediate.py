"""The executor: runs a finding's plan the way the seed's remediate script does, safely enough for a
button in chat.

Safety rules (DESIGN.md) and where each one lives:
1. approval: the caller (Slack approval, or the CLI's per-step confirmation / `--yes`) decides; the
   actor is recorded with every audit entry.
2. backups: before each mutating step the live object (or the host path's owner/mode) is saved in the
   store, committed, and written as YAML under `remediation.backup_dir`; its id is reported.
3. dry run: `dry_run()` sends each patch with `dryRun=All` and renders the server's answer as a diff.
4. no clobbering: patches carry `test` ops (the plan's, plus `metadata.resourceVersion` of the object
   just backed up); the API answers 409/422 if anything changed, and the executor stops with
   "object changed since diagnosis". ConfigMap edits also check the key's content seen at diagnosis.
5. validation after the change; failure -> outcome failed, and rollback when configured.
6. one execution per incident and one at a time per target: bot/store/executions.py (SQL).
7. every step is in the audit log and reported through `on_event` (Slack thread, CLI).

The executor talks to the cluster through the small `ClusterWriter` protocol (implemented by
`bot.cluster.Cluster`) and to hosts through `bot.hosts.Hosts`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

from bot.hosts import HostBackup, HostError
from bot.model import (
    CheckResult,
    EditConfigMapStep,
    Finding,
    HostCommandStep,
    JsonPatchOp,
    ObjectRef,
    PatchStep,
    Plan,
    RestartPodStep,
    Step,
    StepEvent,
    WaitReadyStep,
    WorkState,
    plan_to_json,
)
from bot.redact import redact_json
from bot.store import ExecutionConflict
from bot.validate import ValidationCluster, validate
from bot.yamldiff import to_yaml, unified_yaml_diff

if TYPE_CHECKING:
    from bot.config import Config
    from bot.hosts import Hosts
    from bot.metrics import Counter, MetricsRegistry
    from bot.store import Backup, StoreBackend

log = logging.getLogger(__name__)

Outcome = Literal["succeeded", "failed", "rolled-back", "refused"]
EXECUTION_OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
EventSink = Callable[[StepEvent], Awaitable[None]]
Confirm = Callable[[int, Step], Awaitable[bool]]

# How often wait-ready polls the pod, and how often it reports progress while waiting.
POLL_INTERVAL_SECONDS = 1.0
PROGRESS_EVERY_SECONDS = 15.0


# ---------------------------------------------------------------------------------------------
# What the executor needs from the cluster adapter
# ---------------------------------------------------------------------------------------------


class ClusterWriter(Protocol):
    """The write side of `bot.cluster.Cluster`. Methods raise an exception carrying the HTTP status
    as an integer `status` attribute when the API server refuses a request (409 conflict, 422 failed
    JSON Patch `test`, 404 ...)."""

    async def read_raw(self, ref: ObjectRef) -> dict[str, Any] | None:
        """The object as the API server returns it (plain JSON), or None if it does not exist."""
        ...

    async def json_patch(
        self, ref: ObjectRef, ops: Sequence[Mapping[str, Any]], *, dry_run: bool = False
    ) -> dict[str, Any]:
        """RFC 6902 patch; with dry_run the server answers with the result without persisting it."""
        ...

    async def delete_pod(self, ref: ObjectRef) -> None: ...


class ExecutorCluster(ClusterWriter, ValidationCluster, Protocol):
    """What `execute` needs: writes, plus what validation reads."""


class StepFailed(Exception):
    """A step could not be done; the message is what the operator reads."""


class DryRunFailed(Exception):
    """The server-side dry run was refused (object changed or missing, patch invalid)."""


def api_status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


@dataclass(frozen=True)
class ExecutionResult:
    """What an execution (or a rollback) did. `refused`: it never started (e.g. the incident already
    has an execution, or a target is locked by another one); nothing was changed then."""

    execution_id: int | None
    outcome: Outcome
    detail: str
    backups: tuple[str, ...] = ()
    checks: tuple[CheckResult, ...] = ()
    events: tuple[StepEvent, ...] = field(default_factory=tuple, repr=False)


# ---------------------------------------------------------------------------------------------
# Plans and targets
# ---------------------------------------------------------------------------------------------


def execution_counter(registry: MetricsRegistry) -> Counter:
    """`pitcrew_executions_total{namespace, outcome}`: one count per namespace a plan touched."""
    return registry.counter(
        "pitcrew_executions_total",
        "Remediation executions by namespace and outcome (succeeded, failed, rolled-back, refused).",
        ["namespace", "outcome"],
    )


def _count_execution(metrics: MetricsRegistry | None, plan: Plan, outcome: Outcome) -> None:
    if metrics is None:
        return
    counter = execution_counter(metrics)
    for namespace in plan_namespaces(plan) or ("",):
        counter.inc(namespace=namespace, outcome=outcome)


def plan_of(findings_or_plan: Plan | Sequence[Finding]) -> Plan:
    """One plan: the given one, or the steps of every finding that has an automatic plan, in order."""
    if isinstance(findings_or_plan, Plan):
        return findings_or_plan
    steps: list[Step] = []
    checks: list[str] = []
    for finding in findings_or_plan:
        if finding.plan is None:
            continue
        steps.extend(finding.plan.steps)
        checks.extend(c for c in finding.plan.validation if c not in checks)
    return Plan(steps=tuple(steps), validation=tuple(checks))


def host_target(host: str, path: str) -> str:
    return f"host:{host}:{path}"


def step_lock_target(step: Step) -> str:
    if isinstance(step, HostCommandStep):
        return host_target(step.host, step.path)
    return str(step.target)


def plan_namespaces(plan: Plan) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s.target.namespace for s in plan.steps if s.target.namespace))


def _pointer(*parts: str) -> str:
    """JSON Pointer (RFC 6901) from raw keys."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def _resolve_pointer(obj: Any, pointer: str) -> tuple[bool, Any]:
    if pointer == "":
        return True, obj
    current = obj
    for raw in pointer.split("/")[1:]:
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(current, Mapping) and key in current:
            current = current[key]
        elif isinstance(current, list) and key.isdigit() and int(key) < len(current):
            current = current[int(key)]
        else:
            return False, None
    return True, current


def _stale_tests(live: Mapping[str, Any], ops: Sequence[JsonPatchOp]) -> list[str]:
    """The plan's `test` ops that no longer hold on the live object (for a precise message; the API
    server checks them again atomically)."""
    stale = []
    for op in ops:
        if op.op != "test":
            continue
        found, value = _resolve_pointer(live, op.path)
        if not found or value != op.value:
            stale.append(op.path)
    return stale


def _resource_version(obj: Mapping[str, Any]) -> str | None:
    rv = obj.get("metadata", {}).get("resourceVersion")
    return str(rv) if rv is not None else None


def _patch_ops(step: PatchStep | EditConfigMapStep, live_rv: str | None) -> list[dict[str, Any]]:
    """The JSON Patch actually sent: pin the resourceVersion just backed up, then the plan's ops."""
    ops: list[dict[str, Any]] = []
    if live_rv is not None:
        ops.append({"op": "test", "path": "/metadata/resourceVersion", "value": live_rv})
    if isinstance(step, PatchStep):
        ops.extend(op.to_json() for op in step.ops)
    else:
        key = _pointer("data", step.key)
        ops.append({"op": "test", "path": key, "value": step.old_content})
        ops.append({"op": "replace", "path": key, "value": step.new_content})
    return ops


def _changed_since_diagnosis(step: PatchStep | EditConfigMapStep, live: Mapping[str, Any]) -> str | None:
    """Why the live object is not the one the plan was made against, or None if it still is."""
    live_rv = _resource_version(live)
    if step.resource_version is not None and live_rv != step.resource_version:
        return (
            f"object changed since diagnosis: {step.target} resourceVersion is {live_rv}, "
            f"the plan was made at {step.resource_version}"
        )
    if isinstance(step, PatchStep):
        stale = _stale_tests(live, step.ops)
        if stale:
            return f"object changed since diagnosis: {step.target} differs at {', '.join(stale)}"
    else:
        data = live.get("data") or {}
        if step.key not in data:
            return f"object changed since diagnosis: {step.target} has no key {step.key!r}"
        if data[step.key] != step.old_content:
            return f"object changed since diagnosis: {step.target} key {step.key!r} was edited"
    return None


# ---------------------------------------------------------------------------------------------
# Dry run
# ---------------------------------------------------------------------------------------------


async def dry_run(findings: Plan | Sequence[Finding], cluster: ClusterWriter) -> str:
    """Unified YAML diff of every patch / ConfigMap edit of the plan, as the API server would apply
    it (server-side `dryRun=All`; nothing is persisted). Other steps are listed as comments.
    Raises DryRunFailed if an object is missing, changed since diagnosis, or the patch is refused."""
    plan = plan_of(findings)
    parts: list[str] = []
    for index, step in enumerate(plan.steps, start=1):
        header = f"# {index}. {step.action} {step.target}: {step.description}"
        if not isinstance(step, PatchStep | EditConfigMapStep):
            if isinstance(step, HostCommandStep):
                header += f" [{_host_step_text(step)}]"
            parts.append(header + "\n")
            continue
        try:
            live = await cluster.read_raw(step.target)
        except Exception as exc:  # 403, timeout...: the caller gets one error type for "no diff"
            raise DryRunFailed(f"cannot read {step.target}: {exc}") from exc
        if live is None:
            raise DryRunFailed(f"{step.target} not found")
        why = _changed_since_diagnosis(step, live)
        if why:
            raise DryRunFailed(why)
        try:
            after = await cluster.json_patch(
                step.target, _patch_ops(step, _resource_version(live)), dry_run=True
            )
        except Exception as exc:
            status = api_status(exc)
            if status in (409, 422):
                raise DryRunFailed(f"object changed since diagnosis: {step.target} ({exc})") from exc
            raise DryRunFailed(f"dry run of {step.target} refused: {exc}") from exc
        # Shown in Slack and the CLI: env values and secret-looking config lines are masked.
        diff = unified_yaml_diff(redact_json(live), redact_json(after), label=str(step.target))
        parts.append(header + "\n" + (diff or "# (no change)\n"))
    return "".join(parts)


def _host_step_text(step: HostCommandStep) -> str:
    recursive = " -R" if step.recursive else ""
    if step.operation == "chown":
        return f"chown{recursive} {step.uid}:{step.gid} {step.path} on {step.host}"
    mode = f"{step.mode:o}" if step.mode is not None else "?"
    return f"chmod{recursive} {mode} {step.path} on {step.host}"


# ---------------------------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------------------------


@dataclass
class _Undo:
    """How to undo one completed step."""

    step_index: int
    kind: Literal["object", "host", "restart"]
    target: str
    backup_id: str | None
    content: str  # backup content (JSON object / HostBackup JSON); pod ref for restart


class _Run:
    """State of one execution or rollback: events, audit, backups."""

    def __init__(
        self,
        *,
        execution_id: int,
        incident_id: int | None,
        actor: str,
        store: StoreBackend,
        on_event: EventSink,
    ) -> None:
        self.execution_id = execution_id
        self.incident_id = incident_id
        self.actor = actor
        self.store = store
        self.on_event = on_event
        self.events: list[StepEvent] = []
        self.backups: list[str] = []

    async def emit(
        self,
        step_index: int,
        action: str,
        phase: Literal["started", "progress", "done", "failed", "skipped", "rolled-back"],
        detail: str,
        *,
        backup_id: str | None = None,
        elapsed: float | None = None,
        audit: bool = True,
    ) -> None:
        event = StepEvent(
            execution_id=self.execution_id,
            step_index=step_index,
            action=action,
            phase=phase,
            detail=detail,
            backup_id=backup_id,
            elapsed_seconds=None if elapsed is None else round(elapsed, 1),
        )
        self.events.append(event)
        if audit:
            where = f"step {step_index + 1}" if step_index >= 0 else "plan"
            await self.store.audit(
                self.actor,
                f"{where} {action} {phase}",
                incident_id=self.incident_id,
                execution_id=self.execution_id,
                detail=detail + (f" (backup {backup_id})" if backup_id else ""),
            )
        try:
            await self.on_event(event)
        except Exception:  # a Slack outage must not stop a half-done remediation
            log.exception("on_event failed for execution %s", self.execution_id)


def _backup_folder(config: Config, execution_id: int, started: float) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started))
    return Path(config.remediation.backup_dir) / f"{stamp}-execution-{execution_id}"


def _safe_file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:150]


async def _write_backup_file(folder: Path, name: str, target: str, content: str) -> None:
    def write() -> None:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / f"{name}-{_safe_file_name(target)}.yaml"
        try:
            data = json.loads(content)
        except ValueError:
            data = content
        # Owner-only: a backed-up object may carry values (env, config) not everyone should read.
        # O_NOFOLLOW: never through a symlink planted at the (predictable) name.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"# pitcrew backup of {target}\n" + to_yaml(data))

    await asyncio.to_thread(write)


async def _backup(
    run: _Run,
    folder: Path | None,
    index: int,
    target: str,
    kind: Literal["object", "host"],
    content: str,
    *,
    undo: bool = False,
) -> str:
    """Save the state before a change (a step, or the undo of one). The store row is the backup of
    record and is committed first; the YAML file (when there is a folder) is for humans, named by
    step number, `undo-` for the state an undo replaced."""
    backup_id = await run.store.save_backup(run.execution_id, target, kind, content)
    run.backups.append(backup_id)
    if folder is None:
        return backup_id
    try:
        await _write_backup_file(folder, f"{'undo-' if undo else ''}{index + 1:02d}", target, content)
    except OSError as exc:
        raise StepFailed(
            f"cannot write backup file under {folder}: {exc} (backup {backup_id} is in the store)"
        ) from exc
    return backup_id


async def _do_patch(
    run: _Run,
    step: PatchStep | EditConfigMapStep,
    index: int,
    cluster: ClusterWriter,
    folder: Path,
    undo: list[_Undo],
) -> tuple[str, str]:
    live = await cluster.read_raw(step.target)
    if live is None:
        raise StepFailed(f"{step.target} not found")
    why = _changed_since_diagnosis(step, live)
    if why:
        raise StepFailed(why)
    content = json.dumps(live, sort_keys=True)
    backup_id = await _backup(run, folder, index, str(step.target), "object", content)
    await run.emit(index, step.action, "progress", f"backed up {step.target}", backup_id=backup_id)
    try:
        await cluster.json_patch(step.target, _patch_ops(step, _resource_version(live)))
    except Exception as exc:
        if api_status(exc) in (409, 422):
            raise StepFailed(
                f"object changed since diagnosis: {step.target} (the API refused the patch)"
            ) from exc
        raise StepFailed(f"patch of {step.target} failed: {exc}") from exc
    undo.append(_Undo(index, "object", str(step.target), backup_id, content))
    what = f"key {step.key!r} of " if isinstance(step, EditConfigMapStep) else ""
    return f"patched {what}{step.target}", backup_id


async def _do_restart(
    run: _Run,
    step: RestartPodStep,
    index: int,
    cluster: ClusterWriter,
    folder: Path,
    restarted: dict[ObjectRef, str],
    undo: list[_Undo],
) -> tuple[str, str | None]:
    pod = await cluster.read_raw(step.target)
    if pod is None:
        restarted[step.target] = ""
        return f"{step.target} does not exist; its controller will create it", None
    content = json.dumps(pod, sort_keys=True)
    backup_id = await _backup(run, folder, index, str(step.target), "object", content)
    uid = str(pod.get("metadata", {}).get("uid", ""))
    try:
        await cluster.delete_pod(step.target)
    except Exception as exc:
        if api_status(exc) != 404:
            raise StepFailed(f"delete of {step.target} failed: {exc}") from exc
    restarted[step.target] = uid
    undo.append(_Undo(index, "restart", str(step.target), backup_id, str(step.target)))
    return f"deleted {step.target} (uid {uid or '?'}); its controller recreates it", backup_id


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    for condition in pod.get("status", {}).get("conditions") or ():
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def _pod_state(pod: Mapping[str, Any] | None, old_uid: str | None) -> tuple[bool, str]:
    if pod is None:
        return False, "pod not created yet"
    meta = pod.get("metadata", {})
    if old_uid and meta.get("uid") == old_uid:
        return False, "old pod still present"
    if meta.get("deletionTimestamp"):
        return False, "pod terminating"
    phase = pod.get("status", {}).get("phase") or "Pending"
    if _pod_ready(pod):
        return True, f"Ready ({phase})"
    waiting = [
        s.get("state", {}).get("waiting", {}).get("reason")
        for s in pod.get("status", {}).get("containerStatuses") or ()
        if s.get("state", {}).get("waiting")
    ]
    return False, f"{phase}, not Ready" + (f" ({', '.join(w for w in waiting if w)})" if any(waiting) else "")


async def _do_wait(
    run: _Run,
    step: WaitReadyStep,
    index: int,
    cluster: ClusterWriter,
    config: Config,
    restarted: Mapping[ObjectRef, str],
    poll_interval: float,
) -> str:
    timeout = min(step.timeout_seconds, float(config.remediation.wait_ready_timeout_seconds))
    old_uid = restarted.get(step.target)
    started = time.monotonic()
    last_report = started
    last_state = ""
    while True:
        elapsed = time.monotonic() - started
        try:
            pod = await cluster.read_raw(step.target)
        except Exception as exc:  # a blip while waiting is not a failed step
            pod, state_note = None, f"read failed: {exc}"
        else:
            state_note = ""
        ready, state = _pod_state(pod, old_uid)
        state = state_note or state
        if ready:
            return f"{step.target} Ready after {elapsed:.0f}s"
        if elapsed >= timeout:
            raise StepFailed(f"{step.target} not Ready after {timeout:g}s (last seen: {state})")
        now = time.monotonic()
        if state != last_state or now - last_report >= PROGRESS_EVERY_SECONDS:
            await run.emit(
                index,
                step.action,
                "progress",
                f"waiting for {step.target}: {state}",
                elapsed=elapsed,
                audit=False,
            )
            last_state, last_report = state, now
        await asyncio.sleep(min(poll_interval, max(0.0, timeout - elapsed)))


async def _do_host(
    run: _Run,
    step: HostCommandStep,
    index: int,
    hosts: Hosts | None,
    folder: Path,
    undo: list[_Undo],
) -> tuple[str, str]:
    if hosts is None:
        raise StepFailed("no hosts are configured; cannot run a host command")
    try:
        before = await hosts.snapshot(step.host, step.path, recursive=step.recursive)
    except HostError as exc:
        raise StepFailed(str(exc)) from exc
    target = host_target(step.host, step.path)
    content = before.to_json()
    backup_id = await _backup(run, folder, index, target, "host", content)
    await run.emit(
        index,
        step.action,
        "progress",
        f"recorded owner/mode of {len(before.entries)} entries",
        backup_id=backup_id,
    )
    undo.append(_Undo(index, "host", target, backup_id, content))
    try:
        if step.operation == "chown":
            if step.uid is None or step.gid is None:
                raise StepFailed("chown needs uid and gid")
            await hosts.chown(step.host, step.path, uid=step.uid, gid=step.gid, recursive=step.recursive)
        else:
            if step.mode is None:
                raise StepFailed("chmod needs a mode")
            await hosts.chmod(step.host, step.path, mode=step.mode, recursive=step.recursive)
    except HostError as exc:
        raise StepFailed(str(exc)) from exc
    return _host_step_text(step), backup_id


def _unpinned_paths(step: PatchStep) -> list[str]:
    """Paths the patch changes that nothing pins to the state seen at diagnosis: no resourceVersion,
    and no `test` op on the path or on one of its parents."""
    if step.resource_version is not None:
        return []
    tested = [op.path for op in step.ops if op.op == "test"]
    return [
        op.path
        for op in step.ops
        if op.op != "test"
        and not any(op.path == t or op.path.startswith(t.rstrip("/") + "/") for t in tested)
    ]


def preflight(plan: Plan, hosts: Hosts | None) -> list[str]:
    """Why steps would fail for reasons known before anything changes (a patch not pinned to what
    diagnosis saw, so it could clobber; a host step's host not configured, its path outside the
    host's data path prefixes). Checked up front, so a plan does not stop half-way with its first
    changes applied."""
    problems = []
    for index, step in enumerate(plan.steps, start=1):
        if isinstance(step, PatchStep) and (unpinned := _unpinned_paths(step)):
            problems.append(
                f"step {index} ({step.action} {step.target}): not pinned to the state seen at diagnosis "
                f"(no resourceVersion and no test op covering {', '.join(unpinned)})"
            )
        if not isinstance(step, HostCommandStep):
            continue
        try:
            if hosts is None:
                raise HostError(f"host {step.host!r} is not configured (no hosts are configured)")
            hosts.check_allowed(step.host, step.path)
        except HostError as exc:
            problems.append(f"step {index} ({step.action} {step.target}): {exc}")
    return problems


async def execute(
    findings_or_plan: Plan | Sequence[Finding],
    *,
    incident_id: int | None,
    actor: str,
    cluster: ExecutorCluster,
    hosts: Hosts | None,
    store: StoreBackend,
    config: Config,
    on_event: EventSink,
    confirm: Confirm | None = None,
    poll_interval_seconds: float = POLL_INTERVAL_SECONDS,
    metrics: MetricsRegistry | None = None,
) -> ExecutionResult:
    """Run the plan: backups, steps, validation, and rollback on failure when configured.

    `actor` is who approved (a Slack user) or `cli`. `confirm`, when given, is asked before each step
    (the CLI's interactive mode); a refusal stops the plan. Returns outcome `refused` without
    changing anything if the store refuses the execution (incident already executed, target locked).
    With `metrics` (the app's registry) the outcome is counted in `pitcrew_executions_total`.
    """
    plan = plan_of(findings_or_plan)
    if not plan.steps:
        raise ValueError("nothing to execute: no finding has an automatic plan")
    targets = [step_lock_target(s) for s in plan.steps]
    try:
        execution = await store.start_execution(incident_id, actor, targets, json.dumps(plan_to_json(plan)))
    except ExecutionConflict as exc:
        await store.audit(actor, "execution refused", incident_id=incident_id, detail=exc.reason)
        _count_execution(metrics, plan, "refused")
        return ExecutionResult(execution_id=exc.execution_id, outcome="refused", detail=exc.reason)

    # Only a diagnosed incident may run: a rejection (or a re-diagnosis) that landed between the
    # approval and this point wins, and this execution ends before touching anything.
    if incident_id is not None and not await store.set_work_state(
        incident_id, WorkState.EXECUTING, expected=[WorkState.DIAGNOSED]
    ):
        current = await store.get_incident(incident_id)
        state = current.work_state.value if current is not None else "gone"
        reason = f"incident {incident_id} is {state}, not awaiting execution; nothing was changed"
        await store.finish_execution(execution.id, "failed", reason)
        await store.audit(actor, "execution refused", incident_id=incident_id, detail=reason)
        _count_execution(metrics, plan, "refused")
        return ExecutionResult(execution_id=execution.id, outcome="refused", detail=reason)

    run = _Run(
        execution_id=execution.id, incident_id=incident_id, actor=actor, store=store, on_event=on_event
    )
    folder = _backup_folder(config, execution.id, execution.started_at)
    started_wall = time.time()
    undo: list[_Undo] = []
    restarted: dict[ObjectRef, str] = {}
    failure: str | None = None
    try:
        problems = preflight(plan, hosts)
        if problems:
            failure = f"not started, nothing was changed: {'; '.join(problems)}"
            await run.emit(-1, "preflight", "failed", "; ".join(problems))
        for index, step in enumerate(plan.steps if failure is None else ()):
            if confirm is not None and not await confirm(index, step):
                await run.emit(index, step.action, "skipped", f"not confirmed: {step.description}")
                failure = f"stopped before step {index + 1}: not confirmed"
                break
            await run.emit(index, step.action, "started", f"{step.target}: {step.description}")
            step_started = time.monotonic()
            backup_id: str | None = None
            try:
                match step:
                    case PatchStep() | EditConfigMapStep():
                        detail, backup_id = await _do_patch(run, step, index, cluster, folder, undo)
                    case RestartPodStep():
                        detail, backup_id = await _do_restart(
                            run, step, index, cluster, folder, restarted, undo
                        )
                    case WaitReadyStep():
                        detail = await _do_wait(
                            run, step, index, cluster, config, restarted, poll_interval_seconds
                        )
                    case HostCommandStep():
                        detail, backup_id = await _do_host(run, step, index, hosts, folder, undo)
            except Exception as exc:  # StepFailed, or an adapter error (403, timeout...): the step failed
                reason = str(exc) if isinstance(exc, StepFailed) else f"{type(exc).__name__}: {exc}"
                failure = f"step {index + 1} ({step.action} {step.target}) failed: {reason}"
                await run.emit(index, step.action, "failed", reason, elapsed=time.monotonic() - step_started)
                break
            await run.emit(
                index,
                step.action,
                "done",
                detail,
                backup_id=backup_id,
                elapsed=time.monotonic() - step_started,
            )

        checks: tuple[CheckResult, ...] = ()
        # Validate whenever something was changed, even after a failed step: the operator (and the
        # thread) sees the state the rollback decision is made on.
        if failure is None or undo:
            namespaces = plan_namespaces(plan)
            await run.emit(-1, "validate", "started", f"validating {', '.join(namespaces) or 'the plan'}")
            try:
                results = await validate(
                    namespaces,
                    cluster=cluster,
                    config=config,
                    since=started_wall,
                    checks=plan.validation or None,
                    focus=tuple(dict.fromkeys(s.target for s in plan.steps if s.target.namespace)),
                )
            except Exception as exc:  # e.g. a handler naming an unknown check: the fix is unproven
                results = [CheckResult("validation", "fail", f"could not run: {type(exc).__name__}: {exc}")]
            checks = tuple(results)
            failed = [c for c in checks if c.status == "fail"]
            summary = ", ".join(f"{c.name}: {c.detail}" for c in failed)
            if failed:
                failure = (
                    f"{failure}; validation failed: {summary}" if failure else f"validation failed: {summary}"
                )
                await run.emit(-1, "validate", "failed", summary)
            else:
                warned = sum(1 for c in checks if c.status == "warn")
                await run.emit(
                    -1, "validate", "done", f"{len(checks)} checks passed ({warned} with warnings)"
                )

        outcome: Outcome = "succeeded"
        detail = "all steps done and validation passed"
        if failure is not None:
            outcome, detail = "failed", failure
            if undo and config.remediation.rollback_on_failure:
                problems = await _undo_all(run, undo, cluster, hosts, folder)
                if problems:
                    detail = f"{failure}; rollback incomplete: {'; '.join(problems)}"
                else:
                    outcome, detail = "rolled-back", f"{failure}; rolled back from backups"
            elif undo:
                detail = (
                    f"{failure}; rollback available: pitcrew rollback {incident_id or f'e-{execution.id}'}"
                )
    except BaseException as exc:
        # Cancelled or crashed half-way: record it so the target locks are freed and the log says why.
        await _finish(run, store, incident_id, "failed", f"execution interrupted: {exc!r}")
        _count_execution(metrics, plan, "failed")
        raise
    await _finish(run, store, incident_id, outcome, detail)
    _count_execution(metrics, plan, outcome)
    return ExecutionResult(
        execution_id=execution.id,
        outcome=outcome,
        detail=detail,
        backups=tuple(run.backups),
        checks=checks,
        events=tuple(run.events),
    )


async def _finish(
    run: _Run, store: StoreBackend, incident_id: int | None, outcome: Outcome, detail: str
) -> None:
    if outcome == "refused":  # pragma: no cover - never started, nothing to finish
        return
    await store.finish_execution(run.execution_id, outcome, detail)
    if incident_id is not None:
        state = {
            "succeeded": WorkState.SUCCEEDED,
            "failed": WorkState.FAILED,
            "rolled-back": WorkState.ROLLED_BACK,
        }[outcome]
        await store.set_work_state(incident_id, state)
    await run.emit(-1, "execution", "done" if outcome == "succeeded" else "failed", f"{outcome}: {detail}")


# ---------------------------------------------------------------------------------------------
# Rollback
# ---------------------------------------------------------------------------------------------


def _restore_ops(backup: Mapping[str, Any], live: Mapping[str, Any]) -> list[dict[str, Any]]:
    """JSON Patch that puts the backed-up content back: a ConfigMap's data (and binaryData), any other
    object's spec, exactly; pinned to the live resourceVersion so a concurrent write is not lost."""
    ops: list[dict[str, Any]] = []
    rv = _resource_version(live)
    if rv is not None:
        ops.append({"op": "test", "path": "/metadata/resourceVersion", "value": rv})
    fields = ("data", "binaryData") if backup.get("kind") == "ConfigMap" or "data" in backup else ("spec",)
    for name in fields:
        if name in backup:
            ops.append({"op": "add", "path": "/" + name, "value": backup[name]})  # add replaces if present
        elif name in live:
            ops.append({"op": "remove", "path": "/" + name})
    return ops


async def _restore_object(
    run: _Run, item: _Undo, cluster: ClusterWriter, folder: Path | None
) -> tuple[str, str]:
    ref = ObjectRef.parse(item.target)
    backup = json.loads(item.content)
    live = await cluster.read_raw(ref)
    if live is None:
        raise StepFailed(f"{item.target} no longer exists; restore it from the backup YAML by hand")
    replaced = await _backup(
        run, folder, item.step_index, item.target, "object", json.dumps(live, sort_keys=True), undo=True
    )
    await cluster.json_patch(ref, _restore_ops(backup, live))
    return f"restored {item.target} from backup", replaced


async def _restore_host(run: _Run, item: _Undo, hosts: Hosts | None, folder: Path | None) -> tuple[str, str]:
    if hosts is None:
        raise StepFailed("no hosts configured")
    backup = HostBackup.from_json(item.content)
    live = await hosts.snapshot(backup.host, backup.path, recursive=backup.recursive)
    replaced = await _backup(run, folder, item.step_index, item.target, "host", live.to_json(), undo=True)
    await hosts.restore(backup)
    return f"restored owner/mode of {backup.path} on {backup.host} ({len(backup.entries)} entries)", replaced


async def _undo_all(
    run: _Run, undo: Sequence[_Undo], cluster: ClusterWriter, hosts: Hosts | None, folder: Path | None
) -> list[str]:
    """Undo completed steps in reverse order; pods that were restarted are restarted again at the
    end, so they come back with the restored spec and config. An undo is a change too: the state it
    replaces is backed up first (rule 2), so a rollback loses nothing done since the execution and
    can itself be undone. Returns the problems (empty if all ok)."""
    problems: list[str] = []
    await run.emit(-1, "rollback", "started", f"undoing {len(undo)} completed step(s)")
    for item in reversed(undo):
        if item.kind == "restart":
            continue
        action = "restore-host" if item.kind == "host" else "restore"
        try:
            if item.kind == "host":
                detail, replaced = await _restore_host(run, item, hosts, folder)
            else:
                detail, replaced = await _restore_object(run, item, cluster, folder)
            detail += f"; the state it replaced is backup {replaced}"
        except Exception as exc:
            problems.append(f"{item.target}: {exc}")
            await run.emit(
                item.step_index, action, "failed", f"{item.target}: {exc}", backup_id=item.backup_id
            )
            continue
        await run.emit(item.step_index, action, "rolled-back", detail, backup_id=item.backup_id)
    for item in undo:
        if item.kind != "restart":
            continue
        try:
            pod = await cluster.read_raw(ObjectRef.parse(item.content))
            if pod is not None:
                await _backup(
                    run,
                    folder,
                    item.step_index,
                    item.target,
                    "object",
                    json.dumps(pod, sort_keys=True),
                    undo=True,
                )
            await cluster.delete_pod(ObjectRef.parse(item.content))
        except Exception as exc:
            if api_status(exc) != 404:
                problems.append(f"{item.target}: {exc}")
                await run.emit(item.step_index, "restart-pod", "failed", f"{item.target}: {exc}")
                continue
        await run.emit(
            item.step_index,
            "restart-pod",
            "rolled-back",
            f"restarted {item.target} to pick up restored state",
        )
    await run.emit(
        -1, "rollback", "failed" if problems else "done", "; ".join(problems) or "all completed steps undone"
    )
    return problems


def _undo_from_backups(backups: Sequence[Backup]) -> list[_Undo]:
    items = []
    for index, backup in enumerate(backups):
        if backup.kind == "host":
            items.append(_Undo(index, "host", backup.target, backup.id, backup.content))
        elif backup.target.split("/")[-2:-1] == ["Pod"]:
            items.append(_Undo(index, "restart", backup.target, backup.id, backup.target))
        else:
            items.append(_Undo(index, "object", backup.target, backup.id, backup.content))
    return items


async def rollback(
    execution_id_or_backup_id: int | str,
    *,
    actor: str,
    cluster: ClusterWriter,
    hosts: Hosts | None,
    store: StoreBackend,
    on_event: EventSink,
    config: Config | None = None,
) -> ExecutionResult:
    """Restore every backup of an execution (newest first), or one backup ("b-12").

    The rollback is itself recorded as an execution holding the same target locks, so it cannot run
    while another remediation touches those objects; the states it replaces are its own backups
    (also written as YAML under `remediation.backup_dir` when `config` is given), so rolling back
    the rollback execution re-applies the change. The original execution's outcome becomes
    `rolled-back` when everything was restored."""
    single = isinstance(execution_id_or_backup_id, str)
    if single:
        backup = await store.get_backup(str(execution_id_or_backup_id))
        if backup is None:
            raise LookupError(f"backup {execution_id_or_backup_id} does not exist")
        backups = [backup]
        original = await store.get_execution(backup.execution_id)
    else:
        original = await store.get_execution(int(execution_id_or_backup_id))
        if original is None:
            raise LookupError(f"execution {execution_id_or_backup_id} does not exist")
        backups = await store.list_backups(original.id)
        if not backups:
            raise LookupError(f"execution {original.id} has no backups; nothing to roll back")
    if original is None:  # pragma: no cover - backups reference executions
        raise LookupError("the backup's execution does not exist")
    if original.status == "running":
        return ExecutionResult(
            execution_id=original.id, outcome="refused", detail=f"execution {original.id} is still running"
        )
    if original.status == "rolled-back" and not single:
        return ExecutionResult(
            execution_id=original.id,
            outcome="refused",
            detail=f"execution {original.id} was already rolled back (restore one backup by its id instead)",
        )
    targets = [b.target for b in backups]
    plan_json = json.dumps({"rollback_of": original.id, "backups": [b.id for b in backups]})
    try:
        execution = await store.start_execution(None, actor, targets, plan_json)
    except ExecutionConflict as exc:
        return ExecutionResult(execution_id=exc.execution_id, outcome="refused", detail=exc.reason)
    run = _Run(
        execution_id=execution.id,
        incident_id=original.incident_id,
        actor=actor,
        store=store,
        on_event=on_event,
    )
    try:
        folder = _backup_folder(config, execution.id, execution.started_at) if config else None
        problems = await _undo_all(run, _undo_from_backups(backups), cluster, hosts, folder)
    except BaseException as exc:
        await store.finish_execution(execution.id, "failed", f"rollback interrupted: {exc!r}")
        raise
    restored = ", ".join(b.id for b in backups)
    if problems:
        detail = f"rollback of execution {original.id} incomplete: {'; '.join(problems)}"
        await store.finish_execution(execution.id, "failed", detail)
        return ExecutionResult(
            execution.id, "failed", detail, backups=tuple(b.id for b in backups), events=tuple(run.events)
        )
    detail = f"restored {restored} (execution {original.id})"
    await store.finish_execution(execution.id, "succeeded", detail)
    if not single:
        await store.finish_execution(
            original.id, "rolled-back", f"{original.detail}; rolled back by {actor}".lstrip("; ")
        )
        if original.incident_id is not None:
            await store.set_work_state(original.incident_id, WorkState.ROLLED_BACK)
    return ExecutionResult(
        execution.id, "rolled-back", detail, backups=tuple(b.id for b in backups), events=tuple(run.events)
    )


# ---------------------------------------------------------------------------------------------
# Rendering for the CLI (bot/cli/remediate.py, bot/cli/rollback.py)
# ---------------------------------------------------------------------------------------------


def format_event(event: StepEvent) -> str:
    """One line per event, as the CLI prints it."""
    where = f"step {event.step_index + 1}" if event.step_index >= 0 else "plan"
    extras = []
    if event.backup_id:
        extras.append(f"backup {event.backup_id}")
    if event.elapsed_seconds is not None:
        extras.append(f"{event.elapsed_seconds:.1f}s")
    suffix = f" ({', '.join(extras)})" if extras else ""
    return f"[{where}] {event.action} {event.phase}: {event.detail}{suffix}"


def format_plan(plan: Plan) -> str:
    lines = []
    for index, step in enumerate(plan.steps, start=1):
        extra = f" [{_host_step_text(step)}]" if isinstance(step, HostCommandStep) else ""
        lines.append(f"  {index}. {step.action} {step.target}: {step.description}{extra}")
    return "\n".join(lines)
