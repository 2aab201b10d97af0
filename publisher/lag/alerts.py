"""Alerts: one message when a delivery turns late, when a channel takes a live item down, or when a
freshness or legal-deadline warning starts, and one when such an announced condition has recovered.

Each condition has a key (late:<delivery id>, lost:<delivery id>, freshness:<status>:<channel>:<category>,
deadline:<status>:<item>:<revision>) and a row in `alert_events`. A lost item (deleted on the account, banned
by the platform: publisher/dispatch/livecheck.py) is announced at the next check, SLA or not, and recovers
once the item is live on that channel again; it is not announced as late besides. A condition is announced once
when it opens, its recovery is announced once, and only a fresh opening is announced again.
All conditions opened by one check go out together: one webhook POST (JSON) and one e-mail, so a
dead channel with 500 late items makes one message, not 500. A failed send leaves the events
unannounced and the next check tries again (with both destinations configured, the one that
worked may then see the batch twice: a repeat is better than a lost alert).
The daemon runs `Alerter.run(stop)`; tests call `check()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import structlog

from publisher import i18n
from publisher.clock import Clock
from publisher.config.settings import Config
from publisher.lag import report as lag
from publisher.lag.json_form import seconds, timestamp
from publisher.model import TAKEN_DOWN
from publisher.store import alert_log
from publisher.store.db import Store

log = structlog.get_logger()
MAX_LINES = 20  # lines of text in one message; the JSON events list is complete
KEEP_CLEARED = timedelta(days=30)  # cleared conditions are forgotten after this (the audit of alerts is the log)


@dataclass(frozen=True)
class Event:
    key: str
    kind: str  # late | lost | freshness | deadline
    status: str  # late | lost | warning | breached | never | at_risk | overdue
    channel: str | None
    item_id: str | None
    text: str
    detail: dict[str, Any]


def conditions(report: lag.LagReport, locale: str) -> dict[str, Event]:
    """Every alert-worthy condition true in the report, by key."""
    config, out = report.config, {}
    names = {ch.name: ch.display for ch in report.channels}
    for ch in report.channels:
        for lost in ch.lost:
            reason = (lost.last_error or "—").removeprefix(TAKEN_DOWN)
            text = i18n.t("alert_lost", locale, channel=ch.display, item=lost.item_id, revision=lost.revision,
                          title=lost.title, reason=reason, url=lost.url or "—")
            out[f"lost:{lost.delivery_id}"] = Event(
                key=f"lost:{lost.delivery_id}", kind="lost", status="lost", channel=ch.name, item_id=lost.item_id,
                text=text, detail={"delivery_id": lost.delivery_id, "revision": lost.revision, "title": lost.title,
                                   "state": lost.state.value, "lost_at": timestamp(lost.lost_at), "url": lost.url,
                                   "reason": reason})
        for d in ch.late:
            if d.lost_at is not None:
                continue  # the lost alert speaks for it
            text = i18n.t("alert_late", locale, channel=ch.display, item=d.item_id, revision=d.revision,
                          lag=i18n.duration(d.lag, locale), sla=i18n.duration(ch.sla, locale),
                          state=i18n.t(f"state_{d.state}", locale), error=d.last_error or "—")
            out[f"late:{d.delivery_id}"] = Event(
                key=f"late:{d.delivery_id}", kind="late", status="late", channel=ch.name, item_id=d.item_id,
                text=text, detail={"delivery_id": d.delivery_id, "revision": d.revision, "title": d.title,
                                   "state": d.state.value, "due_at": timestamp(d.due_at), "lag_s": seconds(d.lag),
                                   "sla_s": seconds(ch.sla), "last_error": d.last_error})
    for f in report.freshness:
        if f.status not in ("warning", "breached"):
            continue  # "never" is a new install's normal state, shown on the dashboard but not paged
        category = f" / {config.category_name(f.category)}" if f.category else ""
        key = f"freshness:{f.status}:{f.channel}:{f.category or '*'}"
        text = i18n.t("alert_fresh", locale, channel=names.get(f.channel, f.channel), category=category,
                      age=i18n.duration(f.age, locale), threshold=i18n.duration(f.threshold, locale),
                      status=i18n.t(f"fresh_{f.status}", locale))
        out[key] = Event(key=key, kind="freshness", status=f.status, channel=f.channel, item_id=None, text=text,
                         detail={"category": f.category, "last_live_at": timestamp(f.last_live_at),
                                 "age_s": seconds(f.age), "threshold_s": seconds(f.threshold)})
    for r in report.deadlines:
        key = f"deadline:{r.status}:{r.item_id}:{r.revision}"
        text = i18n.t("alert_deadline", locale, item=r.item_id, title=r.title, last_day=r.last_day.isoformat(),
                      left=r.working_days_left, status=i18n.t(r.status, locale))
        out[key] = Event(key=key, kind="deadline", status=r.status, channel=None, item_id=r.item_id, text=text,
                         detail={"revision": r.revision, "title": r.title, "start": r.start.isoformat(),
                                 "last_day": r.last_day.isoformat(), "deadline": timestamp(r.deadline),
                                 "working_days_left": r.working_days_left})
    return out


def _subject(key: str) -> str:
    """What a condition is about, without its status: `freshness:warning:ch:cat` and
    `freshness:breached:ch:cat` are one subject getting worse, not a recovery and a new alert."""
    kind, _, rest = key.partition(":")
    return f"{kind}:{rest.partition(':')[2]}" if kind in ("freshness", "deadline") else key


class Alerter:
    def __init__(self, *, store: Store, config: Config, clock: Clock, http: httpx.AsyncClient | None = None,
                 build: Callable[[datetime], Awaitable[lag.LagReport]] | None = None) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.http = http
        # where the whole report (every late row) is built: the running daemon's report process, else a thread here
        self.build = build or self._build_here

    async def _build_here(self, now: datetime) -> lag.LagReport:
        return await asyncio.to_thread(lag.build_report, self.store, self.config, now, late_limit=None)

    async def run(self, stop: asyncio.Event) -> None:
        """Check every `lag.alert_every` until `stop` is set; a failing check is logged, never fatal."""
        # with several nodes on one PostgreSQL store, one of them checks at a time
        await self.store.lead_every("publisher.alerts", self.config.lag.alert_every, self.check, stop,
                                    failed="alert.check_failed")

    async def check(self) -> list[Event]:
        """Open and clear conditions as of now; announce the opened ones not yet announced, and the
        announced ones that recovered. Returns the events sent."""
        now = self.clock.now()
        report = await self.build(now)
        current = conditions(report, self.config.locale)
        pending, recovered = await asyncio.to_thread(self._record, current, now)
        sent: list[Event] = []
        if pending and await self._announce(pending, now, "alert_subject", "alert.opened"):
            await asyncio.to_thread(self._mark_notified, [e.key for e in pending], now)
            sent += pending
        if recovered and await self._announce(recovered, now, "alert_recovered_subject", "alert.recovered"):
            await asyncio.to_thread(self._mark_cleared, [e.key for e in recovered], now)
            sent += recovered
        return sent

    def _record(self, current: dict[str, Event], now: datetime) -> tuple[list[Event], list[Event]]:
        """(conditions to announce as opened, announced conditions that recovered). A condition that
        recovered stays open until its recovery is announced; one never announced, or one that only
        changed status (a freshness warning that became a breach), is cleared without a word."""
        with self.store.tx() as conn:
            rows = alert_log.conditions(conn)
            alert_log.forget_cleared(conn, before=now - KEEP_CLEARED)
            gone = [k for k, r in rows.items() if r.cleared_at is None and k not in current]
            subjects = {_subject(k) for k in current}
            silent = [k for k in gone if rows[k].notified_at is None or _subject(k) in subjects]
            if silent:
                alert_log.mark_cleared(conn, silent, now)
                log.info("alert.cleared", count=len(silent), keys=silent[:20])
            recovered = []
            for key in gone:
                if key in silent:
                    continue
                was = rows[key]
                text = i18n.t("alert_recovered", self.config.locale, text=was.detail.get("text", key))
                recovered.append(Event(key=key, kind=was.kind, status="recovered", channel=was.channel,
                                       item_id=was.item_id, text=text, detail=dict(was.detail)))
            pending = []
            for key, ev in current.items():
                condition = alert_log.Condition(kind=ev.kind, channel=ev.channel, item_id=ev.item_id,
                                                detail={**ev.detail, "text": ev.text, "status": ev.status})
                row = rows.get(key)
                if row is None:
                    alert_log.open_condition(conn, key, condition, now)
                elif row.cleared_at is not None:  # it recovered and came back: a new event
                    alert_log.reopen(conn, key, condition, now)
                elif row.notified_at is not None:
                    continue
                pending.append(ev)
        return pending, recovered

    def _mark_notified(self, keys: list[str], at: datetime) -> None:
        with self.store.tx() as conn:
            alert_log.mark_notified(conn, keys, at)

    def _mark_cleared(self, keys: list[str], at: datetime) -> None:
        with self.store.tx() as conn:
            alert_log.mark_cleared(conn, keys, at)

    async def _announce(self, events: list[Event], now: datetime, subject: str, event_name: str) -> bool:
        """Send to every configured destination; True only when all of them took it."""
        for ev in events:
            log.warning(event_name, key=ev.key, kind=ev.kind, status=ev.status, channel=ev.channel,
                        item_id=ev.item_id)
        cfg = self.config.alerts
        title = i18n.t(subject, self.config.locale, n=len(events))
        ok = True
        if cfg.webhook:
            ok &= await self._webhook(cfg.webhook, events, now, title)
        if cfg.email is not None:
            ok &= await self._email(events, title)
        return ok

    def _text(self, events: list[Event]) -> str:
        lines = [e.text for e in events[:MAX_LINES]]
        if len(events) > MAX_LINES:
            lines.append(i18n.t("alert_more", self.config.locale, n=len(events) - MAX_LINES))
        return "\n".join(lines)

    async def _webhook(self, url: str, events: list[Event], now: datetime, title: str) -> bool:
        payload = {
            "source": "publisher", "schema": "publisher.alerts/1", "at": timestamp(now),
            "text": title + "\n" + self._text(events),
            "events": [{"key": e.key, "kind": e.kind, "status": e.status, "channel": e.channel,
                        "channel_name": self.config.channels[e.channel].display(e.channel)
                        if e.channel in self.config.channels else None,
                        "item_id": e.item_id, "text": e.text, "detail": e.detail} for e in events],
        }
        try:
            if self.http is not None:
                response = await self.http.post(url, json=payload, timeout=10)
            else:
                async with httpx.AsyncClient(timeout=10) as client:
                    response = await client.post(url, json=payload)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("alert.webhook_failed", url=url, error=str(exc), events=len(events))
            return False
        log.info("alert.webhook_sent", events=len(events), status=response.status_code)
        return True

    async def _email(self, events: list[Event], title: str) -> bool:
        import aiosmtplib

        cfg = self.config.alerts.email
        assert cfg is not None
        host, _, port = cfg.smtp.rpartition(":")
        msg = EmailMessage()
        msg["From"] = cfg.sender
        msg["To"] = ", ".join(cfg.to)
        msg["Subject"] = title
        msg.set_content(self._text(events) + "\n")
        try:
            await aiosmtplib.send(msg, hostname=host or cfg.smtp, port=int(port) if port.isdigit() else 25,
                                  timeout=15)
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("alert.email_failed", smtp=cfg.smtp, error=str(exc), events=len(events))
            return False
        log.info("alert.email_sent", events=len(events), to=len(cfg.to))
        return True
