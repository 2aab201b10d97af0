"""The alerter's memory: one `alert_events` row per condition, so that each is announced once when it
opens and once when it recovers (the rules are in publisher/lag/alerts.py).

Each function takes the Connection of the alerter's transaction and plain arguments; rows come back
as frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from publisher.store.schema import alert_events

BATCH = 500  # keys per UPDATE: well under every backend's limit of bound parameters


@dataclass(frozen=True)
class Condition:
    """What is written about a condition each time it is (re)opened."""

    kind: str  # late | freshness | deadline
    channel: str | None
    item_id: str | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class AlertRow:
    """A condition as the log remembers it: open while `cleared_at` is None, announced once `notified_at` is set."""

    key: str
    kind: str
    channel: str | None
    item_id: str | None
    detail: dict[str, Any]
    cleared_at: datetime | None
    notified_at: datetime | None


def conditions(conn: Connection) -> dict[str, AlertRow]:
    """Every remembered condition, open or cleared, by key."""
    t = alert_events.c
    rows = conn.execute(sa.select(t.key, t.kind, t.channel, t.item_id, t.detail, t.cleared_at, t.notified_at))
    return {r.key: AlertRow(key=r.key, kind=r.kind, channel=r.channel, item_id=r.item_id, detail=dict(r.detail or {}),
                            cleared_at=r.cleared_at, notified_at=r.notified_at) for r in rows}


def forget_cleared(conn: Connection, before: datetime) -> None:
    """Drop the conditions cleared before `before` (the audit of alerts is the log, not this table)."""
    conn.execute(alert_events.delete().where(alert_events.c.cleared_at < before))


def open_condition(conn: Connection, key: str, condition: Condition, at: datetime) -> None:
    """Remember a condition seen for the first time, opened `at`, not announced yet."""
    conn.execute(alert_events.insert().values(key=key, opened_at=at, **asdict(condition)))


def reopen(conn: Connection, key: str, condition: Condition, at: datetime) -> None:
    """A cleared condition came back: it is a new event, opened `at` and not announced yet."""
    conn.execute(alert_events.update().where(alert_events.c.key == key).values(
        opened_at=at, cleared_at=None, notified_at=None, **asdict(condition)))


def mark_notified(conn: Connection, keys: list[str], at: datetime) -> None:
    """The conditions `keys` were announced `at`."""
    _set(conn, keys, notified_at=at)


def mark_cleared(conn: Connection, keys: list[str], at: datetime) -> None:
    """The conditions `keys` recovered (or their recovery was announced) `at`."""
    _set(conn, keys, cleared_at=at)


def _set(conn: Connection, keys: list[str], **values: datetime) -> None:
    for i in range(0, len(keys), BATCH):
        conn.execute(alert_events.update().where(alert_events.c.key.in_(keys[i:i + BATCH])).values(**values))
