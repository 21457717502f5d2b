"""Leader election over a coordination.k8s.io/v1 Lease, the way client-go's leaderelection does it.

With `ha.enabled`, every replica runs a `LeaderElector`; the one holding the Lease is the leader and
runs the work that must have a single driver (the summary scheduler, the reaper of stale claims).
Everything else (webhooks, Slack, diagnosis, executions) runs on every replica, made exact by the
store's claims.

One round (`try_acquire_or_renew`), every `renew_interval_seconds`:
- no Lease: create it holding it (409 AlreadyExists = another replica was first: not leader);
- held by another replica whose record this replica has seen unchanged for `lease_duration_seconds`
  (its own monotonic clock, not the record's renewTime: no trust in clock sync between nodes):
  expired, take it over (leaseTransitions + 1);
- held by another and not expired: follower;
- held by this replica: renew (renewTime = now).
Every write is a compare-and-swap on resourceVersion: a 409 Conflict means another replica wrote it
first, and this round is lost (never retried blindly over the other's write).

A leader that cannot renew (API server unreachable) steps down once `lease_duration_seconds -
renew_interval_seconds` have passed since its last successful renewal: before any other replica can
consider the Lease expired, so two leaders never run at once as long as clocks advance at one rate.
On shutdown the leader releases the Lease (holder cleared, duration 1 s) so a peer takes over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from bot.cluster import ClusterError, LeaseConflict, LeaseRecord, LeaseSpec

_log = logging.getLogger(__name__)

SERVICE_ACCOUNT_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class LeaseApi(Protocol):
    """What the elector needs of bot.cluster.Cluster."""

    async def get_lease(self, namespace: str, name: str) -> LeaseRecord | None: ...
    async def create_lease(self, namespace: str, name: str, spec: LeaseSpec) -> LeaseRecord: ...
    async def update_lease(self, current: LeaseRecord, spec: LeaseSpec) -> LeaseRecord: ...


class LeaderElectionUnavailable(Exception):
    """ha.enabled, but leader election cannot run (no Kubernetes client, unknown namespace): serve
    stops at start with this message rather than run as a replica that never leads or always does."""


class LeaseNamespaceUnknown(LeaderElectionUnavailable):
    pass


def resolve_lease_namespace(
    configured: str | None,
    *,
    env: Mapping[str, str] | None = None,
    namespace_file: str = SERVICE_ACCOUNT_NAMESPACE_FILE,
) -> str:
    """ha.lease_namespace, else pitcrew's own namespace: the service account's namespace file inside a
    pod, else $POD_NAMESPACE (the Downward API). Raises LeaseNamespaceUnknown saying what to set."""
    if configured:
        return configured
    with contextlib.suppress(OSError):
        with open(namespace_file, encoding="utf-8") as handle:
            namespace = handle.read().strip()
        if namespace:
            return namespace
    namespace = (os.environ if env is None else env).get("POD_NAMESPACE", "").strip()
    if namespace:
        return namespace
    raise LeaseNamespaceUnknown(
        f"ha.lease_namespace: not set, and pitcrew's own namespace is unknown (no {namespace_file},"
        " no $POD_NAMESPACE); set ha.lease_namespace"
    )


def default_identity(env: Mapping[str, str] | None = None) -> str:
    """$POD_NAME (unique per replica, shown by `kubectl get lease`), else the host name."""
    name = (os.environ if env is None else env).get("POD_NAME", "").strip()
    return name or socket.gethostname()


@dataclass(frozen=True)
class LeaderStatus:
    is_leader: bool
    holder: str | None  # the holder as last seen (this replica's identity when it leads)
    identity: str


Callback = Callable[[bool], Awaitable[None]]


class LeaderElector:
    """Start with `start()`, stop (releasing the Lease if held) with `stop()`. `on_change(is_leader)`
    is awaited on every change of role, in order."""

    def __init__(
        self,
        api: LeaseApi,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration_seconds: float,
        renew_interval_seconds: float,
        on_change: Callback | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if renew_interval_seconds * 2 > lease_duration_seconds:
            raise ValueError("renew_interval_seconds must be at most half of lease_duration_seconds")
        self._api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self._duration = lease_duration_seconds
        self._renew_interval = renew_interval_seconds
        self._on_change = on_change
        self._monotonic = monotonic
        self._wall = wall_clock
        self._leader = False
        self._last_renewed: float | None = None  # monotonic time of our last successful write
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0  # monotonic time the observed record last changed
        self._task: asyncio.Task[None] | None = None
        self.transitions_seen = 0  # how many times this replica became leader (tests, logs)

    @property
    def is_leader(self) -> bool:
        return self._leader

    def status(self) -> LeaderStatus:
        holder = self.identity if self._leader else (self._observed.spec.holder if self._observed else None)
        return LeaderStatus(is_leader=self._leader, holder=holder, identity=self.identity)

    # -- one round ----------------------------------------------------------------------------------

    async def try_acquire_or_renew(self) -> bool:
        """One election round; returns whether this replica leads afterwards."""
        try:
            leading = await self._round()
        except ClusterError as exc:
            leading = self._leader and not self._renew_deadline_passed()
            _log.warning(
                "lease %s/%s: %s%s",
                self.namespace,
                self.name,
                exc,
                " (still leader until the renew deadline)" if leading else "",
            )
        await self._set_leader(leading)
        return leading

    def _renew_deadline_passed(self) -> bool:
        if self._last_renewed is None:
            return True
        return self._monotonic() - self._last_renewed >= self._duration - self._renew_interval

    def _spec(self, *, acquire_time: datetime | None, transitions: int) -> LeaseSpec:
        now = self._wall()
        return LeaseSpec(
            holder=self.identity,
            duration_seconds=max(1, round(self._duration)),
            acquire_time=acquire_time or now,
            renew_time=now,
            transitions=transitions,
        )

    async def _round(self) -> bool:
        started = self._monotonic()
        current = await self._api.get_lease(self.namespace, self.name)
        if current is None:
            try:
                created = await self._api.create_lease(
                    self.namespace, self.name, self._spec(acquire_time=None, transitions=0)
                )
            except LeaseConflict:
                return False  # another replica created it between our read and our create
            self._observe(created, started)
            self._last_renewed = started
            return True
        if self._observed is None or current.resource_version != self._observed.resource_version:
            self._observe(current, started)
        holder = current.spec.holder
        mine = holder == self.identity
        if holder and not mine:
            duration = current.spec.duration_seconds or self._duration
            if self._observed_at + duration > self._monotonic():
                return False  # held, and renewed within its duration as far as we have seen
        spec = (
            self._spec(acquire_time=current.spec.acquire_time, transitions=current.spec.transitions)
            if mine
            else self._spec(acquire_time=None, transitions=current.spec.transitions + 1)
        )
        try:
            updated = await self._api.update_lease(current, spec)
        except LeaseConflict:
            return False  # someone wrote the Lease after we read it: their write wins this round
        if not mine:
            _log.info(
                "lease %s/%s: taking over from %s (not renewed for %.0f s)",
                self.namespace,
                self.name,
                holder or "nobody",
                self._monotonic() - self._observed_at,
            )
        self._observe(updated, started)
        self._last_renewed = started
        return True

    def _observe(self, record: LeaseRecord, at: float) -> None:
        self._observed = record
        self._observed_at = at

    async def _set_leader(self, leading: bool) -> None:
        if leading == self._leader:
            return
        self._leader = leading
        if leading:
            self.transitions_seen += 1
            _log.info("lease %s/%s: %s is the leader", self.namespace, self.name, self.identity)
        else:
            _log.warning("lease %s/%s: %s is no longer the leader", self.namespace, self.name, self.identity)
        if self._on_change is not None:
            try:
                await self._on_change(leading)
            except Exception:
                _log.exception("leader change callback failed")

    # -- release ------------------------------------------------------------------------------------

    async def release(self) -> bool:
        """Give the Lease up if this replica holds it (holder cleared, duration 1 s), so a peer takes
        over at its next round instead of after a whole lease duration. Returns whether it released."""
        was_leader = self._leader
        await self._set_leader(False)
        if not was_leader:
            return False
        try:
            current = await self._api.get_lease(self.namespace, self.name)
            if current is None or current.spec.holder != self.identity:
                return False
            released = LeaseSpec(
                holder=None,
                duration_seconds=1,
                acquire_time=current.spec.acquire_time,
                renew_time=self._wall(),
                transitions=current.spec.transitions,
            )
            await self._api.update_lease(current, released)
        except ClusterError as exc:
            _log.warning("lease %s/%s: could not release: %s", self.namespace, self.name, exc)
            return False
        _log.info("lease %s/%s: released by %s", self.namespace, self.name, self.identity)
        return True

    # -- the loop -----------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="pitcrew-leader-election")

    async def _loop(self) -> None:
        while True:
            began = self._monotonic()
            try:
                await asyncio.wait_for(self.try_acquire_or_renew(), timeout=self._renew_interval)
            except TimeoutError:
                _log.warning(
                    "lease %s/%s: election round took over %.0f s",
                    self.namespace,
                    self.name,
                    self._renew_interval,
                )
                if self._leader and self._renew_deadline_passed():
                    await self._set_leader(False)
            except Exception:
                _log.exception("lease %s/%s: election round failed", self.namespace, self.name)
            await asyncio.sleep(max(0.0, self._renew_interval - (self._monotonic() - began)))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.release()
