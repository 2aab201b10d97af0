"""Reviewers are told what waits for them, so that nobody has to poll: a daemon part.

Every `review.notify.every` the notifier looks at what waits for review. Each revision that reached a
role's step since the last look is named once in that role's digest: one message per role per look,
however many items (an e-mail to the enabled accounts holding the role that have an address, when
`review.notify.smtp` is set, and/or one JSON POST to `review.notify.webhook`), never one per item.
A revision within `review.notify.escalate_working_days` working days of its legal deadline (the lag
report's rule: `lag.deadline_working_days` after its document date, publisher/lag/workdays.py) is
escalated once: to the accounts of the next role up its chain, or, at the top of the chain, to
`review.notify.escalate_to`; escalations are batched the same way. Digests and escalations are recorded
(`review_notices`, so that a restart repeats nothing) and written to the audit log. A message that no
destination took is tried again at the next look. Time comes from the injectable clock.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any

import httpx
import structlog

from publisher import i18n
from publisher.clock import CHINA, Clock
from publisher.config.settings import Config
from publisher.lag import workdays
from publisher.lag.report import deadline_risk
from publisher.review.accounts import Accounts
from publisher.review.chain import Review, Waiting
from publisher.store.db import Store

log = structlog.get_logger()
MAX_LINES = 50  # items named in one message; the rest are counted
TOP = "@escalate_to"  # the role key of an escalation beyond the top of a chain


@dataclass
class Message:
    kind: str  # digest | escalation
    role: str  # the role told (TOP: the configured addresses)
    to: list[str]
    items: list[dict[str, Any]] = field(default_factory=list)
    pairs: list[tuple[int, str]] = field(default_factory=list)  # (revision id, role) recorded once sent


class ReviewNotifier:
    def __init__(self, *, store: Store, config: Config, clock: Clock, review: Review, accounts: Accounts,
                 http: httpx.AsyncClient) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.review = review
        self.accounts = accounts
        self.http = http

    @property
    def enabled(self) -> bool:
        cfg = self.config.review.notify
        return bool(cfg.smtp or cfg.webhook)

    async def run(self, stop: asyncio.Event) -> None:
        # one node of a PostgreSQL cluster tells the reviewers
        await self.store.lead_every("publisher.review-notify", self.config.review.notify.every, self.check, stop,
                                    failed="review.notify_failed")

    async def check(self) -> list[Message]:
        """One look: the digests and escalations due now, sent; returns the messages that went out."""
        now = self.clock.now()
        messages = await asyncio.to_thread(self._plan, now)
        sent = []
        for msg in messages:
            if await self._send(msg, now):
                await asyncio.to_thread(self._record, msg, now)
                sent.append(msg)
        return sent

    # --- what is due ------------------------------------------------------------------------------

    def _plan(self, now: datetime) -> list[Message]:
        waiting = [w for w in self.review.waiting() if w.may_sign or w.may_override]
        ids = [w.revision_id for w in waiting]
        told, escalated = self.store.noticed("digest", ids), {rid for rid, _ in self.store.noticed("escalation", ids)}
        holders: dict[str, list[str]] = defaultdict(list)
        for account in self.accounts.list():
            if account.enabled and account.email:
                for role in account.roles:
                    holders[role].append(account.email)
        digests: dict[str, Message] = {}
        escalations: dict[str, Message] = {}
        cfg = self.config.review.notify
        for w in waiting:
            status, _at, last_day, left = deadline_risk(self._start(w), now, self.config.lag.deadline_working_days,
                                                        cfg.escalate_working_days)
            item = self._item(w, last_day.isoformat(), left)
            for role in w.may_sign or w.may_override:  # a blocked item whose chain is signed: who may release it
                if (w.revision_id, role) not in told:
                    msg = digests.setdefault(role, Message("digest", role, sorted(set(holders[role]))))
                    msg.items.append(item)
                    msg.pairs.append((w.revision_id, role))
            if status != "ok" and w.revision_id not in escalated:
                up = self._next_up(w)
                to = (sorted(set(holders[up])) if up != TOP else []) or list(cfg.escalate_to)
                msg = escalations.setdefault(up, Message("escalation", up, to))
                msg.items.append(item)
                msg.pairs.append((w.revision_id, up))
        return list(digests.values()) + list(escalations.values())

    @staticmethod
    def _start(w: Waiting) -> Any:
        assert w.created_at is not None
        return w.doc_date or workdays.local_date(w.created_at)

    def _next_up(self, w: Waiting) -> str:
        """The role above the one the revision waits for: the next in its chain, else the top addresses."""
        if w.retract or w.next_role is None:
            return TOP
        chain = list(w.chain)
        if w.next_role in chain and chain.index(w.next_role) + 1 < len(chain):
            return chain[chain.index(w.next_role) + 1]
        return TOP

    def _item(self, w: Waiting, last_day: str, left: int) -> dict[str, Any]:
        since = w.created_at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M") if w.created_at else ""
        return {"item_id": w.item_id, "revision": w.revision, "title": w.title, "category": w.category,
                "category_name": self.config.category_name(w.category), "waiting_since": since,
                "waits_for": list(w.may_sign or w.may_override), "last_day": last_day, "working_days_left": left,
                "retract": w.retract}

    # --- saying it ----------------------------------------------------------------------------------

    def _role_name(self, role: str, locale: str) -> str:
        if role == TOP:
            return "主管领导" if locale != "en" else "the bureau's leadership"
        return self.config.role_name(role)

    def _text(self, msg: Message, locale: str) -> tuple[str, str]:
        n, url = len(msg.items), self.config.web.base_url + "/"
        if msg.kind == "digest":
            subject = i18n.t("digest_subject", locale, role=self._role_name(msg.role, locale), n=n)
            lines = [i18n.t("digest_line", locale, item=i["item_id"], revision=i["revision"], title=i["title"],
                            category=i["category_name"], since=i["waiting_since"], left=i["working_days_left"])
                     for i in msg.items[:MAX_LINES]]
        else:
            subject = i18n.t("escalation_subject", locale, n=n)
            lines = [i18n.t("escalation_line", locale, item=i["item_id"], revision=i["revision"], title=i["title"],
                            role=" / ".join(self.config.role_name(r) for r in i["waits_for"]),
                            last_day=i["last_day"], left=i["working_days_left"]) for i in msg.items[:MAX_LINES]]
        if n > MAX_LINES:
            lines.append(i18n.t("digest_more", locale, n=n - MAX_LINES, url=url))
        lines.append(i18n.t("digest_footer", locale, url=url))
        return subject, "\n".join(lines)

    async def _send(self, msg: Message, now: datetime) -> bool:
        """True when at least one destination took the message."""
        cfg = self.config.review.notify
        zh_subject, zh_body = self._text(msg, "zh-CN")
        en_subject, en_body = self._text(msg, "en")
        subject = f"{zh_subject} / {en_subject}"
        body = f"{zh_body}\n\n{en_body}\n"
        took = []
        if cfg.webhook:
            payload = {"source": "publisher", "schema": "publisher.review/1", "kind": msg.kind, "role": msg.role,
                       "role_name": self._role_name(msg.role, self.config.locale), "at": now.isoformat(),
                       "count": len(msg.items), "items": msg.items, "msgtype": "text",
                       "text": {"content": f"{subject}\n{body}"}}  # the text form enterprise chat robots read
            if await self._webhook(cfg.webhook, payload, msg):
                took.append("webhook")
        if cfg.smtp and msg.to and await self._email(cfg.smtp, cfg.sender, msg, subject, body):
            took.append("email")
        if not took:
            log.warning("review.notice_not_sent", kind=msg.kind, role=msg.role, items=len(msg.items),
                        recipients=len(msg.to))
            return False
        msg.items = [{**i, "sent_by": took} for i in msg.items]
        return True

    async def _webhook(self, url: str, payload: dict[str, Any], msg: Message) -> bool:
        try:
            response = await self.http.post(url, json=payload, timeout=10)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("review.webhook_failed", kind=msg.kind, role=msg.role, error=str(exc))
            return False
        return True

    async def _email(self, smtp: str, sender: str, msg: Message, subject: str, body: str) -> bool:
        import aiosmtplib

        host, _, port = smtp.rpartition(":")
        mail = EmailMessage()
        mail["From"] = sender
        mail["To"] = ", ".join(msg.to)
        mail["Subject"] = subject
        mail.set_content(body)
        try:
            await aiosmtplib.send(mail, hostname=host or smtp, port=int(port) if port.isdigit() else 25, timeout=15)
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("review.email_failed", kind=msg.kind, role=msg.role, smtp=smtp, error=str(exc))
            return False
        return True

    def _record(self, msg: Message, now: datetime) -> None:
        with self.store.tx() as conn:
            self.store.add_notices(conn, msg.kind, msg.pairs, now)
            self.store.audit(conn, now, "daemon", f"review_{msg.kind}", role=msg.role, recipients=msg.to,
                             items=[f"{i['item_id']} r{i['revision']}" for i in msg.items],
                             sent_by=msg.items[0]["sent_by"] if msg.items else [])
        log.info(f"review.{msg.kind}_sent", role=msg.role, items=len(msg.items), recipients=len(msg.to))
