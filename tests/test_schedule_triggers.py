"""Fire-time arithmetic and cron validation (pure; apscheduler's CronTrigger through bot.cron)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.config import parse_config
from bot.cron import cron_problems, crontab_weekdays, latest_fire_time
from bot.schedule import (
    ScheduleConfigError,
    SummaryScheduler,
    schedule_problems,
    trigger_for,
)
from bot.summary import SummaryDeps

PARIS_NINE = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)  # 09:00 CET


def schedule(cron: str, timezone: str = "Europe/Paris") -> object:
    config = parse_config({"schedules": [{"name": "s", "cron": cron, "timezone": timezone}]}, env={})
    return config.schedules[0]


@pytest.mark.parametrize(
    ("cron", "timezone", "now", "window", "expected"),
    [
        # daily 09:00 Paris, shortly after: that run
        ("0 9 * * *", "Europe/Paris", PARIS_NINE + timedelta(seconds=5), 600, PARIS_NINE),
        # exactly at the fire time
        ("0 9 * * *", "Europe/Paris", PARIS_NINE, 600, PARIS_NINE),
        # one second before: nothing within 10 minutes...
        ("0 9 * * *", "Europe/Paris", PARIS_NINE - timedelta(seconds=1), 600, None),
        # ...but yesterday's run within two days
        (
            "0 9 * * *",
            "Europe/Paris",
            PARIS_NINE - timedelta(seconds=1),
            2 * 86400,
            PARIS_NINE - timedelta(days=1),
        ),
        # past the window: not due
        ("0 9 * * *", "Europe/Paris", PARIS_NINE + timedelta(seconds=601), 600, None),
        # the same cron in UTC fires an hour later
        (
            "0 9 * * *",
            "UTC",
            PARIS_NINE + timedelta(hours=1, seconds=1),
            600,
            PARIS_NINE + timedelta(hours=1),
        ),
        # summer time: 09:00 Paris is 07:00 UTC
        (
            "0 9 * * *",
            "Europe/Paris",
            datetime(2026, 7, 1, 7, 3, tzinfo=UTC),
            600,
            datetime(2026, 7, 1, 7, 0, tzinfo=UTC),
        ),
        # weekdays only: on Monday morning the latest run is Friday's
        (
            "0 9 * * 1-5",
            "UTC",
            datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
            4 * 86400,
            datetime(2026, 11, 20, 9, 0, tzinfo=UTC),
        ),
        # every minute with a month of grace: the latest minute, found without walking the month
        (
            "* * * * *",
            "UTC",
            datetime(2026, 11, 25, 8, 0, 42, tzinfo=UTC),
            30 * 86400,
            datetime(2026, 11, 25, 8, 0, tzinfo=UTC),
        ),
        # Sunday is 0 (and 7) as in crontab, not apscheduler's Monday-based numbering
        (
            "0 9 * * 0",
            "UTC",
            datetime(2026, 11, 25, 8, 0, tzinfo=UTC),
            7 * 86400,
            datetime(2026, 11, 22, 9, 0, tzinfo=UTC),
        ),
        # day of month and day of week both restricted: either matches (the 1st of the month or Mondays)
        (
            "0 9 1 * 1",
            "UTC",
            datetime(2026, 12, 1, 9, 30, tzinfo=UTC),  # a Tuesday, the 1st
            86400,
            datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        ),
        (
            "0 9 1 * 1",
            "UTC",
            datetime(2026, 11, 30, 9, 30, tzinfo=UTC),  # a Monday, the 30th
            86400,
            datetime(2026, 11, 30, 9, 0, tzinfo=UTC),
        ),
        # a zero window never fires
        ("* * * * *", "UTC", PARIS_NINE, 0, None),
    ],
)
def test_latest_fire_time(
    cron: str, timezone: str, now: datetime, window: float, expected: datetime | None
) -> None:
    found = latest_fire_time(trigger_for(schedule(cron, timezone)), now, window)  # type: ignore[arg-type]
    assert found == expected


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("*", "*"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("0", "sun"),
        ("7", "sun"),
        ("5-7", "fri,sat,sun"),
        ("*/2", "tue,thu,sat,sun"),  # crontab's 0,2,4,6
        ("mon-fri", "mon,tue,wed,thu,fri"),
        ("SUN,sat", "sat,sun"),
        ("1,3-4", "mon,wed,thu"),
    ],
)
def test_crontab_weekdays(field: str, names: str) -> None:
    assert crontab_weekdays(field) == names


@pytest.mark.parametrize("field", ["8", "sat-sun", "5-1", "1/0", "1/x", "funday", ""])
def test_bad_crontab_weekdays(field: str) -> None:
    with pytest.raises(ValueError):
        crontab_weekdays(field)


def test_cron_problems() -> None:
    assert cron_problems("0 9 * * 1-5", "Europe/Paris") == []
    assert cron_problems("*/15 * * * *", "UTC") == []
    (problem,) = cron_problems("0 9 * *", "UTC")
    assert problem == "cron: invalid crontab expression '0 9 * *': wrong number of fields: got 4, expected 5"
    (problem,) = cron_problems("0 24 * * *", "UTC")
    assert "24" in problem
    (problem,) = cron_problems("at nine", "UTC")
    assert problem.startswith("cron: invalid crontab expression 'at nine'")


def test_schedule_problems_name_the_field() -> None:
    good = schedule("0 9 * * *")
    bad = type(good)(name="b", cron="61 * * * *")  # type: ignore[call-arg]
    assert schedule_problems([good, bad]) == [  # type: ignore[list-item]
        "schedules[1].cron: invalid crontab expression '61 * * * *': Error validating expression '61': "
        "the last value (61) is higher than the maximum value (59)"
    ]


def test_scheduler_refuses_a_bad_schedule_with_the_field_named() -> None:
    config = parse_config({}, env={})
    bad = type(schedule("0 9 * * *"))(name="b", cron="0 9 * *")  # type: ignore[call-arg]
    with pytest.raises(ScheduleConfigError, match=r"schedules\[0\]\.cron: invalid crontab expression"):
        SummaryScheduler(SummaryDeps(config=config), [bad])


def test_schedule_needs_namespaces_and_a_valid_cron_in_the_config() -> None:
    from bot.config import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_config(
            {"schedules": [{"name": "s", "cron": "0 9 * * 8", "namespaces": []}]},
            env={},
        )
    assert info.value.problems == [
        "schedules[0].cron: invalid crontab expression '0 9 * * 8': day of week '8' is not 0-7 or sun..sat",
        "schedules[0].namespaces: list at least one namespace to summarize",
    ]
