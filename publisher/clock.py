"""The injectable clock: everything that reasons about time asks one of these."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Protocol

# Mainland China's civil time (UTC+8, no daylight saving since 1991): working days, the portal's
# timestamps, Weibo's and WeChat's daily quotas, the dates people read.
CHINA = timezone(timedelta(hours=8), "CST")


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that moves only when told to; tests use it to stand exactly on a boundary."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FrozenClock needs a timezone-aware datetime")
        self._at = at.astimezone(UTC)

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        self._at = at.astimezone(UTC)

    def advance(self, delta: timedelta | float) -> datetime:
        self._at += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        return self._at
