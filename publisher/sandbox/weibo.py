"""Stand-in of the Weibo open API v2 (`statuses/share.json`, `statuses/show.json`, `statuses/user_timeline.json`).

Built from Weibo's own documents: `share.json` takes `access_token` (form field, query, or the
`Authorization: OAuth2 <token>` header), `status` (at most 140 as Weibo counts: a full-width
character is 1, a half-width one ½, a link 20 half-width places; no `#topic#`; at least one URL
under the app's safe domain), optional `pic` (multipart, < 5 MB, JPEG/GIF/PNG) and `rip`. Limits:
30 posts per hour and 100 calls per day per user. Errors are `{"request", "error_code", "error"}`.
There is no edit and no delete for ordinary apps. Published links are shortened to `t.cn` links,
as the platform does, so a client cannot rely on finding its own URL in the text.

Settings a test may change live in `service.store["settings"]` (see `DEFAULT_SETTINGS`). The token
`EXPIRED_TOKEN` is answered as an expired one (21327).
"""

from __future__ import annotations

import hashlib
import html
import ipaddress
import math
import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from publisher.clock import CHINA
from publisher.sandbox.core import CREDENTIALS, FaultKind, StandIn, retry_after_header

EXPIRED_TOKEN = "sandbox-weibo-expired-token"
UID = 5612345678
SCREEN_NAME = "市安监局"
MAX_PIC_BYTES = 5 * 1024 * 1024

DEFAULT_SETTINGS: dict[str, Any] = {
    "safe_domains": ["127.0.0.1", "localhost"],  # the app's bound safe domains ("安全域名")
    "posts_per_hour": 30,
    "calls_per_day": 100,
    "repeat_window_s": 24 * 3600,  # the same text again within this window is refused (20019)
}

# Characters allowed in a URL: anything else (a CJK character, a space) ends it.
URL_RE = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
TOPIC_RE = re.compile(r"#[^#\s]+#")

_MESSAGES = {
    10001: "System error",
    10002: "Service unavailable",
    10006: "source paramter (appkey) is missing",
    10016: "Miss required parameter (%s) , see doc for more info",
    10017: "Parameter (%s)'s value invalid, expect (%s) , but get (%s) , see doc for more info",
    10021: "HTTP method is not suported for this request",
    10023: "User requests out of rate limit",
    10024: "User requests for (statuses/share) out of rate limit",
    20005: "Unsupported image type, only suport JPG, GIF, PNG",
    20006: "Image size too large",
    20007: "Does multipart has image",
    20012: "Text too long, please input text less than 140 characters",
    20016: "update weibo too fast",
    20018: "Contain illegal website",
    20019: "Repeat content",
    20101: "Target weibo does not exist",
    21327: "expired_token",
    21332: "invalid_access_token",
}
# Auth failures and the call limits answer 4xx other than 400, as the platform does.
_HTTP_STATUS = {21327: 401, 21332: 401, 10006: 403, 10023: 403, 10024: 403}


def weibo_count(text: str) -> int:
    """Weibo's length: half-width (ASCII) ½, anything else 1, every URL 20 half-width places."""
    halves = 0
    rest = URL_RE.sub(lambda m: "\0", text)
    for ch in rest:
        if ch == "\0":
            halves += 20
        else:
            halves += 1 if ord(ch) < 0x80 else 2
    return math.ceil(halves / 2)


def weibo_time(at: datetime) -> str:
    """Weibo's `created_at`: `Tue May 31 17:46:55 +0800 2011`."""
    return at.astimezone(CHINA).strftime("%a %b %d %H:%M:%S %z %Y")


def _error(path: str, code: int, *fill: str, status: int | None = None,
           headers: dict[str, str] | None = None) -> Response:
    message = _MESSAGES.get(code, "System error")
    if fill:
        message = message % fill
    body = {"request": f"/2/{path}", "error_code": code, "error": message}
    return JSONResponse(body, status_code=status or _HTTP_STATUS.get(code, 400), headers=headers)


def _image_ok(data: bytes) -> bool:
    return data.startswith((b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"\x89PNG\r\n\x1a\n"))


def _token_of(request: Request, form: Any = None) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("oauth2 "):
        return auth[7:].strip()
    if form is not None and form.get("access_token"):
        return str(form.get("access_token"))
    return request.query_params.get("access_token")


def _check_token(path: str, token: str | None) -> Response | None:
    if not token:
        return _error(path, 10006)
    if token == EXPIRED_TOKEN:
        return _error(path, 21327)
    if token != CREDENTIALS["weibo_token"]:
        return _error(path, 21332)
    return None


def _check_text(path: str, status: Any, rip: Any, safe_domains: list[str]) -> Response | None:
    """share.json's rules for `status` and `rip`, in the order the platform applies them."""
    if not isinstance(status, str) or not status.strip():
        return _error(path, 10016, "status")
    if rip is not None:
        try:
            ipaddress.ip_address(str(rip))
        except ValueError:
            return _error(path, 10017, "rip", "an IP address like 211.156.0.1", str(rip)[:40])
    if topic := TOPIC_RE.search(status):
        return _error(path, 10017, "status", "text without #topic#", topic.group(0))
    if weibo_count(status) > 140:
        return _error(path, 20012)
    safe = [d.lower() for d in safe_domains]

    def bound(url: str) -> bool:
        host = (urlsplit(url).hostname or "").lower()
        return any(host == d or host.endswith("." + d) for d in safe)

    if not any(bound(u) for u in URL_RE.findall(status)):
        return _error(path, 20018)
    return None


async def _read_pic(path: str, pic: Any, content_type: str) -> str | Response | None:
    """The `pic` part's image key, None without a picture, or the refusal of a bad one."""
    if pic is None:
        return None
    if "multipart/form-data" not in content_type or not isinstance(pic, UploadFile):
        return _error(path, 20007)
    data = await pic.read()
    if len(data) >= MAX_PIC_BYTES:
        return _error(path, 20006)
    if not _image_ok(data):
        return _error(path, 20005)
    return hashlib.sha1(data).hexdigest()[:22]


def _shorten(url: str) -> str:
    return "http://t.cn/" + hashlib.sha1(url.encode()).hexdigest()[:7]


_USER = {"id": UID, "idstr": str(UID), "screen_name": SCREEN_NAME, "name": SCREEN_NAME,
         "profile_url": f"u/{UID}", "domain": "", "verified": True, "verified_type": 1}


class Weibo(StandIn):
    """The user's statuses, the call and post counters of the limits, and the settings."""

    def seed(self) -> None:
        store = self.store
        store["settings"] = {k: (list(v) if isinstance(v, list) else v) for k, v in DEFAULT_SETTINGS.items()}
        store["statuses"] = {}  # idstr → status object
        store["posts"] = []  # times of successful posts (hourly limit)
        store["calls"] = []  # times of share.json calls (daily limit)
        store["seq"] = 0

    def received(self) -> dict[str, Any]:
        return {"statuses": list(self.store["statuses"].values())}

    def routes(self) -> list[BaseRoute]:
        methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]  # a wrong method is Weibo's 10021, not a 405
        return [
            Route("/2/statuses/share.json", self.share, methods=methods),
            Route("/2/statuses/show.json", self.show, methods=methods),
            Route("/2/statuses/user_timeline.json", self.user_timeline, methods=methods),
            Route("/{uid:int}/{sid}", self.page),
        ]

    def spend(self, counter: str, now: float, window_s: int, limit: int) -> bool:
        """Count one more use in a sliding window; False (and nothing counted) when the limit is reached."""
        self.store[counter] = [t for t in self.store[counter] if now - t < window_s]
        if len(self.store[counter]) >= limit:
            return False
        self.store[counter].append(now)
        return True

    async def share(self, request: Request) -> Response:
        path = "statuses/share.json"
        if request.method != "POST":
            return _error(path, 10021)
        form = await request.form(max_part_size=8 * 1024 * 1024)
        problem = _check_token(path, _token_of(request, form))
        if problem:
            return problem
        now = time.time()
        settings = self.store["settings"]
        if not self.spend("calls", now, 86400, settings["calls_per_day"]):
            return _error(path, 10024)
        problem = _check_text(path, form.get("status"), form.get("rip"), settings["safe_domains"])
        if problem:
            return problem
        status = str(form.get("status"))  # _check_text took only a string
        pic = await _read_pic(path, form.get("pic"), request.headers.get("content-type", ""))
        if isinstance(pic, Response):
            return pic
        window = settings["repeat_window_s"]
        for earlier in self.store["statuses"].values():
            if earlier["_source"] == status and now - earlier["_at"] < window:
                return _error(path, 20019)
        if not self.spend("posts", now, 3600, settings["posts_per_hour"]):
            return _error(path, 20016)
        obj = self.new_status(status, pic, now)
        self.store["statuses"][obj["idstr"]] = obj
        return JSONResponse(_public(obj))

    def new_status(self, source: str, pic: str | None, now: float) -> dict[str, Any]:
        """A status as share.json answers it, its links shortened as the platform shortens them."""
        self.store["seq"] += 1
        sid = 4_700_000_000_000_000 + self.store["seq"] * 7919 + self.service.rng.randrange(1000)
        obj: dict[str, Any] = {
            "created_at": weibo_time(datetime.now(UTC)), "id": sid, "idstr": str(sid), "mid": str(sid),
            "text": URL_RE.sub(lambda m: _shorten(m.group(0)), source),
            "source": '<a href="http://app.weibo.com/t/feed/sandbox" rel="nofollow">安监发布</a>',
            "favorited": False, "truncated": False, "in_reply_to_status_id": "", "in_reply_to_user_id": "",
            "in_reply_to_screen_name": "", "geo": None, "reposts_count": 0, "comments_count": 0,
            "attitudes_count": 0, "visible": {"type": 0, "list_id": 0}, "user": dict(_USER),
            "url_objects": [{"url_ori": u, "url_short": _shorten(u)} for u in URL_RE.findall(source)],
            "_source": source, "_at": now,
        }
        if pic:
            for size in ("thumbnail", "bmiddle", "large"):
                obj[f"{size}_pic" if size != "large" else "original_pic"] = f"http://ww1.sinaimg.cn/{size}/{pic}.jpg"
        return obj

    @staticmethod
    def refuse_read(path: str, request: Request) -> Response | None:
        """The read APIs take GET only, and a valid token."""
        if request.method != "GET":
            return _error(path, 10021)
        return _check_token(path, _token_of(request))

    async def show(self, request: Request) -> Response:
        path = "statuses/show.json"
        if problem := self.refuse_read(path, request):
            return problem
        sid = request.query_params.get("id")
        if not sid:
            return _error(path, 10016, "id")
        if not sid.isdigit():
            return _error(path, 10017, "id", "int64", sid[:40])
        obj = self.store["statuses"].get(sid)
        if obj is None:
            return _error(path, 20101)
        return JSONResponse(_public(obj))

    async def user_timeline(self, request: Request) -> Response:
        path = "statuses/user_timeline.json"
        if problem := self.refuse_read(path, request):
            return problem
        try:
            count = int(request.query_params.get("count", "20"))
            page = int(request.query_params.get("page", "1"))
        except ValueError:
            return _error(path, 10017, "count", "int", request.query_params.get("count", "")[:20])
        count = max(1, min(count, 100))
        newest = sorted(self.store["statuses"].values(), key=lambda s: s["id"], reverse=True)
        chunk = newest[(page - 1) * count: page * count]
        return JSONResponse({"statuses": [_public(s) for s in chunk], "marks": [], "hasvisible": False,
                             "previous_cursor": 0, "next_cursor": 0, "total_number": len(newest)})

    async def page(self, request: Request) -> Response:
        """The status's page on weibo.com (`/<uid>/<id>`), for people following a receipt's link."""
        obj = self.store["statuses"].get(request.path_params["sid"])
        if obj is None or str(request.path_params["uid"]) != str(UID):
            return HTMLResponse("<h1>抱歉，此微博已被作者删除</h1>", status_code=404)
        return HTMLResponse(f"<!doctype html><meta charset=utf-8><title>{SCREEN_NAME}的微博</title>"
                            f"<p>{html.escape(obj['text'])}</p><p>{html.escape(obj['created_at'])}</p>")

    def render_fault(self, kind: FaultKind, retry_after: str | None) -> Response:
        headers = retry_after_header(retry_after)
        if kind == "unauthorized":
            return _error("statuses/share.json", 21332)
        if kind == "rate_limited":
            return _error("statuses/share.json", 10023, headers=headers)
        status = self.service.faults.error_status
        return _error("statuses/share.json", 10001 if status == 500 else 10002, status=status, headers=headers)


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if not k.startswith("_")}
