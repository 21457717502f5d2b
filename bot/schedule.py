"""Scheduled health summaries: the only module that runs `apscheduler`'s scheduler (its cron
triggers are built by bot/cron.py).

Each configured schedule (cron + timezone, channel, namespaces) becomes one AsyncIOScheduler job.
A run is idempotent per fire time, so several replicas, a restart or a late catch-up never post
the same summary twice:

1. the fire time is the trigger's latest fire time at or before now (within a window);
2. `store.try_lock("schedule:<name>:<fire time>")` — only one replica goes on;
3. the kv record `schedule:<name>:last_run` already at or past that fire time -> nothing to do;
4. build the summary, enqueue the chat.postMessage in the outbox (a Slack outage loses nothing)
   and, in the same transaction, record the fire time and the summary's state (restart counts).

At start-up each schedule's latest fire time within `missed_grace_seconds` is run once (a run missed
while pitcrew was down); an older one is skipped. Cron syntax is checked with apscheduler's own
parser (bot/cron.py's `cron_problems`, called by `ScheduleConfig.validate` in bot/config.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from bot.cron import cron_problems, crontab_trigger, latest_fire_time
from bot.slack.summary_blocks import render_summary
from bot.summary import HealthSummary, SummaryDeps, build_summary, state_key

if TYPE_CHECKING:
    # apscheduler is imported where a scheduler is made: a service with no schedules never loads it.
    from apscheduler.triggers.base import BaseTrigger

    from bot.config import Config, ScheduleConfig

_log = logging.getLogger(__name__)

POST_METHOD = "chat.postMessage"
# A run holds its lock at most this long (collection is bounded well below it).
LOCK_TTL_SECONDS = 600.0
# A scheduled job may start a little late (a busy loop); it still counts as on time within this.
ON_TIME_WINDOW_SECONDS = 120.0

RunOutcome = Literal["posted", "already-posted", "locked", "not-due", "no-channel", "not-leader"]


class ScheduleConfigError(ValueError):
    """A schedule that cannot run; the message names the field, like ConfigError's problems."""


# ---------------------------------------------------------------------------------------------
# Triggers and fire times
# ---------------------------------------------------------------------------------------------


def schedule_problems(schedules: Sequence[ScheduleConfig]) -> list[str]:
    """Problems of every schedule, each prefixed with its field path ("schedules[1].cron: ...")."""
    return [
        f"schedules[{index}].{problem}"
        for index, schedule in enumerate(schedules)
        for problem in cron_problems(schedule.cron, schedule.timezone)
    ]


def trigger_for(schedule: ScheduleConfig) -> BaseTrigger:
    try:
        return crontab_trigger(schedule.cron, zoneinfo.ZoneInfo(schedule.timezone))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ScheduleConfigError(f"schedules ({schedule.name}): cron/timezone: {exc}") from None


def last_run_key(schedule_name: str) -> str:
    return f"schedule:{schedule_name}:last_run"


# ---------------------------------------------------------------------------------------------
# Posting
# ---------------------------------------------------------------------------------------------


def channel_for(config: Config, schedule: ScheduleConfig) -> str | None:
    return schedule.channel or config.slack.default_channel


def summary_payload(summary: HealthSummary, channel: str) -> str:
    message = render_summary(summary)
    body = {"channel": channel, **message.to_json(), "unfurl_links": False, "unfurl_media": False}
    return json.dumps(body, sort_keys=True)


async def post_summary(
    deps: SummaryDeps,
    schedule: ScheduleConfig,
    *,
    now: float | None = None,
    summary: HealthSummary | None = None,
    fire_time: float | None = None,
) -> int:
    """Build the schedule's summary (unless given) and enqueue it for its channel; returns the outbox
    item id. Saves the summary's state as the schedule's new baseline and, for a scheduled run, its
    `fire_time` as posted, in the same transaction as the message: a crash cannot leave a queued
    summary unrecorded (posted again at restart) or recorded but not queued. No lock and no once-only
    check: that is `run_schedule`'s job (this is also what "post it now" calls)."""
    if deps.store is None:
        raise ScheduleConfigError(f"schedule {schedule.name}: posting needs the store (outbox)")
    channel = channel_for(deps.config, schedule)
    if channel is None:
        raise ScheduleConfigError(f"schedule {schedule.name}: no channel (set it or slack.default_channel)")
    if summary is None:
        summary = await build_summary(deps, schedule=schedule, now=now)
    records = {state_key(schedule.name): summary.state.to_json()}
    if fire_time is not None:
        records[last_run_key(schedule.name)] = repr(fire_time)
    item_id = await deps.store.enqueue_outbox(
        f"summary:{schedule.name}", POST_METHOD, summary_payload(summary, channel), kv=records
    )
    if deps.on_enqueued is not None:
        deps.on_enqueued()
    _log.info("summary %s queued for %s (outbox %d): %s", schedule.name, channel, item_id, summary.glance)
    return item_id


@dataclass(frozen=True)
class RunResult:
    schedule: str
    outcome: RunOutcome
    fire_time: float | None = None
    outbox_id: int | None = None


def default_owner() -> str:
    """Identifies this process in locks: host, pid and a random part (pids repeat across pods)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def run_schedule(
    deps: SummaryDeps,
    schedule: ScheduleConfig,
    *,
    now: float,
    window_seconds: float,
    owner: str,
) -> RunResult:
    """Post the summary of the schedule's latest fire time within `window_seconds` before `now`,
    unless it was posted already (by anyone) or another replica is posting it right now."""
    store = deps.store
    if store is None:
        raise ScheduleConfigError(f"schedule {schedule.name}: needs the store")
    trigger = trigger_for(schedule)
    fire = latest_fire_time(trigger, datetime.fromtimestamp(now, UTC), window_seconds)
    if fire is None:
        return RunResult(schedule.name, "not-due")
    fire_ts = fire.timestamp()
    if channel_for(deps.config, schedule) is None:
        _log.error("schedule %s: no channel and no slack.default_channel; not posted", schedule.name)
        return RunResult(schedule.name, "no-channel", fire_ts)
    lock = f"schedule:{schedule.name}:{fire_ts:.0f}"
    # One owner per attempt: the store renews a lock for its holder, and two attempts in the same
    # process (start-up catch-up and the job, at the same fire time) must exclude each other too.
    owner = f"{owner}/{uuid.uuid4().hex[:8]}"
    if not await store.try_lock(lock, owner, LOCK_TTL_SECONDS):
        return RunResult(schedule.name, "locked", fire_ts)
    try:
        # Checked under the lock: a replica that posted and released it has recorded the run.
        last = await store.get_kv(last_run_key(schedule.name))
        if last is not None and _as_float(last) >= fire_ts:
            return RunResult(schedule.name, "already-posted", fire_ts)
        item_id = await post_summary(deps, schedule, now=now, fire_time=fire_ts)
        return RunResult(schedule.name, "posted", fire_ts, item_id)
    finally:
        await store.release_lock(lock, owner)


def _as_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("-inf")  # an unreadable record: treat the schedule as never run


# ---------------------------------------------------------------------------------------------
# The scheduler
# ---------------------------------------------------------------------------------------------


class SummaryScheduler:
    """One apscheduler job per schedule; each job run (and the start-up catch-up) is a task this
    object tracks, so `stop()` cancels and awaits them."""

    def __init__(
        self,
        deps: SummaryDeps,
        schedules: Sequence[ScheduleConfig],
        *,
        owner: str | None = None,
        is_leader: Callable[[], bool] | None = None,
    ) -> None:
        problems = schedule_problems(schedules)
        if problems:
            raise ScheduleConfigError("; ".join(problems))
        self.deps = deps
        self.schedules = {s.name: s for s in schedules}
        self.owner = owner or default_owner()
        # With several replicas only the leader (bot/leader.py) runs schedules; the store's per-fire-time
        # lock and last_run record still make a run exact if two ever believe they lead.
        self._is_leader = is_leader
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self._tasks: set[asyncio.Task[RunResult | None]] = set()
        self.results: list[RunResult] = []  # the latest runs, newest last (bounded)
        for schedule in schedules:
            self.scheduler.add_job(
                self.fire,
                trigger=trigger_for(schedule),
                args=(schedule.name,),
                id=f"summary:{schedule.name}",
                name=f"health summary {schedule.name}",
                coalesce=True,
                max_instances=1,
                misfire_grace_time=int(max(1.0, schedule.missed_grace_seconds)),
            )

    @property
    def jobs(self) -> dict[str, Any]:
        """apscheduler's Job per schedule name (tests trigger `job.func(*job.args)` directly)."""
        return {job.args[0]: job for job in self.scheduler.get_jobs()}

    async def start(self, *, catch_up: bool = True, now: float | None = None) -> None:
        self.scheduler.start()
        if catch_up:
            for schedule in self.schedules.values():
                self._spawn(schedule, now=now, window=schedule.missed_grace_seconds, why="missed while down")

    def spawn_catch_up(self) -> None:
        """What start() does for missed runs, in the background (a replica that just became leader)."""
        for schedule in self.schedules.values():
            self._spawn(schedule, now=None, window=schedule.missed_grace_seconds, why="missed before leading")

    async def catch_up(self, *, now: float | None = None) -> list[RunResult]:
        """Run each schedule's missed fire time within its grace (what start() does), and wait."""
        results = []
        for schedule in self.schedules.values():
            result = await self._run(schedule, now=now, window=schedule.missed_grace_seconds, why="missed")
            if result is not None:
                results.append(result)
        return results

    async def fire(self, name: str, now: float | None = None) -> RunResult | None:
        """The job function apscheduler calls at each fire time (and tests call directly)."""
        schedule = self.schedules[name]
        window = max(ON_TIME_WINDOW_SECONDS, schedule.missed_grace_seconds)
        task = self._spawn(schedule, now=now, window=window, why="scheduled")
        return await asyncio.shield(task)

    def _spawn(
        self, schedule: ScheduleConfig, *, now: float | None, window: float, why: str
    ) -> asyncio.Task[RunResult | None]:
        task = asyncio.get_running_loop().create_task(
            self._run(schedule, now=now, window=window, why=why), name=f"summary:{schedule.name}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(
        self, schedule: ScheduleConfig, *, now: float | None, window: float, why: str
    ) -> RunResult | None:
        if self._is_leader is not None and not self._is_leader():
            skipped = RunResult(schedule.name, "not-leader")
            self.results = [*self.results[-49:], skipped]
            return skipped
        try:
            result = await run_schedule(
                self.deps,
                schedule,
                now=time.time() if now is None else now,
                window_seconds=window,
                owner=self.owner,
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            # One failed run (store down) must not end the schedule; the next fire time tries again.
            _log.exception("health summary %s (%s) failed", schedule.name, why)
            return None
        if result.outcome not in ("not-due", "not-leader"):
            _log.info("health summary %s (%s): %s", schedule.name, why, result.outcome)
        self.results = [*self.results[-49:], result]
        return result

    async def wait_idle(self) -> None:
        """Wait for runs in progress (catch-up at start-up, a job that just fired)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # AsyncIOScheduler.shutdown is scheduled on the loop; let it run before the loop goes away.
        await asyncio.sleep(0)


def config_line(schedule: ScheduleConfig) -> str:
    return f"{schedule.name} ({schedule.cron} {schedule.timezone})"
