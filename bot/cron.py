"""Crontab expressions as apscheduler triggers, and fire-time arithmetic: pure, no scheduler.

Kept apart from bot/schedule.py (which runs the jobs) so that `ScheduleConfig.validate` in
bot/config.py can check cron syntax with apscheduler's own parser without importing the service
that posts summaries (config is below every service). This module and bot/schedule.py are the only
importers of `apscheduler`: triggers here, the AsyncIOScheduler there.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Imported where a trigger is made: a service with no schedules never loads apscheduler.
    from apscheduler.triggers.base import BaseTrigger
    from apscheduler.triggers.cron import CronTrigger

# Windows searched, smallest first, for the latest fire time: finds it in a few trigger steps
# whatever the cron frequency, instead of walking every fire time of a long grace period.
_SEARCH_WINDOWS = (60.0, 3600.0, 86400.0, 7 * 86400.0, 366 * 86400.0)
_MAX_TRIGGER_STEPS = 2000


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
    from apscheduler.triggers.combining import OrTrigger
    from apscheduler.triggers.cron import CronTrigger

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
