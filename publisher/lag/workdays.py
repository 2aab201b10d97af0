"""Working days in mainland China: statutory holidays skipped, swapped working weekends counted.

The Regulation on Open Government Information (2019, Art. 26) gives 20 working days. The
`chinesecalendar` package knows each year's State Council holiday notice (2004 onwards, up to the
year its release covers); for a year it does not know yet, Monday to Friday is the best guess,
and `known(year)` says so, so that a report can flag the guess instead of hiding it.
"""

from __future__ import annotations

import calendar
from bisect import bisect_left
from datetime import date, datetime, time, timedelta, tzinfo
from functools import cache

import chinese_calendar

from publisher.clock import CHINA


def _calendar_says(day: date) -> bool:
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:  # a year outside the package's data: fall back to Monday–Friday
        return day.weekday() < 5


@cache
def _year(year: int) -> tuple[int, ...]:
    """cum[i] = working days among the first i days of `year` (i = 0 … the year's length): asked of the
    calendar once per year, so that every count below is two lookups and every search one bisect."""
    first = date(year, 1, 1)
    cum = [0]
    for i in range(366 if calendar.isleap(year) else 365):
        cum.append(cum[-1] + _calendar_says(first + timedelta(days=i)))
    return tuple(cum)


_EPOCH = 2000  # counts are taken from 1 January of this year; any year would do
_before_year: dict[int, int] = {_EPOCH: 0}  # working days from the epoch to 1 January of the year


def _before(year: int) -> int:
    """Working days from 1 January of the epoch to 1 January of `year` (negative before the epoch)."""
    table = _before_year
    if year > _EPOCH and year not in table:  # extended a year at a time from the nearest year it holds
        for y in range(max(k for k in table if k < year), year):
            table[y + 1] = table[y] + _year(y)[-1]
    elif year < _EPOCH and year not in table:
        for y in range(min(k for k in table if k > year), year, -1):
            table[y - 1] = table[y] - _year(y - 1)[-1]
    return table[year]


def _count(day: date) -> int:
    """Working days from the epoch up to and including `day`."""
    return _before(day.year) + _year(day.year)[day.timetuple().tm_yday]


def is_workday(day: date) -> bool:
    """True on a working day: a weekday that is no holiday, or a weekend day swapped to work."""
    cum, i = _year(day.year), day.timetuple().tm_yday
    return cum[i] > cum[i - 1]


@cache  # the package takes the bounds of its whole table at each call, and a report asks once per deadline
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
    if n == 0:
        return start
    target = _count(start) + n  # the count reached on the day we look for, which is a working day
    year = start.year
    while _before(year) + _year(year)[-1] < target:
        year += 1
    day_of_year = bisect_left(_year(year), target - _before(year))  # the first day the count reaches it
    return date(year, 1, 1) + timedelta(days=day_of_year - 1)


def workdays_between(start: date, end: date) -> int:
    """Working days in (start, end]; negative when end is before start."""
    return _count(end) - _count(start)


def local_date(at: datetime, tz: tzinfo = CHINA) -> date:
    """The calendar date of an instant where the bureau is."""
    return at.astimezone(tz).date()


def deadline(start: date, working_days: int, tz: tzinfo = CHINA) -> datetime:
    """The end (midnight, local time) of the `working_days`-th working day after `start`, as an aware instant."""
    last = add_workdays(start, working_days)
    return datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz)
