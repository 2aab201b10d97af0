"""The lag report's stable JSON form (docs/LAG_JSON.md), as `publisher lag --json` and `/api/lag`
give it, and the timestamp and duration spellings the alerts' JSON shares with it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from publisher.lag.report import OPEN_STATES, LagReport

SCHEMA = "publisher.lag/1"


def timestamp(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


def seconds(td: timedelta | None) -> float | None:
    return None if td is None else round(td.total_seconds(), 3)


def to_json(report: LagReport, *, source: str = "store", limit: int | None = None) -> dict[str, Any]:
    """The report as the CLI's `--json` and `/api/lag` give it; field names never change within a schema.
    `source`: "daemon" when the running daemon answered, "store" when the store was read directly.
    `limit`: the deadlines listed at most (the most urgent; all are counted in `deadline_counts`), as the
    late rows per channel are limited when the report is built: a store years deep holds a thousand
    revisions past their deadline, and listing all of them made every answer half a megabyte."""
    config = report.config
    listed = report.deadlines if limit is None else report.deadlines[:limit]
    counts = {status: sum(1 for d in report.deadlines if d.status == status) for status in ("at_risk", "overdue")}
    return {
        "schema": SCHEMA,
        "source": source,
        "locale": config.locale,
        "generated_at": timestamp(report.generated_at),
        "window": {"since": timestamp(report.since), "until": timestamp(report.generated_at)},
        "channels": [{
            "name": ch.name, "display_name": ch.display, "type": ch.type, "status": ch.status,
            "sla_s": seconds(ch.sla),
            "counts": {state.value: ch.counts.get(state, 0) for state in OPEN_STATES},
            "late_total": ch.late_total,
            "late": [{
                "delivery_id": d.delivery_id, "item_id": d.item_id, "revision": d.revision, "title": d.title,
                "state": d.state.value, "retract": d.retract, "due_at": timestamp(d.due_at), "sent_at": timestamp(d.sent_at),
                "lag_s": seconds(d.lag), "over_sla_s": seconds(d.over_sla), "attempts": d.attempts,
                "last_error": d.last_error, "next_attempt_at": timestamp(d.next_attempt_at),
            } for d in ch.late],
            "lost": [{
                "delivery_id": d.delivery_id, "item_id": d.item_id, "revision": d.revision, "title": d.title,
                "state": d.state.value, "lost_at": timestamp(d.lost_at), "url": d.url, "last_error": d.last_error,
            } for d in ch.lost],
            "window": {"deliveries": ch.window_total, "over_sla": ch.window_over_sla,
                       "p50_s": seconds(ch.p50), "p95_s": seconds(ch.p95), "max_s": seconds(ch.max)},
            "last_live_at": timestamp(ch.last_live_at),
        } for ch in report.channels],
        "freshness": [{
            "channel": f.channel, "category": f.category,
            "category_name": None if f.category is None else config.category_name(f.category),
            "threshold_s": seconds(f.threshold), "last_live_at": timestamp(f.last_live_at), "age_s": seconds(f.age),
            "status": f.status,
        } for f in report.freshness],
        "deadlines": [{
            "item_id": d.item_id, "revision": d.revision, "title": d.title, "category": d.category,
            "category_name": config.category_name(d.category), "state": d.state.value,
            "start": d.start.isoformat(), "last_day": d.last_day.isoformat(),
            "deadline": timestamp(d.deadline),
            "working_days_left": d.working_days_left, "status": d.status, "calendar_known": d.calendar_known,
        } for d in listed],
        "deadlines_total": len(report.deadlines),
        "deadline_counts": counts,
        "review": {
            "waiting": report.review.waiting, "blocked": report.review.blocked,
            "with_findings": report.review.with_findings,
            "findings": {"blocking": report.review.blocking, "advisory": report.review.advisory},
            "kinds": dict(report.review.kinds),
        },
        "sources": [{
            "name": src.key, "district": src.district, "url": src.url, "category": src.category,
            "category_name": config.category_name(src.category), "status": src.status,
            "interval_s": seconds(src.interval), "silent_after_s": seconds(src.silent_after),
            "last_attempt_at": timestamp(src.last_attempt_at), "last_success_at": timestamp(src.last_success_at),
            "last_error_at": timestamp(src.last_error_at), "last_error": src.last_error,
            "entries": src.entries, "imported": src.imported, "last_import_at": timestamp(src.last_import_at),
        } for src in report.sources],
    }
