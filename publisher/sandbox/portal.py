"""Stand-in of the city government portal's push API: a typical government portal, kept strict.

There is no public standard for these portals; this is the API the `http_push` channel is set up for
in the shipped config, and it rejects what such a portal rejects:

    POST   /api/articles              {"source_id", "title" (<= 200 chars), "content" (HTML), "column",
                                       "summary"?, "publish_time"? ("YYYY-MM-DD HH:MM:SS", Beijing), "source"?}
                                       -> 201 {"code": 0, "data": {"id", "url"}}
                                       an existing source_id -> 409 {"code": 40901, "message", "data": {"id", "url"}}
    PUT    /api/articles/{id}         same body -> 200 {"code": 0, "data": {"id", "url"}}
    DELETE /api/articles/{id}         -> 200 {"code": 0}
    GET    /api/articles?source_id=X  -> 200 {"code": 0, "data": [article, ...]}
    GET    /art/{id}.html             the public article page (404 once deleted)
    GET    /rss.xml[?column=C]        RSS 2.0 of the newest 50 articles, ETag/Last-Modified, 304

The API wants `Authorization: Bearer <token>`, or `X-Timestamp` (unix seconds, within 300 s) plus
`X-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>`. Every error is
`{"code": status*100 + n, "message": ...}` with the HTTP status; pages and the feed need no auth.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import html
import json
import time
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree as ET

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from publisher.clock import CHINA
from publisher.sandbox.core import CREDENTIALS, FaultKind, StandIn, retry_after_header

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SIGNATURE_WINDOW_S = 300
FEED_SIZE = 50
MAX_TITLE = 200
_FIELDS = {"source_id": True, "title": True, "content": True, "column": True,
           "summary": False, "publish_time": False, "source": False}  # name -> required


def error(status: int, message: str, *, sub: int = 1, headers: dict[str, str] | None = None,
          data: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"code": status * 100 + sub, "message": message}
    if data is not None:
        body["data"] = data
    return JSONResponse(body, status_code=status, headers=headers)


def _validate(payload: Any) -> str | None:
    """Why the portal refuses an article's fields, or None when it takes them."""
    if not isinstance(payload, dict):
        return "request body must be a JSON object"
    unknown = sorted(set(payload) - set(_FIELDS))
    if unknown:
        return f"unknown field(s): {', '.join(unknown)}"
    for name, required in _FIELDS.items():
        if name not in payload:
            if required:
                return f"missing required field: {name}"
            continue
        value = payload[name]
        if not isinstance(value, str):
            return f"field {name} must be a string"
        if required and not value.strip():
            return f"field {name} must not be empty"
    if len(payload["title"]) > MAX_TITLE:
        return f"title longer than {MAX_TITLE} characters"
    if "publish_time" in payload:
        try:
            datetime.strptime(payload["publish_time"], TIME_FORMAT)
        except ValueError:
            return "publish_time must be YYYY-MM-DD HH:MM:SS"
    return None


def _refusal(request: Request, body: bytes) -> str | None:
    """None when the request's credentials pass; otherwise why not."""
    auth = request.headers.get("authorization")
    if auth is not None:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), CREDENTIALS["portal_token"].encode()):
            return "invalid access token"
        return None
    stamp, signature = request.headers.get("x-timestamp"), request.headers.get("x-signature")
    if stamp is None and signature is None:
        return "missing credentials: send Authorization: Bearer or X-Timestamp and X-Signature"
    if not stamp or not stamp.isdigit():
        return "X-Timestamp must be unix seconds"
    if abs(time.time() - int(stamp)) > SIGNATURE_WINDOW_S:
        return "X-Timestamp outside the allowed window of 300 seconds"
    if not signature or not signature.startswith("sha256="):
        return "X-Signature must be sha256=<hex>"
    expected = hmac.new(CREDENTIALS["portal_hmac_secret"].encode(), stamp.encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature[len("sha256="):].encode(), expected.encode()):
        return "signature mismatch"
    return None


async def _signed_body(request: Request) -> bytes | Response:
    """The raw body (the signature covers it) once the credentials pass, else the 401."""
    body = await request.body()
    why = _refusal(request, body)
    return error(401, why) if why else body


def _read_article(request: Request, body: bytes) -> tuple[dict[str, Any], Response | None]:
    """The JSON article of a create or an edit, or the portal's refusal of it."""
    if "json" not in request.headers.get("content-type", ""):
        return {}, error(415, "Content-Type must be application/json")
    try:
        payload = json.loads(body)
    except ValueError:
        return {}, error(400, "request body is not valid JSON")
    problem = _validate(payload)
    if problem is not None:
        return {}, error(400, problem)
    return payload, None


def _public(article: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in article.items() if not k.startswith("_")}


def _receipt(article: dict[str, Any]) -> dict[str, str]:
    return {"id": article["id"], "url": article["url"]}


class Portal(StandIn):
    """The portal's push API, its public pages and its RSS feed."""

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/articles", self.articles, methods=["GET", "POST"]),
            Route("/api/articles/{id}", self.article, methods=["PUT", "DELETE"]),
            Route("/art/{id}.html", self.page, methods=["GET", "HEAD"]),
            Route("/rss.xml", self.rss, methods=["GET", "HEAD"]),
        ]

    def asgi(self) -> ASGIApp:
        return Starlette(routes=self.routes(), exception_handlers={HTTPException: self.http_error})

    def state(self) -> dict[str, Any]:
        """Made on first use after a reset: the feed's Last-Modified starts when it is first looked at."""
        s = self.store
        s.setdefault("articles", {})  # portal id -> article
        s.setdefault("seq", 10000)
        s.setdefault("changed", time.time())  # feed Last-Modified: creates, edits and deletes move it
        return s

    def received(self) -> list[dict[str, Any]]:
        return [_public(a) for a in self.state()["articles"].values()]

    def fill(self, article: dict[str, Any], payload: dict[str, Any]) -> None:
        now = datetime.now(CHINA)
        article.update({k: payload.get(k) for k in _FIELDS})
        article["publish_time"] = payload.get("publish_time") or now.strftime(TIME_FORMAT)
        article["updated_at"] = now.strftime(TIME_FORMAT)
        self.state()["changed"] = time.time()

    async def articles(self, request: Request) -> Response:
        """GET finds articles by source_id; POST creates one (409 when the source_id is known)."""
        body = await _signed_body(request)
        if isinstance(body, Response):
            return body
        s = self.state()
        if request.method == "GET":
            source_id = request.query_params.get("source_id")
            if not source_id:
                return error(400, "query parameter source_id is required")
            found = [_public(a) for a in s["articles"].values() if a["source_id"] == source_id]
            return JSONResponse({"code": 0, "data": found})
        payload, refused = _read_article(request, body)
        if refused is not None:
            return refused
        for existing in s["articles"].values():
            if existing["source_id"] == payload["source_id"]:
                return error(409, "duplicate source_id", data=_receipt(existing))
        s["seq"] += 1
        article_id = str(s["seq"])
        article: dict[str, Any] = {"id": article_id, "url": f"{self.base}/art/{article_id}.html",
                                   "created_at": datetime.now(CHINA).strftime(TIME_FORMAT),
                                   "_order": time.monotonic()}
        self.fill(article, payload)
        s["articles"][article_id] = article
        return JSONResponse({"code": 0, "data": _receipt(article)}, status_code=201)

    async def article(self, request: Request) -> Response:
        """PUT replaces an article's fields (its source_id stays); DELETE removes it."""
        body = await _signed_body(request)
        if isinstance(body, Response):
            return body
        s = self.state()
        article = s["articles"].get(request.path_params["id"])
        if article is None:
            return error(404, "article not found")
        if request.method == "DELETE":
            del s["articles"][article["id"]]
            s["changed"] = time.time()
            return JSONResponse({"code": 0})
        payload, refused = _read_article(request, body)
        if refused is not None:
            return refused
        if payload["source_id"] != article["source_id"]:
            return error(400, "source_id of an article cannot change")
        self.fill(article, payload)
        return JSONResponse({"code": 0, "data": _receipt(article)})

    async def page(self, request: Request) -> Response:
        article = self.state()["articles"].get(request.path_params["id"])
        if article is None:
            return HTMLResponse("<!doctype html><title>404</title><h1>页面不存在</h1>", status_code=404)
        doc = (f"<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">"
               f"<title>{html.escape(article['title'])}</title></head><body>"
               f"<h1>{html.escape(article['title'])}</h1>"
               f"<p class=\"meta\">{html.escape(article['column'])} {html.escape(article['publish_time'])}</p>"
               f"<div class=\"content\">{article['content']}</div></body></html>")
        return HTMLResponse(doc)

    async def rss(self, request: Request) -> Response:
        s = self.state()
        column = request.query_params.get("column")
        chosen = [a for a in s["articles"].values() if column is None or a["column"] == column]
        chosen.sort(key=lambda a: a["_order"], reverse=True)
        changed = datetime.fromtimestamp(int(s["changed"]), UTC)
        body = _rss_document(self.base, column, chosen[:FEED_SIZE], changed)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {"ETag": etag, "Last-Modified": email.utils.format_datetime(changed, usegmt=True),
                   "Cache-Control": "no-cache"}
        if _not_modified(request, etag, changed):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/rss+xml; charset=utf-8", headers=headers)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        return error(status, getattr(exc, "detail", None) or "error")

    def render_fault(self, kind: FaultKind, retry_after: str | None) -> Response:
        headers = retry_after_header(retry_after)
        if kind == "unauthorized":
            return error(401, "credentials revoked")
        if kind == "rate_limited":
            return error(429, "too many requests", headers=headers)
        status = self.service.faults.error_status
        return error(status, "service unavailable" if status == 503 else "internal error",
                     headers=headers if status == 503 else None)


def _not_modified(request: Request, etag: str, changed: datetime) -> bool:
    """RFC 9110 §13.1: If-None-Match wins; If-Modified-Since counts only without it."""
    inm = request.headers.get("if-none-match")
    if inm is not None:
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return "*" in tags or etag in tags
    ims = request.headers.get("if-modified-since")
    if ims:
        try:
            since = email.utils.parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return changed <= since
    return False


def _rss_document(base: str, column: str | None, articles: list[dict[str, Any]], changed: datetime) -> bytes:
    rss = ET.Element("rss", version="2.0")
    channel = ET.SubElement(rss, "channel")
    ET.SubElement(channel, "title").text = "市人民政府门户网站" + (f" - {column}" if column else "")
    ET.SubElement(channel, "link").text = base + "/"
    ET.SubElement(channel, "description").text = "市人民政府门户网站信息发布"
    ET.SubElement(channel, "language").text = "zh-CN"
    ET.SubElement(channel, "lastBuildDate").text = email.utils.format_datetime(changed, usegmt=True)
    for a in articles:
        item = ET.SubElement(channel, "item")
        ET.SubElement(item, "title").text = a["title"]
        ET.SubElement(item, "link").text = a["url"]
        ET.SubElement(item, "guid", isPermaLink="true").text = a["url"]
        published = datetime.strptime(a["publish_time"], TIME_FORMAT).replace(tzinfo=CHINA)
        ET.SubElement(item, "pubDate").text = email.utils.format_datetime(published)
        ET.SubElement(item, "category").text = a["column"]
        if a.get("summary"):
            ET.SubElement(item, "description").text = a["summary"]
    document: bytes = ET.tostring(rss, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + document
