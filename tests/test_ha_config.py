"""store.url / store.password_env / ha: what is accepted, what is refused and how it is said;
`pitcrew check-config --connect` against a real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.config import ConfigError, Secret, parse_config
from tests.support.postgres import PostgresDatabase

REPO = Path(__file__).resolve().parents[1]


def _problems(data: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env=env or {})
    return info.value.problems


def test_sqlite_is_the_default() -> None:
    config = parse_config({}, env={})
    assert config.store.backend == "sqlite"
    assert config.store.sqlite_path == "pitcrew.db"
    assert not config.ha.enabled
    assert config.ha.lease_name == "pitcrew-leader"
    assert config.ha.lease_namespace is None
    assert (config.ha.lease_duration_seconds, config.ha.renew_interval_seconds) == (15.0, 5.0)


def test_postgresql_url_with_password_from_the_environment() -> None:
    config = parse_config(
        {
            "store": {
                "url": "postgresql://pitcrew@db.internal:5432/pitcrew?sslmode=verify-full",
                "password_env": "PG_PASSWORD",
            }
        },
        env={"PG_PASSWORD": "hunter2"},
    )
    assert config.store.backend == "postgresql"
    assert config.store.password == Secret("hunter2")


@pytest.mark.parametrize(
    ("store", "problem"),
    [
        (
            {"path": "x.db", "url": "postgresql://u@h/db"},
            "store.path: set either path (SQLite) or url (PostgreSQL), not both",
        ),
        (
            {"url": "mysql://u@h/db"},
            "store.url: must be a postgresql://USER@HOST:PORT/DB URL, got 'mysql://u@h/db'",
        ),
        ({"url": "postgresql://u@h:0/db"}, "store.url: port must be between 1 and 65535, got 0"),
        ({"url": "postgresql://u@h:99999/db"}, "store.url: not a valid URL: Port out of range 0-65535"),
        ({"url": "postgresql://h/db"}, "store.url: needs a user (postgresql://USER@HOST:PORT/DB)"),
        ({"url": "postgresql://u@h"}, "store.url: needs a database name (postgresql://USER@HOST:PORT/DB)"),
        (
            {"url": "postgresql://u@h/db?sslmod=require"},
            "store.url: unknown parameter 'sslmod' (known: application_name, connect_timeout, options, "
            "server_settings, sslcert, sslkey, sslmode, sslpassword, sslrootcert, target_session_attrs)",
        ),
        (
            {"password_env": "PG_PASSWORD"},
            "store.password_env: only used with url (PostgreSQL); SQLite has no password",
        ),
        (
            {"url": "postgresql://u@h/db", "pool_max_size": 0},
            "store.pool_max_size: must be at least 1, got 0",
        ),
    ],
)
def test_bad_store_settings_say_which_field(store: dict[str, Any], problem: str) -> None:
    assert _problems({"store": store}, {"PG_PASSWORD": "x"}) == [problem]


@pytest.mark.parametrize(
    "url", ["postgresql://pitcrew:s3cret-pw@db/pitcrew", "postgresql://pitcrew@db/pitcrew?password=s3cret-pw"]
)
def test_a_password_in_the_url_is_refused_and_not_echoed(url: str) -> None:
    problems = _problems({"store": {"url": url}})
    assert len(problems) == 1
    assert problems[0].startswith("store.url: must not carry")
    assert "store.password_env" in problems[0]
    assert "s3cret-pw" not in problems[0]


def test_ha_on_sqlite_is_refused() -> None:
    assert _problems({"ha": {"enabled": True}}) == [
        "ha.enabled: replicas need a shared PostgreSQL store (set store.url and store.password_env);"
        " SQLite is one replica's file, two replicas on it would run everything twice"
    ]


@pytest.mark.parametrize(
    ("ha", "problem"),
    [
        (
            {"lease_name": "Pitcrew_Leader"},
            "ha.lease_name: must be a DNS subdomain name (a-z, 0-9, -, .), got 'Pitcrew_Leader'",
        ),
        ({"lease_namespace": "no/slash"}, "ha.lease_namespace: must be a namespace name, got 'no/slash'"),
        (
            {"lease_duration_seconds": 10, "renew_interval_seconds": 6},
            "ha.renew_interval_seconds: must be at most half of lease_duration_seconds (10), got 6",
        ),
        (
            {"lease_duration_seconds": 0.5, "renew_interval_seconds": 0.1},
            "ha.lease_duration_seconds: must be at least 1, got 0.5",
        ),
    ],
)
def test_bad_ha_settings(ha: dict[str, Any], problem: str) -> None:
    store = {"url": "postgresql://u@h/db"}
    assert _problems({"store": store, "ha": {"enabled": True, **ha}}) == [problem]


def _check_config(
    path: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    full_env["PYTHONPATH"] = str(REPO)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "check-config", *extra, str(path)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=path.parent,
        timeout=60,
        check=False,
    )


def test_check_config_connect_reaches_postgresql(tmp_path: Path, postgres_db: PostgresDatabase) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"store:\n  url: {postgres_db.url}\n  password_env: PG_PW\n")
    run = _check_config(config, "--connect", env={"PG_PW": postgres_db.password})
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[-1] == "ok"
    assert lines[0].startswith("store: PostgreSQL ") and f"database {postgres_db.name} as pitcrew" in lines[0]


def test_check_config_connect_says_why_it_cannot(tmp_path: Path, postgres_db: PostgresDatabase) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"store:\n  url: {postgres_db.url}\n  password_env: PG_PW\n")
    run = _check_config(config, "--connect", env={"PG_PW": "wrong-password-value"})
    assert run.returncode == 1
    assert run.stdout.startswith(
        f"store.url: cannot connect to {postgres_db.url}: password authentication failed"
    )
    assert "wrong-password-value" not in run.stdout + run.stderr
    # Without --connect only the file is checked.
    assert _check_config(config, env={"PG_PW": "wrong-password-value"}).stdout == "ok\n"


def test_check_config_connect_sqlite(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("store:\n  path: missing-dir/x.db\n")
    run = _check_config(config, "--connect")
    assert (run.returncode, run.stdout) == (  # serve creates it (bot.app.ensure_store_folder)
        0,
        f"store: SQLite file missing-dir/x.db (serve creates folder {tmp_path / 'missing-dir'} and the file"
        " on first start)\nok\n",
    )
    (tmp_path / "a-file").write_text("")
    config.write_text("store:\n  path: a-file/sub/x.db\n")
    run = _check_config(config, "--connect")
    assert (run.returncode, run.stdout) == (
        1,
        f"store.path: folder {tmp_path / 'a-file' / 'sub'} cannot be created"
        f" ({tmp_path / 'a-file'} is not a folder)\n",
    )
    config.write_text("store:\n  path: x.db\n")
    run = _check_config(config, "--connect")
    assert (run.returncode, run.stdout) == (0, "store: SQLite file x.db (created on first start)\nok\n")
    assert not (tmp_path / "x.db").exists()  # a check changes nothing
