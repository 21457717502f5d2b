"""Background incident workers: bounded concurrency over pending incidents read from the store.

The webhook handler only commits and wakes the workers; the store is the queue. A dispatcher task
claims pending incidents (woken by the webhook, and polling so nothing waits on a lost wake-up or a
restart) and runs the processor on each, at most `concurrency` at a time. A processor that raises
is retried with exponential backoff up to `max_attempts`; then the failure is recorded on the
incident (as a diagnosis error) so it stops being pending and a person can see why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.model import AUDIT_PROCESSING_FAILED, WorkState

if TYPE_CHECKING:
    from bot.metrics import IntakeMetrics, ProcessOutcome
    from bot.store import StoreBackend

# A processor says how the incident's processing ended ("failed": recorded as not diagnosable;
# "skipped": nothing to do); None means "ok". Raising means "try again later".
Processor = Callable[[int], Awaitable["ProcessOutcome | None"]]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_seconds: float = 2.0
    max_delay_seconds: float = 300.0

    def delay(self, failures: int) -> float:
        """Wait before the next attempt after `failures` failed ones (2 s, 4 s, 8 s ... capped)."""
        return float(min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (failures - 1)))


@dataclass
class _Retry:
    failures: int
    not_before: float  # time.monotonic()
    last_error: str


class IncidentWorkers:
    """Runs `processor(incident_id)` for pending incidents. Start with `start()`, stop with `stop()`."""

    def __init__(
        self,
        store: StoreBackend,
        processor: Processor,
        *,
        concurrency: int,
        poll_interval_seconds: float = 5.0,
        coalesce_seconds: float = 0.05,
        retry: RetryPolicy = RetryPolicy(),
        metrics: IntakeMetrics | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"workers.concurrency must be >= 1, got {concurrency}")
        self._store = store
        self._processor = processor
        self._concurrency = concurrency
        self._poll_interval = poll_interval_seconds
        self._coalesce = coalesce_seconds
        self._retry_policy = retry
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._retries: dict[int, _Retry] = {}
        self._claimed: list[int] = []  # claimed from the store, waiting for a free slot
        self._dispatcher: asyncio.Task[None] | None = None
        self.dispatch_rounds = 0  # how often the dispatcher looked for work (tests check it never spins)

    @property
    def in_flight(self) -> frozenset[int]:
        return frozenset(self._running)

    @property
    def waiting_for_retry(self) -> frozenset[int]:
        return frozenset(self._retries)

    def wake(self) -> None:
        """Tell the dispatcher new work may be pending (cheap; called after each committed webhook)."""
        self._wake.set()

    async def start(self) -> None:
        if self._dispatcher is None:
            self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="pitcrew-incident-dispatcher")
            self._wake.set()  # pick up what a previous run left pending

    async def stop(self) -> None:
        """Cancel the dispatcher and every running processor, and wait for them to end. Incidents
        interrupted here stay pending in the store and are processed after the next start."""
        tasks = [t for t in (self._dispatcher, *self._running.values()) if t is not None]
        self._dispatcher = None
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                _log.error("worker task ended with an error during shutdown: %r", result)
        self._running.clear()

    async def _dispatch_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._next_wait())
                # Woken by a webhook: let the rest of a burst arrive, so one claim serves many
                # webhooks instead of one store transaction each.
                await asyncio.sleep(self._coalesce)
            self._wake.clear()
            self.dispatch_rounds += 1
            try:
                await self._fill_slots()
            except Exception:
                # The store may be briefly unavailable; try again at the next poll, never crash the loop.
                _log.exception("could not read pending incidents; retrying in %.0f s", self._poll_interval)

    def _next_wait(self) -> float:
        # Only a retry that could start now shortens the wait: with every slot busy, the end of a
        # run wakes the dispatcher anyway (waiting 0 here would spin).
        wait = self._poll_interval
        if self._free_slots() == 0:
            return wait
        now = time.monotonic()
        for incident_id, retry in self._retries.items():
            if incident_id not in self._running:
                wait = min(wait, max(0.0, retry.not_before - now))
        return wait

    async def _fill_slots(self) -> None:
        # Claim only for slots nothing we already hold can fill; what we claim is ours until it runs
        # (a claimed incident is not handed out again while this process lives).
        now = time.monotonic()
        due = [i for i, r in self._retries.items() if r.not_before <= now and i not in self._running]
        want = self._free_slots() - len(self._claimed) - len(due)
        if want > 0:
            for incident_id in await self._store.claim_pending(want):
                known = incident_id in self._running or incident_id in self._retries
                if not known and incident_id not in self._claimed:
                    self._claimed.append(incident_id)
        while self._claimed and self._free_slots() > 0:
            self._launch(self._claimed.pop(0))
        for incident_id in due:
            if self._free_slots() == 0:
                break
            incident = await self._store.get_incident(incident_id)
            if incident is None or incident.work_state is not WorkState.PENDING:
                del self._retries[incident_id]  # someone else moved it on
                continue
            self._launch(incident_id)

    def _free_slots(self) -> int:
        return self._concurrency - len(self._running)

    def _launch(self, incident_id: int) -> None:
        task = asyncio.create_task(self._run_one(incident_id), name=f"pitcrew-incident-{incident_id}")
        self._running[incident_id] = task

    async def _run_one(self, incident_id: int) -> None:
        started = time.perf_counter()
        outcome = "error"
        try:
            outcome = await self._processor(incident_id) or "ok"
            self._retries.pop(incident_id, None)
            if self._metrics is not None:
                self._metrics.incidents_processed.inc(outcome=outcome)
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception as exc:
            await self._failed(incident_id, exc)
        finally:
            if self._metrics is not None and outcome != "cancelled":
                self._metrics.incident_processing.observe(time.perf_counter() - started, outcome=outcome)
            self._running.pop(incident_id, None)
            self._wake.set()  # a slot is free

    async def _failed(self, incident_id: int, exc: Exception) -> None:
        if self._metrics is not None:
            self._metrics.incident_processing_failures.inc()
        previous = self._retries.get(incident_id)
        failures = (previous.failures if previous else 0) + 1
        error = f"{type(exc).__name__}: {exc}"
        if failures >= self._retry_policy.max_attempts:
            self._retries.pop(incident_id, None)
            _log.error(
                "incident %d: processing failed %d times, giving up: %s",
                incident_id,
                failures,
                error,
                exc_info=exc,
            )
            await self._give_up(incident_id, failures, error)
            return
        delay = self._retry_policy.delay(failures)
        self._retries[incident_id] = _Retry(failures, time.monotonic() + delay, error)
        _log.warning(
            "incident %d: processing failed (attempt %d of %d), retrying in %.0f s: %s",
            incident_id,
            failures,
            self._retry_policy.max_attempts,
            delay,
            error,
            exc_info=exc,
        )

    async def _give_up(self, incident_id: int, failures: int, error: str) -> None:
        reason = f"processing failed after {failures} attempts: {error}"
        try:
            incident = await self._store.get_incident(incident_id)
            if incident is None or incident.work_state is not WorkState.PENDING:
                return
            await self._store.save_diagnosis(incident_id, (), dry_run_diff=None, error=reason)
            await self._store.audit(
                "pitcrew", AUDIT_PROCESSING_FAILED, incident_id=incident_id, detail=reason
            )
            if self._metrics is not None:
                self._metrics.incidents_processed.inc(outcome="failed")
        except Exception:
            _log.exception("incident %d: could not record the processing failure", incident_id)
