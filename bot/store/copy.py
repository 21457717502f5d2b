"""Move a single replica's SQLite store into PostgreSQL (`pitcrew store copy`), ids and all, so
incident numbers, execution ids (e-N) and backup ids (b-N) people have seen stay valid.

The SQLite file is opened read-only and must be at the current schema version (open it once with
this pitcrew, e.g. `pitcrew history`, to migrate it). The PostgreSQL database is migrated, then every
table is copied in one transaction (COPY), and each id sequence is moved past the copied ids. The
target must be empty: copying into a store that already has incidents would mix two histories.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.store.postgres import PostgresSettings, PostgresStore, connect
from bot.store.records import StoreError
from bot.store.sqlite import MIGRATIONS

# Parents before children (foreign keys); every table of the schema but schema_version.
TABLES = (
    "incidents",
    "alerts",
    "decisions",
    "executions",
    "execution_targets",
    "backups",
    "audit",
    "outbox",
    "slack_messages",
    "locks",
    "kv",
)
_IDENTITY_TABLES = ("incidents", "alerts", "decisions", "executions", "backups", "audit", "outbox")


class CopyRefused(StoreError):
    pass


@dataclass(frozen=True)
class CopyResult:
    rows: dict[str, int]


def _coercer(data_type: str) -> Callable[[Any], Any]:
    # SQLite stores 0 and 1 for booleans and may hold an int in a REAL column.
    if data_type == "boolean":
        return lambda v: None if v is None else bool(v)
    if data_type == "double precision":
        return lambda v: None if v is None else float(v)
    if data_type in ("bigint", "integer"):
        return lambda v: None if v is None else int(v)
    return lambda v: v


def _read_sqlite(path: str) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    try:
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise CopyRefused(f"cannot open {path}: {exc}") from None
    try:
        try:
            version = source.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise CopyRefused(f"{path} is not a pitcrew store: {exc}") from None
        if version != len(MIGRATIONS):
            raise CopyRefused(
                f"{path} is at schema version {version}, this pitcrew writes {len(MIGRATIONS)}:"
                " open it once with this pitcrew (e.g. pitcrew history) to migrate it first"
            )
        tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
        for table in TABLES:
            cursor = source.execute(f"SELECT * FROM {table}")
            columns = [d[0] for d in cursor.description]
            tables[table] = (columns, cursor.fetchall())
        return tables
    finally:
        source.close()


async def copy_sqlite_to_postgres(sqlite_path: str, target: PostgresSettings) -> CopyResult:
    """Copy every row; raises CopyRefused (nothing written) when the source or target is unfit."""
    tables = _read_sqlite(sqlite_path)
    store = await PostgresStore.open(target)  # migrates the target to the current schema
    await store.close()
    conn = await connect(target)
    try:
        async with conn.transaction():
            for table in TABLES:
                if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
                    raise CopyRefused(
                        f"the PostgreSQL store is not empty (table {table} has rows);"
                        " copy into a new database"
                    )
            counts: dict[str, int] = {}
            for table in TABLES:
                columns, rows = tables[table]
                types = {
                    r["column_name"]: r["data_type"]
                    for r in await conn.fetch(
                        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1"
                        " AND table_schema = current_schema()",
                        table,
                    )
                }
                missing = [c for c in columns if c not in types]
                if missing:
                    raise CopyRefused(
                        f"table {table}: columns {', '.join(missing)} have no PostgreSQL counterpart"
                    )
                coerce = [_coercer(types[c]) for c in columns]
                records = [tuple(f(v) for f, v in zip(coerce, row, strict=True)) for row in rows]
                if records:
                    await conn.copy_records_to_table(table, records=records, columns=columns)
                counts[table] = len(records)
            for table in _IDENTITY_TABLES:
                # The next id continues after the copied ones (the copy wrote ids explicitly).
                await conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                )
    finally:
        await conn.close()
    return CopyResult(rows=counts)
