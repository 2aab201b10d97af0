"""Working days in China: statutory holidays, swapped working weekends, and the 20-day legal limit."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from publisher.lag import workdays


def test_spring_festival_2015_holidays_and_swapped_weekends() -> None:
    """Feb 18–24 2015 are holidays; Sunday Feb 15 and Saturday Feb 28 are working days."""
    assert not any(workdays.is_workday(date(2015, 2, d)) for d in range(18, 25))
    assert workdays.is_workday(date(2015, 2, 15)) and workdays.is_workday(date(2015, 2, 28))
    assert not workdays.is_workday(date(2015, 3, 1))  # an ordinary Sunday


def test_twenty_working_days_over_the_spring_festival() -> None:
    """From Feb 10 2015 the 20th working day is Mar 13 (Mon–Fri counting would say Mar 10)."""
    assert workdays.add_workdays(date(2015, 2, 10), 20) == date(2015, 3, 13)
    assert workdays.add_workdays(date(2015, 2, 10), 0) == date(2015, 2, 10)
    assert workdays.workdays_between(date(2015, 2, 10), date(2015, 3, 13)) == 20
    assert workdays.workdays_between(date(2015, 3, 13), date(2015, 2, 10)) == -20


def test_national_day_week_2015() -> None:
    """Oct 1–7 2015 are holidays and Saturday Oct 10 is worked, so Sep 30 + 3 working days is Oct 10."""
    assert workdays.add_workdays(date(2015, 9, 30), 3) == date(2015, 10, 10)


def test_deadline_is_the_end_of_the_last_day_in_china() -> None:
    """The deadline instant is midnight after the last working day, Beijing time (16:00 UTC)."""
    assert workdays.deadline(date(2015, 2, 10), 20) == datetime(2015, 3, 13, 16, 0, tzinfo=UTC)


def test_local_date_uses_beijing_time() -> None:
    """16:30 UTC is already the next day in Beijing."""
    assert workdays.local_date(datetime(2015, 3, 18, 16, 30, tzinfo=UTC)) == date(2015, 3, 19)


def test_year_beyond_the_calendar_falls_back_to_weekdays() -> None:
    """A year the package does not know yet counts Monday–Friday and says it is a guess."""
    assert not workdays.known(2099) and workdays.known(2015)
    assert workdays.is_workday(date(2099, 1, 1))  # a Thursday; New Year is not known so far ahead
    assert not workdays.is_workday(date(2099, 1, 3))  # a Saturday


def _walk_between(start: date, end: date) -> int:
    """The definition, a day at a time: working days in (start, end]."""
    if end < start:
        return -_walk_between(end, start)
    return sum(workdays.is_workday(start + timedelta(days=i)) for i in range(1, (end - start).days + 1))


def test_counts_agree_with_a_day_by_day_walk_across_years_and_calendars() -> None:
    """Over spans that cross year ends, the Spring Festival, the epoch and years outside the package's data
    (before 2004, after its last year), the table's counts and searches equal a walk day by day."""
    rng = random.Random(7)
    starts = [date(1998, 12, 30), date(1999, 12, 31), date(2003, 12, 31), date(2014, 12, 31), date(2015, 2, 13),
              date(2020, 1, 23), date(2024, 12, 31), date(2098, 12, 30)]
    starts += [date(2000, 1, 1) + timedelta(days=rng.randrange(40 * 365)) for _ in range(40)]
    for start in starts:
        for span in (0, 1, 2, 5, 20, 40, 366, 900):
            end = start + timedelta(days=span)
            n = _walk_between(start, end)
            assert workdays.workdays_between(start, end) == n, (start, end)
            assert workdays.workdays_between(end, start) == -n
        for n in (1, 2, 20, 250):
            day = workdays.add_workdays(start, n)
            assert workdays.is_workday(day) and _walk_between(start, day) == n, (start, n)
            assert _walk_between(start, day - timedelta(days=1)) == n - 1


def test_a_decade_deep_deadline_costs_lookups_not_a_walk() -> None:
    """Working days from 2015 to 2026 are counted from the per-year tables: asking again for another day of
    the same years consults the holiday calendar no more (the tables are built once per year)."""
    workdays.workdays_between(date(2015, 1, 5), date(2026, 12, 4))
    before = workdays._year.cache_info().misses
    assert workdays.workdays_between(date(2015, 3, 1), date(2026, 11, 30)) > 2800
    assert workdays.add_workdays(date(2015, 3, 1), 2000) > date(2023, 1, 1)
    assert workdays._year.cache_info().misses == before
