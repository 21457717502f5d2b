"""The executor: runs a plan step by step (backup, apply, wait, validate), reporting every step
through `on_event` and the audit log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.hosts import HostError
from bot.model import (
    CheckResult,
    EditConfigMapStep,
    Finding,
    HostCommandStep,
    ObjectRef,
    PatchStep,
    Plan,
    RestartPodStep,
    WaitReadyStep,
    WorkState,
    plan_to_json,
)
from bot.store import ExecutionConflict
from bot.validate import validate

if TYPE_CHECKING:
    from bot.config import Config
    from bot.hosts import Hosts
    from bot.metrics import MetricsRegistry
    from bot.store import StoreBackend
from bot.remediation.base import (
    POLL_INTERVAL_SECONDS,
    PROGRESS_EVERY_SECONDS,
    ClusterWriter,
    Confirm,
    EventSink,
    ExecutionResult,
    ExecutorCluster,
    Outcome,
    StepFailed,
    api_status,
    execution_counter,
)
from bot.remediation.plan import (
    _changed_since_diagnosis,
    _patch_ops,
    _resource_version,
    host_target,
    plan_namespaces,
    plan_of,
    step_lock_target,
)
from bot.remediation.preflight import preflight
from bot.remediation.render import _host_step_text
from bot.remediation.rollback import _undo_all
from bot.remediation.run import _backup, _backup_folder, _Run, _Undo

log = logging.getLogger(__name__)


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


def _count_execution(metrics: MetricsRegistry | None, plan: Plan, outcome: Outcome) -> None:
    if metrics is None:
        return
    counter = execution_counter(metrics)
    for namespace in plan_namespaces(plan) or ("",):
        counter.inc(namespace=namespace, outcome=outcome)
