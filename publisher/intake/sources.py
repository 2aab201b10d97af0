"""District sources: the district bureaus' own RSS or Atom feeds, polled, each new entry an item pending review.

Each configured source (config.yaml `sources:`) is fetched every `interval` with a conditional GET
(`If-None-Match` / `If-Modified-Since` from the last good answer) through the daemon's HTTP client, and
read by feedparser. A new entry becomes an item in the source's category with `source` = the district,
through the same path an item file takes (`queue.record_revision`: screen, review, audit), so review,
the screen and routing apply the same way. An entry is known by its id, else its link: the row that says
which item it became commits with the revision, so a restart, a reordered feed or a re-sent feed never
imports it twice; an entry whose title, text, link or date changed becomes the next revision of the
same item.

A broken feed (no answer, an HTTP error, an HTML page, no entries where there were some) changes
nothing and is recorded as the source's last error; it never holds up the other sources.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import feedparser
import httpx
import nh3
import structlog

from publisher.clock import CHINA, Clock
from publisher.config.settings import Config, SourceConfig
from publisher.intake.items import ItemFile, ParsedItem
from publisher.intake.queue import record_revision
from publisher.model import RevisionState
from publisher.review.chain import Review
from publisher.store.db import Store

log = structlog.get_logger()

_BLOCK_END = re.compile(r"(?i)<\s*(?:br\s*/?|/p|/div|/li|/h[1-6]|/tr|/blockquote)\s*>")
_MARKDOWN_MARKS = re.compile(r"([\\`*_\[\]<>#|])")
_UNSAFE_KEY = re.compile(r"[^\w\-.]")


@dataclass(frozen=True)
class PollOutcome:
    """What one poll of one source did."""

    source: str
    error: str | None = None
    not_modified: bool = False
    entries: int = 0  # in the feed as read
    new_items: int = 0
    new_revisions: int = 0


@dataclass(frozen=True)
class Entry:
    """A feed entry as the bureau imports it."""

    key: str  # its id, else its link
    title: str
    body: str  # Markdown
    link: str | None
    day: date

    @property
    def key_sha256(self) -> str:
        return hashlib.sha256(self.key.encode("utf-8")).hexdigest()

    @property
    def content_sha256(self) -> str:
        text = json.dumps([self.title, self.body, self.link, self.day.isoformat()], ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def html_to_markdown(fragment: str) -> str:
    """An entry's HTML as plain Markdown paragraphs: tags and scripts gone, the text's marks escaped."""
    text = html.unescape(nh3.clean(_BLOCK_END.sub("\n\n", fragment), tags=set()))
    paragraphs = (re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", text))
    return "\n\n".join(_MARKDOWN_MARKS.sub(r"\\\1", p) for p in paragraphs if p)


def read_entry(raw: Any, today: date) -> Entry | None:
    """One feedparser entry, or None when it has neither id nor link, or no title (nothing to know it by)."""
    key = (raw.get("id") or raw.get("link") or "").strip()
    title = re.sub(r"\s+", " ", html.unescape(nh3.clean(raw.get("title") or "", tags=set()))).strip()
    if not key or not title:
        return None
    content = raw.get("content") or []
    body = html_to_markdown(content[0].get("value", "") if content else raw.get("summary") or "")
    stamp = raw.get("published_parsed") or raw.get("updated_parsed")
    day = datetime(*stamp[:6]).replace(tzinfo=UTC).astimezone(CHINA).date() if stamp else today
    link = (raw.get("link") or "").strip() or None
    return Entry(key=key, title=title[:500], body=body or title, link=link, day=day)


class SourcePoller:
    """Polls every enabled source; `run` on the daemon's schedule, `poll_all` once (`publisher run --once`)."""

    def __init__(self, *, config: Config, store: Store, review: Review, clock: Clock, http: httpx.AsyncClient,
                 on_approved: Callable[[], None] | None = None) -> None:
        self.config, self.store, self.review, self.clock, self.http = config, store, review, clock, http
        self.on_approved = on_approved or (lambda: None)
        self.sources = {k: s for k, s in config.sources.items() if s.enabled}
        self._locks = {k: asyncio.Lock() for k in self.sources}

    async def poll_all(self) -> dict[str, PollOutcome]:
        outcomes = await asyncio.gather(*(self.poll(key) for key in self.sources))
        return {o.source: o for o in outcomes}

    async def run(self, stop: asyncio.Event) -> None:
        """Each source on its own interval (apscheduler), the first poll at once; until `stop`."""
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        scheduler = AsyncIOScheduler()
        for key, src in self.sources.items():
            scheduler.add_job(self.poll, "interval", args=[key], seconds=src.interval.total_seconds(),
                              id=f"source:{key}", max_instances=1, coalesce=True, next_run_time=datetime.now(UTC))
        scheduler.start()
        try:
            await stop.wait()
        finally:
            scheduler.shutdown(wait=False)

    async def poll(self, key: str) -> PollOutcome:
        """Fetch and import one source; its trouble is recorded as its last error, never raised."""
        async with self._locks[key]:
            try:
                with self.store.leader(f"source:{key}") as held:  # several nodes: one polls a source at a time
                    if not held:
                        return PollOutcome(key, not_modified=True)
                    outcome = await self._poll(key, self.sources[key])
            except Exception as exc:  # a defect of ours, or the store away: recorded if it can be; the others go on
                log.exception("source.poll_failed", source=key)
                outcome = PollOutcome(key, error=f"the feed could not be imported ({type(exc).__name__}: {exc})")
                try:
                    self.store.record_poll(key, self.clock.now(), error=outcome.error)
                except Exception:
                    log.exception("source.state_not_recorded", source=key)
            return outcome

    async def _poll(self, key: str, src: SourceConfig) -> PollOutcome:
        state = self.store.source_state(key)
        headers = {"Accept": "application/atom+xml, application/rss+xml, application/xml;q=0.9, */*;q=0.5"}
        if state.etag:
            headers["If-None-Match"] = state.etag
        if state.last_modified:
            headers["If-Modified-Since"] = state.last_modified
        try:
            resp = await self.http.get(src.url, headers=headers, timeout=src.timeout.total_seconds(),
                                       follow_redirects=True)
        except httpx.TimeoutException:
            return self._failed(key, f"{src.url} did not answer within {src.timeout.total_seconds():g} s")
        except httpx.HTTPError as exc:
            return self._failed(key, f"{src.url} cannot be reached ({type(exc).__name__}: {exc})")
        if resp.status_code == 304:
            self.store.record_poll(key, self.clock.now())
            log.info("source.not_modified", source=key)
            return PollOutcome(key, not_modified=True, entries=state.entries)
        if resp.status_code != 200:
            return self._failed(key, f"{src.url} answered HTTP {resp.status_code} {resp.reason_phrase}; "
                                     "the district's site may be down or the feed moved")
        parsed = await asyncio.to_thread(feedparser.parse, resp.content,
                                         response_headers={"content-type": resp.headers.get("content-type", "")})
        problem = parsed.get("bozo_exception")
        if not parsed.get("version") and not parsed.entries:
            kind = resp.headers.get("content-type", "?")
            return self._failed(key, f"{src.url} sent something that is not an RSS or Atom feed ({kind}"
                                     f"{f'; {problem}' if problem else ''})")
        today = self.clock.now().astimezone(CHINA).date()
        entries = [e for e in (read_entry(raw, today) for raw in parsed.entries) if e is not None]
        if not entries and problem:
            return self._failed(key, f"{src.url} is not a well-formed feed and nothing could be read from it ({problem})")
        if not entries and state.entries:
            return self._failed(key, f"the feed held {state.entries} entries and now holds none; nothing was "
                                     "changed (the district's site may be broken)")
        new_items = new_revisions = 0
        approved = False
        notes = [f"the feed is malformed but was read ({problem})"] if problem else []
        if skipped := len(parsed.entries) - len(entries):
            notes.append(f"{skipped} entries have no id, link or title and were left out")
        for entry in sorted(entries, key=lambda e: (e.day, e.key)):  # oldest first: items are made in date order
            try:
                made = self._import(key, src, entry)
            except Exception as exc:  # one entry's trouble leaves the others (and the entry, for the next poll)
                log.exception("source.entry_failed", source=key, entry=entry.key)
                notes.append(f"the entry {entry.link or entry.key} could not be imported ({type(exc).__name__}: {exc})")
                continue
            if made is not None:
                new_items += made[0] == 1
                new_revisions += made[0] > 1
                approved |= made[1] == RevisionState.APPROVED
        warning = "; ".join(notes) or None
        self.store.record_poll(key, self.clock.now(), entries=len(entries), etag=resp.headers.get("etag"),
                               last_modified=resp.headers.get("last-modified"), imported=bool(new_items or new_revisions),
                               warning=warning)
        if approved:
            self.on_approved()
        log.info("source.polled", source=key, entries=len(entries), new_items=new_items,
                 new_revisions=new_revisions, warning=warning)
        return PollOutcome(key, entries=len(entries), new_items=new_items, new_revisions=new_revisions)

    def _import(self, key: str, src: SourceConfig, entry: Entry) -> tuple[int, RevisionState] | None:
        """The entry as a new item or the next revision of its item; None when it is known unchanged."""
        now = self.clock.now()
        with self.store.tx() as conn:
            known = self.store.known_entry(conn, key, entry.key_sha256)
            if known is not None and known.content_sha256 == entry.content_sha256:
                return None
            item_id = known.item_id if known is not None else f"{_UNSAFE_KEY.sub('-', key)}-{entry.key_sha256[:16]}"
            footer = f"（来源：{src.district}" + (f"，原文：<{entry.link}>）" if entry.link else "）")
            front = ItemFile(title=entry.title, category=src.category, date=entry.day, source=src.district)
            item = ParsedItem(item_id=item_id, front=front, body=f"{entry.body}\n\n{footer}")
            remember = functools.partial(self.store.remember_entry, conn, now, source=key, key_sha256=entry.key_sha256,
                                         entry_key=entry.key, item_id=item_id, link=entry.link,
                                         content_sha256=entry.content_sha256)
            if known is None:  # first, so that review finds the item's source (its own sign-offs) as it settles
                remember(revision=0)
            number, state = record_revision(conn, self.config, self.store, self.review, item, now=now,
                                            file_name=None, digest=None, attachments=[], actor=f"source:{key}")
            remember(revision=number)
        log.info("source.imported", source=key, item_id=item_id, revision=number, state=state.value, link=entry.link)
        return number, state

    def _failed(self, key: str, error: str) -> PollOutcome:
        self.store.record_poll(key, self.clock.now(), error=error)
        log.warning("source.failed", source=key, error=error)
        return PollOutcome(key, error=error)
