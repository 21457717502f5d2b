"""Coalesced evidence collection: incidents of the same namespaces share one snapshot.

An alert storm opens many incidents about the same namespaces within seconds; collecting the whole
namespace again for each would make API calls grow with alerts instead of with namespaces. A
`SnapshotCache` keeps each collection (in flight or finished) for `window_seconds` after it started:
every incident whose scope has the same namespaces in that window awaits that one collection.

What is shared is the namespaces' evidence; the log budget (`max_log_containers`) was spent in the
order of the first incident's focus, so a later incident's named pod may lack its log in a very
unhealthy namespace. A failed collection is never shared past its failure: the next caller collects
again (the worker's retry must not be answered from a cached error).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.evidence import Evidence, Scope

DEFAULT_WINDOW_SECONDS = 10.0


@dataclass
class _Entry:
    started: float
    task: asyncio.Task[Evidence]


class SnapshotCache:
    def __init__(
        self,
        collect: Callable[[Scope], Awaitable[Evidence]],
        *,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        on_collect: Callable[[], None] | None = None,
        on_share: Callable[[], None] | None = None,
    ) -> None:
        if window_seconds < 0:
            raise ValueError("window_seconds must be >= 0")
        self._collect = collect
        self._window = window_seconds
        self._clock = clock
        self._on_collect = on_collect
        self._on_share = on_share
        self._entries: dict[tuple[str, ...], _Entry] = {}
        self.collections = 0  # collections started
        self.shared = 0  # requests answered by a collection another incident started

    async def get(self, scope: Scope) -> Evidence:
        """The evidence of `scope`'s namespaces: shared when a collection of the same namespaces
        started within the window (and has not failed), else a new collection."""
        key = tuple(sorted(set(scope.namespaces)))
        now = self._clock()
        self._prune(now)
        entry = self._entries.get(key)
        if entry is not None and not _failed(entry.task):
            self.shared += 1
            if self._on_share is not None:
                self._on_share()
        else:
            entry = _Entry(now, asyncio.ensure_future(self._collect(Scope(key, scope.focus))))
            self._entries[key] = entry
            self.collections += 1
            if self._on_collect is not None:
                self._on_collect()
        # shield: one waiter cancelled (a worker stopping) must not cancel the others' collection.
        return await asyncio.shield(entry.task)

    def _prune(self, now: float) -> None:
        for key, entry in list(self._entries.items()):
            if entry.task.done() and (now - entry.started >= self._window or _failed(entry.task)):
                del self._entries[key]

    async def close(self) -> None:
        """Cancel collections nobody waits for any more (shutdown)."""
        tasks = [e.task for e in self._entries.values() if not e.task.done()]
        self._entries.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _failed(task: asyncio.Task[Evidence]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)
