"""Rollback: restores an execution's backups in reverse order (objects by JSON patch against the
live object, host paths through bot.hosts), reporting each step like the executor.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.hosts import HostBackup
from bot.model import (
    ObjectRef,
    WorkState,
)
from bot.store import ExecutionConflict

if TYPE_CHECKING:
    from bot.config import Config
    from bot.hosts import Hosts
    from bot.store import Backup, StoreBackend
from bot.remediation.base import ClusterWriter, EventSink, ExecutionResult, StepFailed, api_status
from bot.remediation.plan import _resource_version
from bot.remediation.run import _backup, _backup_folder, _Run, _Undo


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
