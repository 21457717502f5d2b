"""Store: named locks with a TTL and key/value records."""

from __future__ import annotations

import pytest

from bot.store import Store
from tests.support.store import FakeClock

# Every test on both backends, unless it says otherwise (tests/support/store.py).
pytestmark = pytest.mark.store_backends("sqlite", "postgresql")


async def test_try_lock_owner_and_ttl(tmp_store: Store, store_clock: FakeClock) -> None:
    assert await tmp_store.try_lock("schedule:morning", "pod-a", 60)
    assert not await tmp_store.try_lock("schedule:morning", "pod-b", 60)
    assert await tmp_store.try_lock("other", "pod-b", 60)  # locks are independent

    store_clock.advance(50)
    assert await tmp_store.try_lock("schedule:morning", "pod-a", 60)  # renewal extends to t+110
    store_clock.advance(50)
    assert not await tmp_store.try_lock("schedule:morning", "pod-b", 60)
    store_clock.advance(11)
    assert await tmp_store.try_lock("schedule:morning", "pod-b", 60)  # expired: anyone may take it
    assert not await tmp_store.try_lock("schedule:morning", "pod-a", 60)


async def test_release_lock_only_by_its_owner(tmp_store: Store) -> None:
    assert await tmp_store.try_lock("leader", "pod-a", 600)
    await tmp_store.release_lock("leader", "pod-b")
    assert not await tmp_store.try_lock("leader", "pod-b", 600)
    await tmp_store.release_lock("leader", "pod-a")
    assert await tmp_store.try_lock("leader", "pod-b", 600)


async def test_kv(tmp_store: Store) -> None:
    assert await tmp_store.get_kv("summary:last-run") is None
    await tmp_store.set_kv("summary:last-run", "1")
    await tmp_store.set_kv("summary:last-run", "2")
    assert await tmp_store.get_kv("summary:last-run") == "2"
