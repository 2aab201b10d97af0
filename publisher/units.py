"""Durations (`30s`, `15m`, `2h`, `14d`) and rates (`30/h`, `300/5m`) as written in config.yaml."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|[smhdw])\s*$")


def parse_duration(value: object) -> timedelta:
    """`15m` → 15 minutes. Plain numbers are seconds. Anything else is a clear error."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])
    raise ValueError(f"{value!r} is not a duration like 30s, 15m, 2h or 14d")


def parse_instant(value: str, now: datetime) -> datetime:
    """`24h`, `7d` (that long before `now`), or an ISO date / date-time (UTC unless it says otherwise)."""
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is neither a duration like 24h or 7d nor a date like 2015-03-01") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def format_duration(td: timedelta) -> str:
    """The shortest exact spelling: 900 s → `15m`."""
    if td.total_seconds() != int(td.total_seconds()):
        return f"{round(td.total_seconds() * 1000)}ms"
    secs = int(td.total_seconds())
    for unit in ("w", "d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if secs and secs % size == 0:
            return f"{secs // size}{unit}"
    return f"{secs}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]


@dataclass(frozen=True)
class Rate:
    """At most `count` events per `per` window."""

    count: int
    per: timedelta

    def __str__(self) -> str:
        return f"{self.count}/{format_duration(self.per)}"


_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_rate(value: object) -> Rate:
    """`30/h` → 30 per hour; `300/5m` → 300 per five minutes."""
    if isinstance(value, Rate):
        return value
    if isinstance(value, str):
        m = _RATE.match(value)
        if m and int(m.group(1)) > 0:
            n = float(m.group(2)) if m.group(2) else 1.0
            return Rate(int(m.group(1)), timedelta(seconds=n * _UNIT_SECONDS[m.group(3)]))
    raise ValueError(f"{value!r} is not a rate like 30/h or 300/5m")


RateLimit = Annotated[Rate, BeforeValidator(parse_rate), PlainSerializer(str, return_type=str)]
