"""The PostgreSQL adapter: the only module that imports `asyncpg`.

asyncpg rather than psycopg 3: asyncio-native (no thread hop per query), no libpq (its wheel needs no
system library, so the image and CI need only pip), a built-in pool, and typed by asyncpg-stubs.

The URL comes from `store.url` (never with a password: that is `store.password_env`, passed to the
driver separately so it is not part of any string pitcrew prints). Every failure to connect becomes a
`PostgresUnavailable` whose message names the URL and the server's reason, never the password.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import asyncpg
import asyncpg.pool

# Re-exported for the PostgreSQL store backend: it talks to these types, not to asyncpg's modules.
Connection = asyncpg.Connection
Pool = asyncpg.Pool
Record = asyncpg.Record
UniqueViolation = asyncpg.UniqueViolationError
SerializationFailure = asyncpg.SerializationError
DeadlockDetected = asyncpg.DeadlockDetectedError
PostgresError = asyncpg.PostgresError

CONNECT_TIMEOUT_SECONDS = 10.0


class PostgresSettings(Protocol):
    """The `store` config section as this adapter reads it (bot.config owns the real class)."""

    @property
    def url(self) -> str | None: ...
    @property
    def password(self) -> object | None: ...  # a bot.config.Secret
    @property
    def pool_min_size(self) -> int: ...
    @property
    def pool_max_size(self) -> int: ...


class PostgresUnavailable(Exception):
    """Cannot connect (or the server went away). `temporary`: a retry may help (refused, timeout)."""

    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary


@dataclass(frozen=True)
class ServerInfo:
    version: str
    database: str
    user: str


def _password(settings: PostgresSettings) -> str | None:
    secret = settings.password
    if secret is None:
        return None
    reveal = getattr(secret, "reveal", None)
    return str(reveal()) if callable(reveal) else None


def _url(settings: PostgresSettings) -> str:
    if settings.url is None:
        raise ValueError("store.url is not set (the store is SQLite)")
    return settings.url


def describe_error(url: str, exc: BaseException) -> PostgresUnavailable:
    """One line a person can act on; whether retrying helps."""
    if isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        return PostgresUnavailable(
            f"cannot connect to {url}: {exc} (check store.password_env)", temporary=False
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return PostgresUnavailable(f"cannot connect to {url}: {exc}", temporary=False)
    if isinstance(exc, TimeoutError):
        return PostgresUnavailable(
            f"cannot connect to {url}: no answer within {CONNECT_TIMEOUT_SECONDS:.0f} s", temporary=True
        )
    if isinstance(exc, OSError):
        return PostgresUnavailable(f"cannot connect to {url}: {exc.strerror or exc}", temporary=True)
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        return PostgresUnavailable(f"cannot connect to {url}: {exc}", temporary=True)
    return PostgresUnavailable(f"cannot connect to {url}: {type(exc).__name__}: {exc}", temporary=True)


async def connect(settings: PostgresSettings) -> asyncpg.Connection:
    """One connection (the CLI's checks and the migration lock)."""
    url = _url(settings)
    try:
        return await asyncpg.connect(url, password=_password(settings), timeout=CONNECT_TIMEOUT_SECONDS)
    except (Exception, TimeoutError) as exc:
        raise describe_error(url, exc) from None


async def create_pool(settings: PostgresSettings) -> asyncpg.Pool:
    url = _url(settings)
    try:
        pool = await asyncpg.create_pool(
            url,
            password=_password(settings),
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            timeout=CONNECT_TIMEOUT_SECONDS,
            # pitcrew's statements are few and fixed; a cache per connection saves the parse each time.
            statement_cache_size=256,
        )
    except (Exception, TimeoutError) as exc:
        raise describe_error(url, exc) from None
    assert pool is not None
    return pool


async def server_info(settings: PostgresSettings) -> ServerInfo:
    """Connect, ask who and where we are, disconnect (`pitcrew check-config --connect`)."""
    conn = await connect(settings)
    try:
        row = await conn.fetchrow(
            "SELECT current_setting('server_version'), current_database(), current_user"
        )
        assert row is not None
        return ServerInfo(version=str(row[0]), database=str(row[1]), user=str(row[2]))
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def advisory_lock(conn: asyncpg.Connection, key: int, *, timeout_seconds: float) -> AsyncIterator[None]:
    """Hold a session-level advisory lock for the block (e.g. migrations: one replica at a time;
    the others wait, then find the schema current). Bounded: a stuck holder raises TimeoutError."""
    await asyncio.wait_for(conn.execute("SELECT pg_advisory_lock($1)", key), timeout=timeout_seconds)
    try:
        yield
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", key)
