"""District bureaus' own news feeds, as their sites serve them: two healthy ones and one broken.

    GET  /districts/<slug>/feed.xml          RSS 2.0 (zichuan) or Atom 1.0 (zhangdian), with ETag and
                                             Last-Modified, 304 to a conditional GET that matches
    GET  /districts/<slug>/articles/<n>.html the entry's page (its link)
    POST /districts/<slug>/entries           the district's CMS: {"id"?, "title", "html", "published"?}
                                             adds an entry, or edits the one with that id

The third district (zhoucun) is broken the way small CMSs break: by default it answers 200 with an
HTML error page; `PUT /_sandbox/districts/settings {"broken": "500" | "404" | "not_xml" | "empty" |
"slow"}` picks another way, and `"none"` heals it. `{"order": "oldest_first"}` turns every feed's order
around (feeds are not obliged to keep one).

Conditional GET follows RFC 9110 §13: `If-None-Match` is compared weakly with the current ETag and,
when present, `If-Modified-Since` is ignored; otherwise a resource not modified since the given
HTTP-date answers 304.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import time
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from publisher.sandbox.core import FaultKind, StandIn, retry_after_header

# slug → (district name, feed format); the shipped config.yaml lists the same three under `sources:`
DISTRICTS: dict[str, tuple[str, str]] = {
    "zichuan": ("淄川区", "rss"),
    "zhangdian": ("张店区", "atom"),
    "zhoucun": ("周村区", "broken"),
}
_SEED = {
    "zichuan": ["淄川区开展危险化学品企业安全生产专项检查", "淄川区召开安全生产工作例会部署近期重点工作",
                "淄川区组织非煤矿山企业负责人安全培训", "淄川区启动“安全生产月”系列宣传活动"],
    "zhangdian": ["张店区安监局深入商业综合体开展消防安全检查", "张店区举办有限空间作业事故应急演练",
                  "张店区部署岁末年初安全生产大检查"],
    "zhoucun": ["周村区开展烟花爆竹经营单位专项整治"],
}
SLOW_S = 60.0  # "slow": longer than any poller's timeout


class Districts(StandIn):
    def seed(self) -> None:
        now = time.time()
        self.store["settings"] = {"order": "newest_first", "broken": "html"}
        self.store["feeds"] = {slug: [] for slug in DISTRICTS}
        for slug, titles in _SEED.items():
            for n, title in enumerate(titles):
                self._add(slug, {"title": title, "published": now - (len(titles) - n) * 86400,
                                 "html": f"<p>{title}。</p><p>{DISTRICTS[slug][0]}安监局高度重视，"
                                         "按照市局统一部署，<b>认真组织</b>落实。</p>"})

    def received(self) -> Any:
        return {slug: [{k: e[k] for k in ("id", "title", "link", "published", "updated")} for e in entries]
                for slug, entries in self.store["feeds"].items()}

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/{slug}/feed.xml", self.feed),
            Route("/{slug}/articles/{n:int}.html", self.article),
            Route("/{slug}/entries", self.publish, methods=["POST"]),
        ]

    def render_fault(self, kind: FaultKind, retry_after: str | None) -> Response:
        status = {"unauthorized": 403, "rate_limited": 429, "error": 503}[kind]
        return HTMLResponse(f"<html><body><h1>{status}</h1><p>服务器繁忙，请稍后再试。</p></body></html>",
                            status_code=status, headers=retry_after_header(retry_after))

    # --- the district's CMS ---------------------------------------------------------------------

    def _add(self, slug: str, data: dict[str, Any]) -> dict[str, Any]:
        entries: list[dict[str, Any]] = self.store["feeds"][slug]
        now = time.time()
        known = next((e for e in entries if data.get("id") and e["id"] == data["id"]), None)
        if known is not None:
            known.update(title=data.get("title", known["title"]), html=data.get("html", known["html"]), updated=now)
            return known
        n = len(entries) + 1
        published = float(data.get("published", now))
        entry = {"id": data.get("id") or f"tag:{slug}.district.example,2015:article-{n}",
                 "title": data["title"], "html": data.get("html", f"<p>{data['title']}</p>"),
                 "link": f"{self.base}/{slug}/articles/{n}.html", "published": published, "updated": published}
        entries.append(entry)
        return entry

    async def publish(self, request: Request) -> Response:
        slug = request.path_params["slug"]
        if slug not in DISTRICTS:
            return JSONResponse({"error": f"no district {slug!r}"}, status_code=404)
        data = await request.json()
        if not isinstance(data, dict) or not (data.get("title") or data.get("id")):
            return JSONResponse({"error": "give at least a title (a new entry) or an id (an edit)"}, status_code=400)
        return JSONResponse(self._add(slug, data), status_code=201)

    async def article(self, request: Request) -> Response:
        slug, n = request.path_params["slug"], request.path_params["n"]
        entries = self.store["feeds"].get(slug, [])
        if not 1 <= n <= len(entries):
            return HTMLResponse("<h1>404 Not Found</h1>", status_code=404)
        e = entries[n - 1]
        return HTMLResponse(f"<html><head><meta charset='utf-8'><title>{escape(e['title'])}</title></head>"
                            f"<body><h1>{escape(e['title'])}</h1>{e['html']}</body></html>")

    # --- the feed -----------------------------------------------------------------------------------

    async def feed(self, request: Request) -> Response:
        slug = request.path_params["slug"]
        if slug not in DISTRICTS:
            return HTMLResponse("<h1>404 Not Found</h1>", status_code=404)
        name, kind = DISTRICTS[slug]
        if kind == "broken":
            broken = await self._broken(self.store["settings"]["broken"])
            if broken is not None:
                return broken
            kind = "rss"
        entries = sorted(self.store["feeds"][slug], key=lambda e: e["published"],
                         reverse=self.store["settings"]["order"] != "oldest_first")
        if self.store["settings"]["broken"] == "empty" and DISTRICTS[slug][1] == "broken":
            entries = []
        body = (_rss if kind == "rss" else _atom)(self.base, slug, name, entries).encode("utf-8")
        etag = '"' + hashlib.sha1(body).hexdigest()[:20] + '"'
        newest = max((e["updated"] for e in entries), default=0.0)
        modified = email.utils.formatdate(newest, usegmt=True)
        headers = {"ETag": etag, "Last-Modified": modified, "Cache-Control": "max-age=60"}
        if _not_modified(request, etag, newest):
            return Response(status_code=304, headers=headers)
        media = "application/rss+xml" if kind == "rss" else "application/atom+xml"
        return Response(body, media_type=f"{media}; charset=utf-8", headers=headers)

    async def _broken(self, how: str) -> Response | None:
        if how == "slow":
            await asyncio.sleep(SLOW_S)
        if how == "500":
            return HTMLResponse("<h1>500 Internal Server Error</h1>", status_code=500)
        if how == "404":
            return HTMLResponse("<h1>404 Not Found</h1>", status_code=404)
        if how == "not_xml":
            return Response(b"<?xml version='1.0'?><rss><channel><item><title>\xe5\x8f", media_type="text/xml")
        if how == "html":  # the CMS's error page, sent with 200 as many are
            return HTMLResponse("<!DOCTYPE html><html><head><title>系统维护中</title></head><body><h1>系统维护中</h1>"
                                "<p>数据库连接失败，请联系网站管理员。</p></body></html>")
        return None  # "empty": a valid feed with no entries


def _not_modified(request: Request, etag: str, newest: float) -> bool:
    tags = request.headers.get("if-none-match")
    if tags is not None:
        return any(t.strip().removeprefix("W/") == etag for t in tags.split(",")) or tags.strip() == "*"
    since = request.headers.get("if-modified-since")
    if since:
        try:
            return int(newest) <= email.utils.parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            return False  # an unreadable date is ignored (RFC 9110 §13.1.3)
    return False


def _rss(base: str, slug: str, name: str, entries: list[dict[str, Any]]) -> str:
    items = "".join(
        f"<item><title>{escape(e['title'])}</title><link>{escape(e['link'])}</link>"
        f"<guid isPermaLink=\"false\">{escape(e['id'])}</guid>"
        f"<pubDate>{email.utils.formatdate(e['published'], usegmt=True)}</pubDate>"
        f"<description>{escape(e['html'])}</description></item>" for e in entries)
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>{escape(name)}安监局 工作动态</title>'
            f"<link>{escape(base)}/{slug}/</link><description>{escape(name)}安全生产工作动态</description>"
            f"<language>zh-cn</language>{items}</channel></rss>\n")


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _atom(base: str, slug: str, name: str, entries: list[dict[str, Any]]) -> str:
    newest = max((e["updated"] for e in entries), default=0.0)
    items = "".join(
        f"<entry><id>{escape(e['id'])}</id><title>{escape(e['title'])}</title>"
        f"<link rel=\"alternate\" href={quoteattr(e['link'])}/><published>{_iso(e['published'])}</published>"
        f"<updated>{_iso(e['updated'])}</updated><content type=\"html\">{escape(e['html'])}</content></entry>"
        for e in entries)
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="zh-CN">'
            f"<id>tag:{slug}.district.example,2015:feed</id><title>{escape(name)}安监局 工作动态</title>"
            f"<updated>{_iso(newest)}</updated><author><name>{escape(name)}安监局</name></author>"
            f"<link rel=\"self\" href={quoteattr(f'{base}/{slug}/feed.xml')}/>{items}</feed>\n")
