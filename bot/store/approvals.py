"""Approvals and the audit log (SQLite): who approved or rejected an incident, and every action
pitcrew or a person took, in the order it happened."""

from __future__ import annotations

import sqlite3

from bot.store.records import AuditEntry, Decision, DecisionKind, require_choice
from bot.store.sqlite import SqliteDatabase, require_incident

_AUDIT_COLUMNS = "id, at, actor, action, incident_id, execution_id, detail"


def _audit_from_row(row: sqlite3.Row) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        at=row["at"],
        actor=row["actor"],
        action=row["action"],
        incident_id=row["incident_id"],
        execution_id=row["execution_id"],
        detail=row["detail"],
    )


class SqliteApprovals(SqliteDatabase):
    """The approvals and audit repository (`bot.store.interface.ApprovalRepository`) on SQLite."""

    # -- approvals ------------------------------------------------------------------------------

    async def record_decision(
        self,
        incident_id: int,
        user_id: str,
        user_name: str,
        decision: DecisionKind,
        reason: str | None,
    ) -> None:
        require_choice(decision, DecisionKind, "decision")
        await self._run(self._record_decision, incident_id, user_id, user_name, decision, reason)

    def _record_decision(
        self, incident_id: int, user_id: str, user_name: str, decision: str, reason: str | None
    ) -> None:
        now = self._clock()
        with self._write() as conn:
            require_incident(conn, incident_id)
            conn.execute(
                "INSERT INTO decisions (incident_id, user_id, user_name, decision, reason, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (incident_id, user_id, user_name, decision, reason, now),
            )

    async def list_decisions(self, incident_id: int) -> list[Decision]:
        return await self._run(self._list_decisions, incident_id)

    def _list_decisions(self, incident_id: int) -> list[Decision]:
        rows = self._conn.execute(
            "SELECT incident_id, user_id, user_name, decision, reason, at FROM decisions"
            " WHERE incident_id = ? ORDER BY id",
            (incident_id,),
        )
        return [Decision(*r) for r in rows]

    # -- audit ----------------------------------------------------------------------------------

    async def audit(
        self,
        actor: str,
        action: str,
        *,
        incident_id: int | None = None,
        execution_id: int | None = None,
        detail: str = "",
    ) -> None:
        await self._run(self._audit, actor, action, incident_id, execution_id, detail)

    def _audit(
        self, actor: str, action: str, incident_id: int | None, execution_id: int | None, detail: str
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO audit (at, actor, action, incident_id, execution_id, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (self._clock(), actor, action, incident_id, execution_id, detail),
            )

    async def list_audit(self, *, incident_id: int | None = None, limit: int = 200) -> list[AuditEntry]:
        return await self._run(self._list_audit, incident_id, limit)

    def _list_audit(self, incident_id: int | None, limit: int) -> list[AuditEntry]:
        if incident_id is None:
            rows = self._conn.execute(
                f"SELECT {_AUDIT_COLUMNS} FROM audit ORDER BY id DESC LIMIT ?", (limit,)
            )
        else:
            rows = self._conn.execute(
                f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE incident_id = ? ORDER BY id DESC LIMIT ?",
                (incident_id, limit),
            )
        return [_audit_from_row(r) for r in reversed(rows.fetchall())]
