"""Stand-in of a WebSub hub that is also the provincial collector (the feed's consumer).

The publish side follows what real hubs do (PubSubHubbub Core 0.3 §7.1, and the reference hub
that Google ran at pubsubhubbub.appspot.com; the WebSub Recommendation leaves publishing to the
hub): a form POST `hub.mode=publish` with one or more `hub.url` is accepted with 204 No Content
and the feed is fetched afterwards, in the background. Bad input gets 400 with a plain-text reason.

The collecting side is what the provincial bureau runs: it fetches the feed with a conditional GET
(the `ETag` / `Last-Modified` it saw before), parses it with feedparser, and keeps every entry and
every RFC 6721 tombstone it has seen, keyed by entry id.

    POST /hub/                     the hub endpoint (publish pings)
    POST /hub/poll?url=FEED        fetch now without a ping (the collector's own polling); JSON result
    GET  /hub/collected.xml        Atom feed of what was collected (for an adapter's `verify_feed`)
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import urllib.parse
from datetime import UTC, datetime
from typing import Any, cast
from xml.etree import ElementTree

import feedparser
import httpx
from feedgen.feed import FeedGenerator
from feedparser.datetimes import _parse_date as parse_feed_date
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from publisher.sandbox.core import FaultKind, Service, StandIn, retry_after_header

TOMBSTONE_NS = "http://purl.org/atompub/tombstones/1.0"
FETCH_SPACING = 0.2  # seconds between two fetches of one feed
FETCH_TIMEOUT = httpx.Timeout(10.0)


def _valid_topic(url: str) -> bool:
    """The reference hub's check: http(s) and no fragment (its port allow-list does not fit loopback)."""
    split = urllib.parse.urlsplit(url)
    return split.scheme in ("http", "https") and bool(split.netloc) and not split.fragment


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        parsed = parse_feed_date(value)  # RFC 822 and the other dates feeds carry in the wild
        if parsed is None:
            return None
        return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class Collector:
    """What the provincial collector has seen, and how it fetched it."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.tasks: set[asyncio.Task[Any]] = set()
        service.hooks.append(self._cancel_pending)

    @property
    def feeds(self) -> dict[str, dict[str, Any]]:
        return cast("dict[str, dict[str, Any]]", self.service.store.setdefault("feeds", {}))

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        return cast("dict[str, dict[str, Any]]", self.service.store.setdefault("entries", {}))

    @property
    def deleted(self) -> dict[str, dict[str, Any]]:
        return cast("dict[str, dict[str, Any]]", self.service.store.setdefault("deleted", {}))

    def received(self) -> dict[str, Any]:
        return {"feeds": self.feeds, "entries": self.entries, "deleted": self.deleted}  # not the client

    def _cancel_pending(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()

    def fetch_later(self, url: str) -> None:
        """Pings that arrive while a fetch of the same feed runs are folded into one more fetch after it,
        as hubs do: the fetch that follows sees every change the pings announced."""
        pending = self.service.store.setdefault("pending", {})
        if url in pending:
            pending[url] = True  # fetch once more when the running one ends
            return
        pending[url] = False

        async def run() -> None:
            try:
                while True:
                    await self.fetch(url)
                    if not pending.get(url):
                        break
                    pending[url] = False
                    await asyncio.sleep(FETCH_SPACING)  # pings in a burst are answered by one later fetch
            finally:
                pending.pop(url, None)

        task = asyncio.create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def client(self) -> httpx.AsyncClient:
        """One client (and connection pool) for the collector's lifetime, made in the serving loop."""
        client: httpx.AsyncClient | None = self.service.store.get("_client")
        if client is None:
            client = self.service.store["_client"] = httpx.AsyncClient(timeout=FETCH_TIMEOUT)
        return client

    async def fetch(self, url: str) -> dict[str, Any]:
        """One conditional GET of the feed; returns the feed's record after it."""
        feed = self.feeds.setdefault(url, {"etag": None, "last_modified": None, "fetches": 0,
                                           "not_modified": 0, "last_status": None, "last_error": None})
        headers = {"User-Agent": "sandbox-provincial-collector/1.0", "Accept": "application/atom+xml"}
        if feed["etag"]:
            headers["If-None-Match"] = feed["etag"]
        if feed["last_modified"]:
            headers["If-Modified-Since"] = feed["last_modified"]
        feed["fetches"] += 1
        try:
            resp = await self.client().get(url, headers=headers)
        except httpx.HTTPError as exc:
            feed["last_status"], feed["last_error"] = None, f"{type(exc).__name__}: {exc}"
            return feed
        feed["last_status"] = resp.status_code
        if resp.status_code == 304:
            feed["not_modified"] += 1
            feed["last_error"] = None
            return feed
        if resp.status_code != 200:
            feed["last_error"] = f"HTTP {resp.status_code}: {resp.text[:200]}"
            return feed
        feed["etag"] = resp.headers.get("ETag")
        feed["last_modified"] = resp.headers.get("Last-Modified")
        feed["last_error"] = self.take(url, resp.content)
        return feed

    def take(self, url: str, body: bytes) -> str | None:
        """Record the entries and tombstones of one fetched document; returns a parse problem, if any."""
        # the collector keeps ids, titles, times and links: no need to sanitize every entry's HTML
        parsed = feedparser.parse(body, sanitize_html=False, resolve_relative_uris=False)
        problem = f"{type(parsed.bozo_exception).__name__}: {parsed.bozo_exception}" if parsed.bozo else None
        for entry in parsed.entries:
            entry_id = entry.get("id")
            if not entry_id:
                continue
            record = {"id": entry_id, "title": entry.get("title"), "updated": entry.get("updated"),
                      "link": entry.get("link"), "feed": url}
            updated = _parse_time(record["updated"])
            known = self.entries.get(entry_id)
            if known is not None and updated is not None:
                before = _parse_time(known["updated"])
                if before is not None and updated < before:
                    continue  # an older copy (a cache, a mirror) never replaces a newer one
            gone = self.deleted.get(entry_id)
            if gone is not None:
                when = _parse_time(gone["when"])
                if updated is None or when is None or updated <= when:
                    continue  # the tombstone is newer than this copy
                del self.deleted[entry_id]
            self.entries[entry_id] = record
        for ref, deleted_at in _tombstones(body):
            self.deleted[ref] = {"ref": ref, "when": deleted_at, "feed": url}
            self.entries.pop(ref, None)
        return problem

    def collected_feed(self, self_url: str) -> bytes:
        fg = FeedGenerator()
        fg.id(self_url)
        fg.title("省安监局信息报送 collected items")
        fg.author({"name": "provincial collector"})
        fg.link(href=self_url, rel="self")
        latest = datetime(2000, 1, 1, tzinfo=UTC)
        # feedgen writes entries in reverse order of addition; add oldest first so the newest leads
        for record in sorted(self.entries.values(), key=lambda r: _parse_time(r["updated"]) or latest):
            fe = fg.add_entry()
            fe.id(record["id"])
            fe.title(record["title"] or record["id"])
            updated = _parse_time(record["updated"]) or latest
            fe.updated(updated)
            latest = max(latest, updated)
            if record["link"]:
                fe.link(href=record["link"], rel="alternate")
        fg.updated(latest)
        return bytes(fg.atom_str(pretty=True))  # feedgen ships no type hints


def _tombstones(body: bytes) -> list[tuple[str, str | None]]:
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return []
    return [(el.attrib["ref"], el.attrib.get("when"))
            for el in root.iter(f"{{{TOMBSTONE_NS}}}deleted-entry") if el.attrib.get("ref")]


class Hub(StandIn):
    """The hub endpoint, the collector's own polling, and what it collected, as a feed."""

    def __init__(self, service: Service, base: str) -> None:
        self.collector = Collector(service)
        super().__init__(service, base)
        self.self_url = f"{self.base}/collected.xml"

    def received(self) -> dict[str, Any]:
        return self.collector.received()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.hub, methods=["POST"]),
            Route("/", self.index, methods=["GET"]),
            Route("/poll", self.poll, methods=["POST"]),
            Route("/collected.xml", self.collected, methods=["GET"]),
        ]

    async def hub(self, request: Request) -> Response:
        form = await request.form()
        mode = str(form.get("hub.mode", "")).lower()
        if mode in ("subscribe", "unsubscribe"):
            # The collector fetches on pings; it delivers to no one, so it takes no subscribers.
            return PlainTextResponse("this hub accepts publish pings only", status_code=400)
        if mode != "publish":
            return PlainTextResponse("hub.mode is invalid", status_code=400)
        urls = {str(u) for u in form.getlist("hub.url")} or {str(u) for u in form.getlist("hub.topic")}
        if not urls:
            return PlainTextResponse("MUST supply at least one hub.url parameter", status_code=400)
        for url in sorted(urls):
            if not _valid_topic(url):
                return PlainTextResponse(f"hub.url invalid: {url}", status_code=400)
        for url in sorted(urls):
            self.collector.fetch_later(url)
        return Response(status_code=204)

    async def index(self, request: Request) -> Response:
        return PlainTextResponse("WebSub hub (publish pings only). POST hub.mode=publish&hub.url=FEED_URL\n")

    async def poll(self, request: Request) -> Response:
        url = request.query_params.get("url", "")
        if not _valid_topic(url):
            return PlainTextResponse(f"url invalid: {url}", status_code=400)
        return JSONResponse(await self.collector.fetch(url))

    async def collected(self, request: Request) -> Response:
        body = self.collector.collected_feed(self.self_url)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        seen = [t.strip().removeprefix("W/") for t in request.headers.get("if-none-match", "").split(",")]
        if etag in seen or "*" in seen:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/atom+xml; charset=utf-8", headers=headers)

    def render_fault(self, kind: FaultKind, retry_after: str | None) -> Response:
        if kind == "unauthorized":
            return PlainTextResponse("401 Unauthorized: this hub refuses the publisher", status_code=401)
        headers = retry_after_header(retry_after)
        if kind == "rate_limited":
            return PlainTextResponse("429 Too Many Requests: slow down", status_code=429, headers=headers)
        status = self.service.faults.error_status
        return PlainTextResponse(f"{status} Transient error; please try again later",
                                 status_code=status, headers=headers)
