"""`pitcrew store copy --from sqlite:PATH --to postgresql://...` and `pitcrew store migrate`, as a user
runs them (subprocess), against a real PostgreSQL: every record arrives with its id, the next ids
continue after them, a non-empty target or a bad argument is refused with the reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.model import WorkState
from bot.store import Store
from bot.store.postgres import PostgresStore
from tests.support.postgres import PostgresDatabase
from tests.support.store import make_alert, make_payload, postgres_settings

REPO = Path(__file__).resolve().parents[1]


def pitcrew(
    *args: str, env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PGPASSWORD")}
    full["PYTHONPATH"] = str(REPO)
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        capture_output=True,
        text=True,
        env=full,
        cwd=cwd,
        timeout=120,
        check=False,
    )


async def _filled_sqlite(path: Path) -> dict[str, object]:
    store = await Store.open(str(path))
    try:
        first = await store.record_webhook(make_payload("g1", [make_alert("a"), make_alert("b")]))
        second = await store.record_webhook(make_payload("g2", [make_alert("c")]))
        await store.save_diagnosis(first.incident_id, [], dry_run_diff="--- a\n+++ b\n", error=None)
        await store.record_decision(first.incident_id, "U1", "ada", "approve", None)
        execution = await store.start_execution(
            first.incident_id, "ada", ["Pod/monitoring/p"], '{"steps": []}'
        )
        backup = await store.save_backup(execution.id, "Pod/monitoring/p", "object", '{"kind": "Pod"}')
        await store.finish_execution(execution.id, "succeeded", "fixed")
        await store.audit("ada", "approve", incident_id=first.incident_id, detail="ok")
        await store.enqueue_outbox("incident:1", "chat.postMessage", '{"text": "hi"}', kv={"k": "v"})
        await store.set_slack_message(first.incident_id, "C1", "1700000000.000100")
        return {
            "incidents": [
                await store.get_incident(first.incident_id),
                await store.get_incident(second.incident_id),
            ],
            "execution": await store.get_execution(execution.id),
            "backup": await store.get_backup(backup),
            "decisions": await store.list_decisions(first.incident_id),
            "audit": await store.list_audit(),
            "outbox": await store.due_outbox(1e12, 10),
        }
    finally:
        await store.close()


async def test_copy_moves_every_record_with_its_id(tmp_path: Path, postgres_db: PostgresDatabase) -> None:
    db = tmp_path / "pitcrew.db"
    before = await _filled_sqlite(db)
    run = pitcrew(
        "store",
        "copy",
        "--from",
        f"sqlite:{db}",
        "--to",
        postgres_db.url,
        env={"PGPASSWORD": postgres_db.password},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"copied {db} to {postgres_db.url}: 2 incidents, 3 alerts, 1 decisions,")
    assert postgres_db.password not in run.stdout + run.stderr

    store = await PostgresStore.open(postgres_settings(postgres_db))
    try:
        incidents = before["incidents"]
        assert isinstance(incidents, list)
        assert [await store.get_incident(i.id) for i in incidents] == incidents
        execution = before["execution"]
        assert execution is not None and await store.get_execution(execution.id) == execution
        backup = before["backup"]
        assert await store.get_backup(backup.id) == backup
        assert await store.list_decisions(incidents[0].id) == before["decisions"]
        assert await store.list_audit() == before["audit"]
        assert await store.due_outbox(1e12, 10) == before["outbox"]
        assert await store.get_kv("k") == "v"
        assert await store.get_slack_message(incidents[0].id) == ("C1", "1700000000.000100")
        assert incidents[0].work_state is WorkState.DIAGNOSED
        # New rows continue after the copied ids.
        third = await store.record_webhook(make_payload("g3", [make_alert("d")]))
        assert third.incident_id == max(i.id for i in incidents) + 1
    finally:
        await store.close()

    # Copying again would mix two histories: refused, nothing written.
    again = pitcrew(
        "store",
        "copy",
        "--from",
        f"sqlite:{db}",
        "--to",
        postgres_db.url,
        env={"PGPASSWORD": postgres_db.password},
    )
    assert again.returncode == 1
    assert again.stderr == (
        "pitcrew store copy: the PostgreSQL store is not empty (table incidents has rows);"
        " copy into a new database\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "x.db", "--to", "postgresql://u@h/db"], "--from must be sqlite:PATH, got 'x.db'"),
        (["--from", "sqlite:missing.db", "--to", "postgresql://u@h/db"], "missing.db: no such file"),
        (
            ["--from", "sqlite:x.db", "--to", "postgresql://u:secret-pw@h/db"],
            "--to: must not carry credentials",
        ),
    ],
)
def test_copy_refuses_bad_arguments(args: list[str], message: str, tmp_path: Path) -> None:
    run = pitcrew("store", "copy", *args, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.startswith(f"pitcrew store copy: {message}")
    assert "secret-pw" not in run.stderr


def test_migrate_brings_the_configured_store_to_the_current_schema(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"store:\n  url: {postgres_db.url}\n  password_env: PG_PW\n")
    run = pitcrew("store", "migrate", "--config", str(config), env={"PG_PW": postgres_db.password})
    assert (run.returncode, run.stdout) == (0, f"store {postgres_db.url}: schema version 3\n"), run.stderr
    tables = postgres_db.server.psql("SELECT count(*) FROM schema_version", postgres_db.name)
    assert tables == "3"
    config.write_text("store:\n  path: x.db\n")
    run = pitcrew("store", "migrate", "--config", str(config), cwd=tmp_path)
    assert (run.returncode, run.stdout) == (0, "store x.db: schema version 2\n"), run.stderr
    config.write_text(f"store:\n  url: {postgres_db.url}\n  password_env: PG_PW\n")
    run = pitcrew("store", "migrate", "--config", str(config), env={"PG_PW": "wrong"})
    assert run.returncode == 1
    assert run.stderr.startswith(f"pitcrew store migrate: cannot connect to {postgres_db.url}: password")
