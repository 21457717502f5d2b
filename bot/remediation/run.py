"""One execution's (or rollback's) running state, and its backups: each committed to the store and
written as YAML under `remediation.backup_dir` before the change it protects (O_NOFOLLOW)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from bot.model import (
    StepEvent,
)
from bot.yamldiff import to_yaml

if TYPE_CHECKING:
    from bot.config import Config
    from bot.store import StoreBackend
from bot.remediation.base import EventSink, StepFailed

log = logging.getLogger(__name__)


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
