"""The Slack outbox (SQLite): calls queued in the same transaction as the state they report, delivered
later in order per thread; and where each incident's Slack message is."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, cast

from bot.store.records import NotFound, OutboxItem
from bot.store.schedules import put_kv
from bot.store.sqlite import SqliteDatabase, require_incident

_OUTBOX_COLUMNS = "id, thread_key, method, payload_json, attempts, not_before, created_at, last_error"


def _outbox_from_row(row: sqlite3.Row) -> OutboxItem:
    return OutboxItem(
        id=row["id"],
        thread_key=row["thread_key"],
        method=row["method"],
        payload_json=row["payload_json"],
        attempts=row["attempts"],
        not_before=row["not_before"],
        created_at=row["created_at"],
        last_error=row["last_error"],
    )


class SqliteOutbox(SqliteDatabase):
    """The outbox repository (`bot.store.interface.OutboxRepository`) on SQLite."""

    # -- outbox ---------------------------------------------------------------------------------

    async def enqueue_outbox(
        self, thread_key: str, method: str, payload_json: str, *, kv: Mapping[str, str] | None = None
    ) -> int:
        (item_id,) = await self.enqueue_outbox_many([(thread_key, method, payload_json)], kv=kv)
        return item_id

    async def enqueue_outbox_many(
        self, items: Sequence[tuple[str, str, str]], *, kv: Mapping[str, str] | None = None
    ) -> list[int]:
        return await self._run(self._enqueue_outbox_many, list(items), dict(kv or {}))

    def _enqueue_outbox_many(self, items: list[tuple[str, str, str]], kv: dict[str, str]) -> list[int]:
        now = self._clock()
        ids: list[int] = []
        with self._write() as conn:
            for thread_key, method, payload_json in items:
                cursor = conn.execute(
                    "INSERT INTO outbox (thread_key, method, payload_json, not_before, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (thread_key, method, payload_json, now, now),
                )
                ids.append(cast(int, cursor.lastrowid))
            for key, value in kv.items():
                put_kv(conn, key, value, now)
        return ids

    async def due_outbox(self, now: float, limit: int) -> list[OutboxItem]:
        return await self._run(self._due_outbox, now, limit)

    def _due_outbox(self, now: float, limit: int) -> list[OutboxItem]:
        rows = self._conn.execute(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox AS o WHERE state = 'pending' AND not_before <= ?"
            " AND id = (SELECT MIN(id) FROM outbox AS p"
            " WHERE p.thread_key = o.thread_key AND p.state = 'pending')"
            " ORDER BY id LIMIT ?",
            (now, limit),
        )
        return [_outbox_from_row(r) for r in rows]

    async def mark_outbox_sent(self, item_id: int, response_json: str) -> None:
        await self._run(
            self._update_outbox,
            item_id,
            "UPDATE outbox SET state = 'sent', attempts = attempts + 1, response_json = ?, done_at = ?"
            " WHERE id = ?",
            (response_json, self._clock()),
        )

    async def mark_outbox_retry(self, item_id: int, not_before: float, error: str) -> None:
        await self._run(
            self._update_outbox,
            item_id,
            "UPDATE outbox SET attempts = attempts + 1, not_before = ?, last_error = ? WHERE id = ?",
            (not_before, error),
        )

    async def mark_outbox_failed(self, item_id: int, error: str) -> None:
        await self._run(
            self._update_outbox,
            item_id,
            "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ?, done_at = ?"
            " WHERE id = ?",
            (error, self._clock()),
        )

    def _update_outbox(self, item_id: int, sql: str, params: tuple[Any, ...]) -> None:
        with self._write() as conn:
            if conn.execute(sql, (*params, item_id)).rowcount == 0:
                raise NotFound(f"outbox item {item_id} does not exist")

    async def prune_outbox(self, done_before: float) -> int:
        return await self._run(self._prune_outbox, done_before)

    def _prune_outbox(self, done_before: float) -> int:
        with self._write() as conn:
            cursor = conn.execute(
                "DELETE FROM outbox WHERE state IN ('sent', 'failed') AND done_at < ?", (done_before,)
            )
            return cursor.rowcount

    async def outbox_backlog(self) -> int:
        return await self._run(self._outbox_backlog)

    def _outbox_backlog(self) -> int:
        return cast(
            int, self._conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()[0]
        )

    # -- Slack message of an incident ------------------------------------------------------------

    async def set_slack_message(self, incident_id: int, channel: str, ts: str) -> None:
        await self._run(self._set_slack_message, incident_id, channel, ts)

    def _set_slack_message(self, incident_id: int, channel: str, ts: str) -> None:
        with self._write() as conn:
            require_incident(conn, incident_id)
            conn.execute(
                "INSERT INTO slack_messages (incident_id, channel, ts, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (incident_id) DO UPDATE SET channel = excluded.channel, ts = excluded.ts,"
                " updated_at = excluded.updated_at",
                (incident_id, channel, ts, self._clock()),
            )

    async def get_slack_message(self, incident_id: int) -> tuple[str, str] | None:
        return await self._run(self._get_slack_message, incident_id)

    def _get_slack_message(self, incident_id: int) -> tuple[str, str] | None:
        row = self._conn.execute(
            "SELECT channel, ts FROM slack_messages WHERE incident_id = ?", (incident_id,)
        ).fetchone()
        return None if row is None else (row["channel"], row["ts"])
