"""The PostgreSQL fixture itself: a real server, password logins over TCP, one database per test."""

from __future__ import annotations

import os

import asyncpg
import pytest

from tests.support.postgres import PostgresDatabase, PostgresServer


async def test_server_accepts_the_password_over_tcp(postgres_db: PostgresDatabase) -> None:
    conn = await asyncpg.connect(postgres_db.url, password=postgres_db.password)
    try:
        assert await conn.fetchval("SELECT current_database()") == postgres_db.name
        assert (await conn.fetchval("SHOW server_version")).split(".")[0].isdigit()
    finally:
        await conn.close()


async def test_wrong_password_is_refused(postgres_db: PostgresDatabase) -> None:
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(postgres_db.url, password="not-it")


def test_server_runs_unprivileged(postgres_server: PostgresServer) -> None:
    owner = postgres_server.psql("SELECT pg_catalog.current_setting('data_directory')")
    assert owner == postgres_server.data_dir
    if os.geteuid() == 0:
        assert postgres_server.run_as == "nobody"
        assert os.stat(postgres_server.data_dir).st_uid != 0


def test_each_test_gets_its_own_database(
    postgres_db: PostgresDatabase, postgres_server: PostgresServer
) -> None:
    names = postgres_server.psql("SELECT datname FROM pg_database WHERE datname LIKE 't\\_%'").split()
    assert postgres_db.name in names
