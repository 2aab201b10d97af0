"""The screen's link check: links in a body that readers cannot follow, or that leave the allowed domains.

Why a daemon part and not intake: a link check waits on the network (a timeout is seconds), and intake
stores a revision inside one short transaction that the editor's next file waits behind; a check there would
hold that transaction, and the event loop with it, for as long as the slowest link. So intake stores the
revision with the screen's other findings, and `LinkChecker` (a task of the daemon) looks, every
`screen.links.every`, for revisions in review whose links are unchecked, checks each link once (HEAD, then
GET where HEAD is refused; `screen.links.timeout` each, a few at a time), and stores the problems as advisory
findings on the revision together with a `links_checked` audit entry, in one transaction. The audit entry is
the mark: a revision is checked once, by one node, whatever the restarts (a second node finds the mark and
writes nothing). A link problem never holds a revision: it is shown to the reviewers, who decide.
"""

from __future__ import annotations

import asyncio
import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog

from publisher.clock import Clock
from publisher.config.screen import LinksConfig
from publisher.review.screen import Finding
from publisher.review.seen import MARKDOWN
from publisher.store.db import Store

log = structlog.get_logger()

_BARE_URL = re.compile(r"https?://[^\s<>\"'（）()【】，。；！？、]+", re.I)
_URL_CHAR = re.compile(r"[\w/?#&=.%~+:@!$*,;-]")
_PARALLEL = 8  # links of one revision checked at once
_MOST = 100  # links of one revision checked at all: a body that holds more is not a link list to walk


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and name in ("href", "src"):
                self.urls.append(value.strip())

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def extract_links(body: str) -> list[str]:
    """The http(s) links a reader of the body can follow: Markdown links, images and autolinks, HTML `href`
    and `src`, and bare addresses in the text; each once, in reading order."""
    parser = _Links()
    parser.feed(MARKDOWN.render(body))
    parser.close()
    urls = parser.urls + [m.group().rstrip(".,;:!?") for m in _BARE_URL.finditer("".join(parser.text))]
    return list(dict.fromkeys(u for u in urls if urlsplit(u).scheme.lower() in ("http", "https")
                              and urlsplit(u).hostname))


def allowed(url: str, domains: list[str]) -> bool:
    """Whether the link's host is one of the allowed domains or under one (no list: every domain is)."""
    if not domains:
        return True
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in domains)


async def _ask(http: httpx.AsyncClient, url: str, seconds: float) -> httpx.Response:
    response = await http.head(url, timeout=seconds, follow_redirects=True)
    if response.status_code in (403, 405, 501) or response.status_code >= 500:
        # many servers refuse HEAD or answer it worse than GET: ask as a browser does (the body is not read)
        async with http.stream("GET", url, timeout=seconds, follow_redirects=True) as streamed:
            response = streamed
    return response


async def problem(http: httpx.AsyncClient, url: str, seconds: float) -> tuple[str, str] | None:
    """(zh, en) saying why readers cannot follow the link, or None when it answers below 400."""
    try:
        try:
            response = await _ask(http, url, seconds)
        except httpx.TimeoutException:
            raise
        except httpx.TransportError:  # a kept-alive connection the server had just closed: ask once more
            response = await _ask(http, url, seconds)
    except httpx.TimeoutException:
        return f"链接无法访问（{seconds:g}秒内没有响应）", f"the link did not answer within {seconds:g} s"
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        return f"链接无法访问（{type(exc).__name__}）", f"the link cannot be reached ({type(exc).__name__})"
    if response.status_code >= 400:
        return (f"链接无法访问（HTTP {response.status_code}）",
                f"the link answers HTTP {response.status_code}")
    return None


async def link_findings(http: httpx.AsyncClient, body: str, config: LinksConfig) -> tuple[list[Finding], int]:
    """The advisory findings of the body's links, and how many links there were."""
    urls = extract_links(body)
    if len(urls) > _MOST:
        log.warning("screen.links_capped", links=len(urls), checked=_MOST)
        urls = urls[:_MOST]
    gate = asyncio.Semaphore(_PARALLEL)

    async def one(url: str) -> tuple[str, str] | None:
        if not allowed(url, config.allow):
            host = urlsplit(url).hostname or url
            return (f"链接指向允许范围以外的域名（{host}）", f"the link leaves the allowed domains ({host})")
        async with gate:
            return await problem(http, url, config.timeout.total_seconds())

    results = await asyncio.gather(*(one(u) for u in urls))
    out = []
    for url, found in zip(urls, results, strict=True):
        if found is None:
            continue
        at = _locate(body, url)
        out.append(Finding("link", url, "body", at if at >= 0 else None, at + len(url) if at >= 0 else None,
                           level="advisory", seen=url, reason_zh=found[0], reason_en=found[1]))
    return out, len(urls)


def _locate(body: str, url: str) -> int:
    """Where the link stands in the body as written (-1: only as the rendering spelt it, say with entities);
    not inside a longer address that begins like it."""
    at = body.find(url)
    while at >= 0 and at + len(url) < len(body) and _URL_CHAR.match(body[at + len(url)]):
        at = body.find(url, at + 1)
    return at


class LinkChecker:
    """The daemon's part that checks the links of revisions in review, once per revision."""

    def __init__(self, *, store: Store, config: LinksConfig, clock: Clock, http: httpx.AsyncClient) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.http = http
        self._linkless: set[int] = set()  # revisions seen to hold no link: not read again by this process

    async def check_pending(self) -> int:
        """Check every revision in review whose links are unchecked; how many were recorded."""
        done = 0
        while True:
            batch = await asyncio.to_thread(self.store.links_unchecked, 50, self._linkless)
            if not batch:
                return done
            for rev in batch:
                findings, count = await link_findings(self.http, rev.body, self.config)
                if count == 0:
                    self._linkless.add(rev.id)
                    continue
                stored: list[dict[str, Any]] = [f.as_dict() for f in findings]
                if await asyncio.to_thread(self.store.record_link_check, rev.id, stored, self.clock.now(),
                                           links=count, problems=len(stored)):
                    done += 1
                    log.info("screen.links_checked", item_id=rev.item_id, revision=rev.number, links=count,
                             problems=len(stored))

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: a pass now, then one every `every`; a store or network fault waits for the next pass."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                a_pass = asyncio.ensure_future(self.check_pending())
                await asyncio.wait({a_pass, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not a_pass.done():  # stopping: a link that takes its whole timeout does not hold the daemon
                    a_pass.cancel()
                    await asyncio.gather(a_pass, return_exceptions=True)
                    return
                failed = a_pass.exception()
                if failed is not None:  # the store went away for a moment: the next pass tries again
                    log.error("screen.links_check_failed", exc_info=failed)
                await asyncio.wait({stopping}, timeout=self.config.every.total_seconds())
        finally:
            stopping.cancel()
