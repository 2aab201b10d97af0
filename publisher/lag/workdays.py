"""Working days in mainland China: statutory holidays skipped, swapped working weekends counted.

The Regulation on Open Government Information (2019, Art. 26) gives 20 working days. The
`chinesecalendar` package knows each year's State Council holiday notice (2004 onwards, up to the
year its release covers); for a year it does not know yet, Monday to Friday is the best guess,
and `known(year)` says so, so that a report can flag the guess instead of hiding it.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo
from functools import lru_cache

import chinese_calendar

from publisher.clock import CHINA


@lru_cache(maxsize=4096)
def is_workday(day: date) -> bool:
    """True on a working day: a weekday that is no holiday, or a weekend day swapped to work."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:  # a year past the package's data: fall back to Monday–Friday
        return day.weekday() < 5


def known(year: int) -> bool:
    """Whether the holiday calendar of `year` is known (else working days are Monday–Friday)."""
    try:
        chinese_calendar.is_workday(date(year, 6, 1))
    except NotImplementedError:
        return False
    return True


def add_workdays(start: date, n: int) -> date:
    """The n-th working day after `start` (the start day itself is not counted, as in a legal time limit)."""
    if n < 0:
        raise ValueError("n must be >= 0")
    day = start
    while n:
        day += timedelta(days=1)
        if is_workday(day):
            n -= 1
    return day


def workdays_between(start: date, end: date) -> int:
    """Working days in (start, end]; negative when end is before start."""
    if end < start:
        return -workdays_between(end, start)
    count = 0
    day = start
    while day < end:
        day += timedelta(days=1)
        count += is_workday(day)
    return count


def local_date(at: datetime, tz: tzinfo = CHINA) -> date:
    """The calendar date of an instant where the bureau is."""
    return at.astimezone(tz).date()


def deadline(start: date, working_days: int, tz: tzinfo = CHINA) -> datetime:
    """The end (midnight, local time) of the `working_days`-th working day after `start`, as an aware instant."""
    last = add_workdays(start, working_days)
    return datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz)
