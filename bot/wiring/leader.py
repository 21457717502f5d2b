"""Leader election in pitcrew's aiohttp application (ha.enabled): its cleanup context, the
`pitcrew_leader` gauge, and the hand-over to the scheduler when this replica becomes leader."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from bot import keys
from bot.leader import LeaderElectionUnavailable, LeaderElector, default_identity, resolve_lease_namespace

_log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------


async def leader_ctx(app: web.Application) -> AsyncIterator[None]:
    """Without ha.enabled the one replica is the leader. With it: elect over the Lease; the first round
    runs before start-up goes on, so the scheduler starts knowing whether it leads."""
    config = app[keys.CONFIG]
    elector: LeaderElector | None = None

    async def leader_gauge() -> list[tuple[dict[str, str], float]]:
        return [({}, 1.0 if elector is None or elector.is_leader else 0.0)]

    app[keys.METRICS].gauge(
        "pitcrew_leader",
        "1 when this replica is the leader (runs schedules and reaps stale claims), else 0.",
        collect=leader_gauge,
    )
    if not config.ha.enabled:
        yield
        return
    cluster = app.get(keys.CLUSTER)
    if cluster is None:
        reason = app.get(keys.CLUSTER_ERROR, "no client")
        raise LeaderElectionUnavailable(f"ha.enabled: leader election needs the Kubernetes API: {reason}")
    namespace = resolve_lease_namespace(config.ha.lease_namespace)

    async def on_change(leading: bool) -> None:
        scheduler = app.get(keys.SCHEDULER)
        if leading and scheduler is not None:
            scheduler.spawn_catch_up()  # a run the old leader missed while it was dying

    elector = LeaderElector(
        cluster,
        namespace=namespace,
        name=config.ha.lease_name,
        identity=config.ha.identity or default_identity(),
        lease_duration_seconds=config.ha.lease_duration_seconds,
        renew_interval_seconds=config.ha.renew_interval_seconds,
        on_change=on_change,
    )
    app[keys.LEADER] = elector
    await elector.try_acquire_or_renew()
    await elector.start()
    _log.info(
        "leader election on lease %s/%s as %s: %s",
        namespace,
        config.ha.lease_name,
        elector.identity,
        "leader" if elector.is_leader else f"follower (leader: {elector.status().holder})",
    )
    try:
        yield
    finally:
        await elector.stop()
