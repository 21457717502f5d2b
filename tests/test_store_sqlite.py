"""Store on SQLite: opening (WAL, synchronous, owner-only files), versioned migrations, a closed store."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bot.store import MIGRATIONS, Migration, SchemaTooNew, Store, StoreClosed, StoreError
from tests.support.store import make_alert, make_payload

Opener = Callable[..., Awaitable[Store]]


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _versions(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]


async def test_open_empty_file_creates_schema_in_wal_mode(
    tmp_store_opener: Opener, tmp_store_path: Path
) -> None:
    store = await tmp_store_opener()
    assert await store.pragma("journal_mode") == "wal"
    assert await store.pragma("synchronous") == "1"  # NORMAL
    assert await store.pragma("foreign_keys") == "1"
    assert store.schema_version == len(MIGRATIONS)
    expected = {
        "schema_version",
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
    }
    assert expected <= _tables(tmp_store_path)
    assert _versions(tmp_store_path) == [m.version for m in MIGRATIONS]


async def test_synchronous_full_is_applied(tmp_store_opener: Opener) -> None:
    store = await tmp_store_opener(synchronous="full")
    assert await store.pragma("synchronous") == "2"


async def test_unknown_synchronous_value_is_refused(tmp_store_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous must be one of normal, full"):
        await Store.open(str(tmp_store_path), synchronous="off")  # type: ignore[arg-type]


async def test_reopen_keeps_data_and_does_not_rerun_migrations(
    tmp_store_opener: Opener, tmp_store_path: Path
) -> None:
    first = await tmp_store_opener()
    result = await first.record_webhook(make_payload("g1", [make_alert("a")]))
    await first.set_kv("k", "v")
    await first.close()

    second = await tmp_store_opener()
    incident = await second.get_incident(result.incident_id)
    assert incident is not None and incident.group_key == "g1"
    assert [a.fingerprint for a in incident.alerts] == ["a"]
    assert await second.get_kv("k") == "v"
    assert _versions(tmp_store_path) == [m.version for m in MIGRATIONS]


async def test_appended_migration_is_applied_at_open_and_an_older_pitcrew_refuses_the_newer_schema(
    tmp_store_opener: Opener, tmp_store_path: Path
) -> None:
    await (await tmp_store_opener()).close()
    next_version = len(MIGRATIONS) + 1
    newer = (*MIGRATIONS, Migration(next_version, "kv note", "ALTER TABLE kv ADD COLUMN note TEXT;"))
    store = await tmp_store_opener(migrations=newer)
    assert store.schema_version == next_version
    await store.close()
    with sqlite3.connect(tmp_store_path) as conn:
        assert "note" in {r[1] for r in conn.execute("PRAGMA table_info(kv)")}
    assert _versions(tmp_store_path)[-1] == next_version

    with pytest.raises(SchemaTooNew, match=f"schema version {next_version} is newer"):
        await Store.open(str(tmp_store_path))


async def test_failing_migration_leaves_no_trace(tmp_store_opener: Opener, tmp_store_path: Path) -> None:
    await (await tmp_store_opener()).close()
    broken = (
        *MIGRATIONS,
        Migration(
            len(MIGRATIONS) + 1,
            "broken",
            "CREATE TABLE half_done (a INTEGER); INSERT INTO nowhere VALUES (1);",
        ),
    )
    with pytest.raises(sqlite3.OperationalError, match="nowhere"):
        await Store.open(str(tmp_store_path), migrations=broken)
    assert "half_done" not in _tables(tmp_store_path)
    assert _versions(tmp_store_path) == [m.version for m in MIGRATIONS]


@pytest.mark.parametrize("problem", ["missing directory", "not a database"])
async def test_unusable_store_file_is_a_clear_error(tmp_path: Path, problem: str) -> None:
    if problem == "missing directory":
        path = tmp_path / "absent" / "pitcrew.db"
    else:
        path = tmp_path / "pitcrew.db"
        path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=f"cannot open store {path}: ") as raised:
        await Store.open(str(path))
    if problem == "missing directory":  # named, not SQLite's "unable to open database file"
        assert str(raised.value).endswith(f"directory {path.parent} does not exist")


async def test_a_closed_store_refuses_calls(tmp_store: Store) -> None:
    await tmp_store.close()
    assert not tmp_store.is_open
    with pytest.raises(StoreClosed):
        await tmp_store.get_kv("x")


async def test_the_database_and_its_wal_files_are_owner_only(tmp_path: Path) -> None:
    # The store holds backups of cluster objects and evidence: not for other local users to read.
    previous = os.umask(0o022)  # the usual umask, which would leave a new file world-readable
    try:
        store = await Store.open(str(tmp_path / "pitcrew.db"))
        try:
            await store.set_kv("k", "v")
            files = sorted(os.listdir(tmp_path))
            assert files == ["pitcrew.db", "pitcrew.db-shm", "pitcrew.db-wal"]
            modes = {name: stat.S_IMODE(os.stat(tmp_path / name).st_mode) for name in files}
            assert modes == dict.fromkeys(files, 0o600)
        finally:
            await store.close()
    finally:
        os.umask(previous)
