"""Store fixtures: a fresh SQLite store per test (a real file, WAL), a settable clock, and builders of
webhook payloads (the real `bot.alertmanager.WebhookPayload`) for intake tests.

    async def test_x(tmp_store: Store, store_clock: FakeClock) -> None: ...
    async def test_y(tmp_store_opener) -> None: s = await tmp_store_opener()   # same file each call
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import asyncpg
import pytest

from bot.alertmanager import WebhookPayload
from bot.config import Secret
from bot.model import Alert
from bot.store import Store
from bot.store.postgres import PostgresStore

if TYPE_CHECKING:
    from tests.support.postgres import PostgresDatabase


class FakeClock:
    """A wall clock the test moves by hand (TTLs, not_before, updated_at)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_alert(
    fingerprint: str,
    status: Literal["firing", "resolved"] = "firing",
    *,
    alertname: str = "PrometheusDown",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    starts_at: str = "2026-11-24T10:00:00Z",
    ends_at: str | None = None,
) -> Alert:
    return Alert(
        fingerprint=fingerprint,
        status=status,
        labels={"alertname": alertname, "namespace": "monitoring", "fp": fingerprint, **(labels or {})},
        annotations=dict(annotations or {"summary": f"{alertname} {fingerprint}"}),
        starts_at=starts_at,
        ends_at=ends_at if ends_at is not None or status == "firing" else "2026-11-24T11:00:00Z",
        generator_url=f"http://prometheus.example/graph?g0.expr={alertname}",
    )


def make_payload(group_key: str, alerts: Sequence[Alert], **overrides: Any) -> WebhookPayload:
    fields: dict[str, Any] = {
        "version": "4",
        "receiver": "pitcrew",
        "status": "firing" if any(a.status == "firing" for a in alerts) else "resolved",
        "alerts": tuple(alerts),
        "group_labels": {"alertname": alerts[0].name if alerts else ""},
        "common_labels": {"namespace": "monitoring", "severity": "critical"},
        "common_annotations": {},
        "external_url": "http://alertmanager.example:9093",
        "group_key": group_key,
        "truncated_alerts": 0,
    }
    fields.update(overrides)
    return WebhookPayload(**fields)


async def new_incident(store: Store, group_key: str = "g1") -> int:
    """An incident of one firing alert, through intake as a webhook would make it; returns its id."""
    return (await store.record_webhook(make_payload(group_key, [make_alert("a")]))).incident_id


@pytest.fixture
def store_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tmp_store_path(tmp_path: Path) -> Path:
    return tmp_path / "pitcrew.db"


BACKENDS = ("sqlite", "postgresql")
# What a constraint violation raises, per backend (the store passes the driver's error through).
INTEGRITY_ERRORS: tuple[type[Exception], ...] = (
    sqlite3.IntegrityError,
    asyncpg.IntegrityConstraintViolationError,
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`@pytest.mark.store_backends("sqlite", "postgresql")` (on a module or a test) runs the test once
    per backend: `tmp_store` / `tmp_store_opener` are then that backend's. The closest marker wins, so
    a test of one backend's own mechanics says `@pytest.mark.store_backends("sqlite")`."""
    marker = metafunc.definition.get_closest_marker("store_backends")
    if marker is None or "store_backend" not in metafunc.fixturenames:
        return
    unknown = set(marker.args) - set(BACKENDS)
    if unknown or not marker.args:
        raise pytest.UsageError(f"store_backends: expected some of {BACKENDS}, got {marker.args}")
    metafunc.parametrize("store_backend", marker.args, indirect=True)


@pytest.fixture
def store_backend(request: pytest.FixtureRequest) -> str:
    """The backend of `tmp_store` (SQLite unless the test is parametrized by `store_backends`)."""
    return str(getattr(request, "param", "sqlite"))


@dataclass(frozen=True)
class PostgresStoreSettings:
    """A `store:` config section pointing at the test's database (bot.config.StoreConfig's shape)."""

    url: str
    password: Secret
    pool_min_size: int = 1
    pool_max_size: int = 10


def postgres_settings(db: PostgresDatabase) -> PostgresStoreSettings:
    return PostgresStoreSettings(url=db.url, password=Secret(db.password))


@pytest.fixture
async def tmp_store_opener(
    tmp_store_path: Path, store_clock: FakeClock, store_backend: str, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., Awaitable[Store]]]:
    """Opens stores on the test's database (the same SQLite file, or the same PostgreSQL database, on
    every call: another open is another process, or another replica); every store opened is closed at
    the end."""
    opened: list[Any] = []
    settings = (
        postgres_settings(request.getfixturevalue("postgres_db")) if store_backend == "postgresql" else None
    )

    async def _open(**kwargs: Any) -> Store:
        kwargs.setdefault("clock", store_clock)
        store: Any
        if settings is not None:
            store = await PostgresStore.open(settings, **kwargs)
        else:
            store = await Store.open(str(tmp_store_path), **kwargs)
        opened.append(store)
        return cast(Store, store)

    yield _open
    for store in opened:
        await store.close()


@pytest.fixture
async def tmp_store(tmp_store_opener: Callable[..., Awaitable[Store]]) -> Store:
    return await tmp_store_opener()
