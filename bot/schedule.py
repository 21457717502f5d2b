"""Scheduled health summaries: the only module that imports `apscheduler`.

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
parser (`cron_problems`, called by `ScheduleConfig.validate` in bot/config.py).
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
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

from bot import keys
from bot.slack.summary_blocks import render_summary
from bot.summary import HealthSummary, SummaryDeps, build_summary, state_key

if TYPE_CHECKING:
    from bot.config import Config, ScheduleConfig

_log = logging.getLogger(__name__)

POST_METHOD = "chat.postMessage"
# A run holds its lock at most this long (collection is bounded well below it).
LOCK_TTL_SECONDS = 600.0
# A scheduled job may start a little late (a busy loop); it still counts as on time within this.
ON_TIME_WINDOW_SECONDS = 120.0
# Windows searched, smallest first, for the latest fire time: finds it in a few trigger steps
# whatever the cron frequency, instead of walking every fire time of a long grace period.
_SEARCH_WINDOWS = (60.0, 3600.0, 86400.0, 7 * 86400.0, 366 * 86400.0)
_MAX_TRIGGER_STEPS = 2000

RunOutcome = Literal["posted", "already-posted", "locked", "not-due", "no-channel"]


class ScheduleConfigError(ValueError):
    """A schedule that cannot run; the message names the field, like ConfigError's problems."""


# ---------------------------------------------------------------------------------------------
# Triggers and fire times
# ---------------------------------------------------------------------------------------------


# Crontab numbers weekdays from Sunday (0 or 7); apscheduler 3.x from Monday (its from_crontab
# keeps its own numbering, see apscheduler issue 286). Weekdays are therefore translated to names.
_CRON_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _crontab_weekday(token: str) -> int:
    if token.isdigit() and int(token) <= 7:
        return int(token) % 7
    if token in _CRON_WEEKDAYS:
        return _CRON_WEEKDAYS.index(token)
    raise ValueError(f"day of week {token!r} is not 0-7 or sun..sat")


def crontab_weekdays(field: str) -> str:
    """A crontab day-of-week field ("1-5", "0,6", "*/2", "mon-fri") as apscheduler day names."""
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for item in field.lower().split(","):
        base, slash, step_text = item.partition("/")
        if slash and not (step_text.isdigit() and int(step_text) > 0):
            raise ValueError(f"day of week step {step_text!r} is not a positive number")
        step = int(step_text) if slash else 1
        if base == "*":
            low, high = 0, 6
        elif "-" in base:
            first, last = base.split("-", 1)
            low, high = _crontab_weekday(first), _crontab_weekday(last)
            if last == "7":
                high = 7  # "5-7" is Friday to Sunday
        else:
            low = _crontab_weekday(base)
            high = 6 if slash else low
        if low > high:
            raise ValueError(f"day of week range {base!r} runs backwards")
        days.update(day % 7 for day in range(low, high + 1, step))
    # apscheduler numbers Monday 0: list Monday first so the field reads naturally.
    return ",".join(_CRON_WEEKDAYS[d] for d in sorted(days, key=lambda d: (d - 1) % 7))


def crontab_trigger(expr: str, timezone: tzinfo) -> BaseTrigger:
    """A standard 5-field crontab expression as an apscheduler trigger. As in cron, when both the
    day of month and the day of week are restricted, either one matching is enough."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"wrong number of fields: got {len(fields)}, expected 5")
    minute, hour, day, month, weekday = fields
    weekdays = crontab_weekdays(weekday)

    def cron(day: str, day_of_week: str) -> CronTrigger:
        return CronTrigger(
            minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week, timezone=timezone
        )

    if day not in ("*", "?") and weekdays != "*":
        return OrTrigger([cron(day, "*"), cron("*", weekdays)])
    return cron(day, weekdays)


def cron_problems(cron: str, timezone: str) -> list[str]:
    """Problems of a cron expression, as "cron: reason" (empty when it can run). The time zone is
    checked by the config itself; an unknown one is left to that check here."""
    problems: list[str] = []
    try:
        tz: tzinfo = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        tz = UTC
    try:
        crontab_trigger(cron, tz)
    except (ValueError, TypeError) as exc:
        problems.append(f"cron: invalid crontab expression {cron!r}: {exc}")
    return problems


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


def latest_fire_time(trigger: BaseTrigger, now: datetime, window_seconds: float) -> datetime | None:
    """The trigger's latest fire time in (now - window, now], or None."""
    if window_seconds <= 0:
        return None
    for window in (*(w for w in _SEARCH_WINDOWS if w < window_seconds), window_seconds):
        start = now - timedelta(seconds=window)
        found: datetime | None = None
        fire = trigger.get_next_fire_time(None, start)
        steps = 0
        while fire is not None and fire <= now and steps < _MAX_TRIGGER_STEPS:
            if fire > start:
                found = fire
            fire = trigger.get_next_fire_time(fire, fire)
            steps += 1
        if found is not None:
            return found
    return None


def last_run_key(schedule_name: str) -> str:
    return f"schedule:{schedule_name}:last_run"


# ---------------------------------------------------------------------------------------------
# Posting
# ---------------------------------------------------------------------------------------------


def deps_from_app(app: web.Application) -> SummaryDeps:
    """What a summary reads, from the running application. Without the app's cluster client (its
    kubeconfig could not be loaded), each summary tries to connect for its own run."""
    cluster = app.get(keys.CLUSTER)

    def wake_outbox() -> None:
        service = app.get(keys.SLACK)
        if service is not None:
            service.outbox.wake()

    return SummaryDeps(
        config=app[keys.CONFIG], store=app[keys.STORE], cluster=cluster, on_enqueued=wake_outbox
    )


def _deps(app_or_deps: web.Application | SummaryDeps) -> SummaryDeps:
    return app_or_deps if isinstance(app_or_deps, SummaryDeps) else deps_from_app(app_or_deps)


def channel_for(config: Config, schedule: ScheduleConfig) -> str | None:
    return schedule.channel or config.slack.default_channel


def summary_payload(summary: HealthSummary, channel: str) -> str:
    message = render_summary(summary)
    body = {"channel": channel, **message.to_json(), "unfurl_links": False, "unfurl_media": False}
    return json.dumps(body, sort_keys=True)


async def post_summary(
    app_or_deps: web.Application | SummaryDeps,
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
    deps = _deps(app_or_deps)
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
    ) -> None:
        problems = schedule_problems(schedules)
        if problems:
            raise ScheduleConfigError("; ".join(problems))
        self.deps = deps
        self.schedules = {s.name: s for s in schedules}
        self.owner = owner or default_owner()
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
        if result.outcome != "not-due":
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


async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx entry: start the summary scheduler (after the store and Slack), stop it on exit."""
    config = app[keys.CONFIG]
    if not config.schedules:
        yield
        return
    if not config.slack.enabled:
        _log.warning("schedules configured but slack is disabled: no health summaries will be posted")
        yield
        return
    scheduler = SummaryScheduler(deps_from_app(app), config.schedules)
    app[keys.SCHEDULER] = scheduler
    await scheduler.start()
    _log.info("health summaries scheduled: %s", ", ".join(config_line(s) for s in config.schedules))
    try:
        yield
    finally:
        await scheduler.stop()


def config_line(schedule: ScheduleConfig) -> str:
    return f"{schedule.name} ({schedule.cron} {schedule.timezone})"
