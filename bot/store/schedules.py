"""Named locks with a TTL and small key/value records (SQLite): what scheduled runs use so that
several replicas, a restart or a late catch-up post a summary once."""

from __future__ import annotations

import sqlite3
from typing import cast

from bot.store.sqlite import SqliteDatabase


def put_kv(conn: sqlite3.Connection, key: str, value: str, now: float) -> None:
    """Inside a write: set a kv record (the outbox sets some in the same transaction as its item)."""
    conn.execute(
        "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE"
        " SET value = excluded.value, updated_at = excluded.updated_at",
        (key, value, now),
    )


class SqliteSchedules(SqliteDatabase):
    """The locks and kv repository (`bot.store.interface.ScheduleRepository`) on SQLite."""

    # -- locks and small state -------------------------------------------------------------------

    async def try_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        return await self._run(self._try_lock, name, owner, ttl_seconds)

    def _try_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        now = self._clock()
        with self._write() as conn:
            row = conn.execute("SELECT owner, expires_at FROM locks WHERE name = ?", (name,)).fetchone()
            if row is not None and row["owner"] != owner and row["expires_at"] > now:
                return False
            conn.execute(
                "INSERT INTO locks (name, owner, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE"
                " SET owner = excluded.owner, expires_at = excluded.expires_at",
                (name, owner, now + ttl_seconds),
            )
            return True

    async def release_lock(self, name: str, owner: str) -> None:
        await self._run(self._release_lock, name, owner)

    def _release_lock(self, name: str, owner: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM locks WHERE name = ? AND owner = ?", (name, owner))

    async def get_kv(self, key: str) -> str | None:
        return await self._run(self._get_kv, key)

    def _get_kv(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else cast(str, row[0])

    async def set_kv(self, key: str, value: str) -> None:
        await self._run(self._set_kv, key, value)

    def _set_kv(self, key: str, value: str) -> None:
        with self._write() as conn:
            put_kv(conn, key, value, self._clock())
