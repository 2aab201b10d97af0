"""Working days in China: statutory holidays, swapped working weekends, and the 20-day legal limit."""

from __future__ import annotations

from datetime import UTC, date, datetime

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
