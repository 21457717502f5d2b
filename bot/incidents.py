"""Committing Alertmanager notifications to the store, with group commit.

Every webhook must be committed before it is acknowledged. One thread hop and one SQLite commit per
webhook caps intake well below what aiohttp can accept, so concurrent webhooks are coalesced: while
one batch is being committed, the webhooks that arrive queue up and go together in the next batch
(one hop, one transaction, each payload all-or-nothing by a savepoint). A lone webhook is committed
at once: batching adds no wait, only shares the cost when there is a queue.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.alertmanager import WebhookPayload
    from bot.store import IncidentRepository, IntakeResult

MAX_BATCH = 128


class WebhookCommitter:
    def __init__(self, store: IncidentRepository, *, max_batch: int = MAX_BATCH) -> None:
        self._store = store
        self._max_batch = max_batch
        self._queue: list[tuple[WebhookPayload, asyncio.Future[IntakeResult]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def commit(self, payload: WebhookPayload) -> IntakeResult:
        """Store the payload; returns once it is committed. Raises what the store raised for it."""
        future: asyncio.Future[IntakeResult] = asyncio.get_running_loop().create_future()
        self._queue.append((payload, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="pitcrew-webhook-commit")
        # Shielded: a cancelled request must not cancel the commit other requests share.
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                try:
                    results = await self._store.record_webhooks([payload for payload, _ in batch])
                except Exception as exc:  # nothing of the batch was committed
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                except BaseException:
                    for _, future in batch:
                        future.cancel()
                    raise
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._flusher = None
            # Anything left (we were cancelled): fail it, so no request waits forever.
            for _, future in self._queue:
                if not future.done():
                    future.set_exception(RuntimeError("pitcrew is shutting down; not stored"))
            self._queue.clear()

    async def close(self) -> None:
        """Wait for the batch in progress (acknowledged work must finish), then stop."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
