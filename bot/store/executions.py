"""Executions, their target locks and their backups (SQLite).

Rules that live here, in SQL: one execution per incident (UNIQUE incident_id), however many
concurrent approvals; one running execution per target object (UNIQUE index on active target
locks); a backup is committed before the change it protects."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Literal, cast

from bot.store.records import (
    Backup,
    BackupKind,
    Execution,
    ExecutionConflict,
    ExecutionOutcome,
    NotFound,
    backup_number,
    require_choice,
)
from bot.store.sqlite import SqliteDatabase, require_incident

_EXECUTION_COLUMNS = "id, incident_id, actor, targets, plan_json, status, detail, started_at, finished_at"


def _execution_from_row(row: sqlite3.Row) -> Execution:
    return Execution(
        id=row["id"],
        incident_id=row["incident_id"],
        actor=row["actor"],
        targets=tuple(json.loads(row["targets"])),
        plan_json=row["plan_json"],
        status=row["status"],
        detail=row["detail"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


class SqliteExecutions(SqliteDatabase):
    """The executions repository (`bot.store.interface.ExecutionRepository`) on SQLite."""

    # -- executions -----------------------------------------------------------------------------

    async def start_execution(
        self,
        incident_id: int | None,
        actor: str,
        targets: Sequence[str],
        plan_json: str,
    ) -> Execution:
        unique_targets = tuple(dict.fromkeys(targets))
        return await self._run(self._start_execution, incident_id, actor, unique_targets, plan_json)

    def _start_execution(
        self, incident_id: int | None, actor: str, targets: tuple[str, ...], plan_json: str
    ) -> Execution:
        now = self._clock()
        with self._write() as conn:
            if incident_id is not None:
                require_incident(conn, incident_id)
                existing = conn.execute(
                    "SELECT id, status FROM executions WHERE incident_id = ?", (incident_id,)
                ).fetchone()
                if existing is not None:
                    raise ExecutionConflict(
                        f"incident {incident_id} already has execution {existing['id']}"
                        f" ({existing['status']})",
                        execution_id=existing["id"],
                    )
            if targets:
                placeholders = ",".join("?" * len(targets))
                held = conn.execute(
                    f"SELECT target, execution_id FROM execution_targets WHERE active = 1"
                    f" AND target IN ({placeholders}) ORDER BY target LIMIT 1",
                    targets,
                ).fetchone()
                if held is not None:
                    raise ExecutionConflict(
                        f"{held['target']} is locked by running execution {held['execution_id']}",
                        execution_id=held["execution_id"],
                    )
            try:
                cursor = conn.execute(
                    f"INSERT INTO executions ({_EXECUTION_COLUMNS.removeprefix('id, ')})"
                    " VALUES (?, ?, ?, ?, 'running', '', ?, NULL)",
                    (incident_id, actor, json.dumps(list(targets)), plan_json, now),
                )
                execution_id = cast(int, cursor.lastrowid)
                conn.executemany(
                    "INSERT INTO execution_targets (execution_id, target, active) VALUES (?, ?, 1)",
                    [(execution_id, t) for t in targets],
                )
            except sqlite3.IntegrityError as exc:
                # The checks above make this unreachable from this process; the unique indexes are
                # the guarantee when another process writes the same file between them.
                raise ExecutionConflict(f"execution conflict: {exc}") from exc
        return Execution(
            id=execution_id,
            incident_id=incident_id,
            actor=actor,
            targets=targets,
            plan_json=plan_json,
            status="running",
            detail="",
            started_at=now,
            finished_at=None,
        )

    async def finish_execution(self, execution_id: int, outcome: ExecutionOutcome, detail: str) -> None:
        require_choice(outcome, ExecutionOutcome, "outcome")
        await self._run(self._finish_execution, execution_id, outcome, detail)

    def _finish_execution(self, execution_id: int, outcome: str, detail: str) -> None:
        now = self._clock()
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE executions SET status = ?, detail = ?, finished_at = ? WHERE id = ?",
                (outcome, detail, now, execution_id),
            )
            if cursor.rowcount == 0:
                raise NotFound(f"execution {execution_id} does not exist")
            conn.execute("UPDATE execution_targets SET active = 0 WHERE execution_id = ?", (execution_id,))

    async def get_execution(self, execution_id: int) -> Execution | None:
        return await self._run(self._get_execution, execution_id)

    def _get_execution(self, execution_id: int) -> Execution | None:
        row = self._conn.execute(
            f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE id = ?", (execution_id,)
        ).fetchone()
        return None if row is None else _execution_from_row(row)

    async def list_executions(self, incident_id: int | None = None, limit: int = 50) -> list[Execution]:
        return await self._run(self._list_executions, incident_id, limit)

    def _list_executions(self, incident_id: int | None, limit: int) -> list[Execution]:
        if incident_id is None:
            rows = self._conn.execute(
                f"SELECT {_EXECUTION_COLUMNS} FROM executions ORDER BY id DESC LIMIT ?", (limit,)
            )
        else:
            rows = self._conn.execute(
                f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE incident_id = ? ORDER BY id DESC LIMIT ?",
                (incident_id, limit),
            )
        return [_execution_from_row(r) for r in rows]

    # -- backups --------------------------------------------------------------------------------

    async def save_backup(self, execution_id: int, target: str, kind: BackupKind, content: str) -> str:
        require_choice(kind, BackupKind, "kind")
        return await self._run(self._save_backup, execution_id, target, kind, content)

    def _save_backup(self, execution_id: int, target: str, kind: str, content: str) -> str:
        now = self._clock()
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM executions WHERE id = ?", (execution_id,)).fetchone() is None:
                raise NotFound(f"execution {execution_id} does not exist")
            cursor = conn.execute(
                "INSERT INTO backups (execution_id, target, kind, content, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (execution_id, target, kind, content, now),
            )
        return f"b-{cursor.lastrowid}"

    async def get_backup(self, backup_id: str) -> Backup | None:
        number = backup_number(backup_id)
        if number is None:
            return None
        rows = await self._run(self._backups, "id", number)
        return rows[0] if rows else None

    async def list_backups(self, execution_id: int) -> list[Backup]:
        return await self._run(self._backups, "execution_id", execution_id)

    def _backups(self, column: Literal["id", "execution_id"], value: int) -> list[Backup]:
        rows = self._conn.execute(
            f"SELECT id, execution_id, target, kind, content, created_at FROM backups"
            f" WHERE {column} = ? ORDER BY id",
            (value,),
        )
        return [
            Backup(
                id=f"b-{r['id']}",
                execution_id=r["execution_id"],
                target=r["target"],
                kind=r["kind"],
                content=r["content"],
                created_at=r["created_at"],
            )
            for r in rows
        ]
