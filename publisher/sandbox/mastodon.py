"""Stand-in of a Mastodon server's client API (statuses, accounts, instance, media).

Built from Mastodon's API documents and its source: `POST /api/v1/statuses` (form or JSON) with
`Authorization: Bearer` and an optional `Idempotency-Key` (a repeat within an hour answers the
first status again); the status length is counted as `StatusLengthValidator` counts it (spoiler
text plus text, every URL 23 characters); statuses are read, edited (`PUT`) and deleted (`DELETE`)
by id. Every response carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
`X-RateLimit-Reset` (ISO 8601), with 300 requests per 5-minute window; a throttled request gets
429 `{"error": "Too many requests"}` with those headers and no `Retry-After`. Errors are
`{"error": "…"}`. Each status has a public page under `{base}/@bureau/<id>`.

Settings a test may change live in `service.store["settings"]` (see `DEFAULT_SETTINGS`).
"""

from __future__ import annotations

import html
import json
import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from publisher.sandbox.core import FaultKind, Service

ACCOUNT_ID = "109348212345678901"
USERNAME = "bureau"
VISIBILITIES = ("public", "unlisted", "private", "direct")
IDEMPOTENCY_TTL_S = 3600

DEFAULT_SETTINGS: dict[str, Any] = {
    "max_characters": 500,
    "characters_reserved_per_url": 23,
    "max_media_attachments": 4,
    "rate_limit": 300,  # requests per window, per token (or per address when anonymous)
    "rate_period_s": 300,
}

# twitter-text's URL extraction, reduced: a scheme, then URL characters (a CJK character ends it).
URL_RE = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_IMAGE_MAGIC = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png", b"GIF8": "image/gif",
                b"RIFF": "image/webp"}


def status_length(text: str, spoiler_text: str = "", per_url: int = 23) -> int:
    """Mastodon's count: spoiler text plus text, every URL as `per_url` characters."""
    return len(spoiler_text) + len(URL_RE.sub("x" * per_url, text or ""))


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _err(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _linkify(url: str) -> str:
    scheme, _, rest = url.partition("://")
    shown, hidden = rest[:30], rest[30:]
    cls = "ellipsis" if hidden else ""
    return (f'<a href="{html.escape(url)}" target="_blank" rel="nofollow noopener noreferrer" translate="no">'
            f'<span class="invisible">{html.escape(scheme)}://</span><span class="{cls}">{html.escape(shown)}</span>'
            f'<span class="invisible">{html.escape(hidden)}</span></a>')


def render_content(text: str) -> str:
    """Plain text as Mastodon's formatter renders it: escaped, links made, paragraphs and line breaks."""
    paras = []
    for para in re.split(r"\n{2,}", text.strip()):
        out, pos = [], 0
        for m in URL_RE.finditer(para):
            out.append(html.escape(para[pos:m.start()]))
            out.append(_linkify(m.group(0)))
            pos = m.end()
        out.append(html.escape(para[pos:]))
        paras.append("<p>" + "".join(out).replace("\n", "<br />") + "</p>")
    return "".join(paras)


class RateLimiter:
    """ASGI wrapper: rack-attack's fixed windows, headers on every answer, 429 when spent."""

    def __init__(self, app: Any, store: dict[str, Any]) -> None:
        self.app = app
        self.store = store

    def headers_for(self, key: str, *, spend: bool) -> tuple[dict[str, str], bool]:
        settings = self.store["settings"]
        period, limit = settings["rate_period_s"], settings["rate_limit"]
        now = time.time()
        window = int(now // period)
        counts: dict[tuple[str, int], int] = self.store["rate"]
        if spend:
            counts[(key, window)] = counts.get((key, window), 0) + 1
        used = counts.get((key, window), 0)
        headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(max(0, limit - used)),
                   "X-RateLimit-Reset": iso((window + 1) * period)}
        return headers, used > limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hdrs = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key = hdrs.get("authorization") or (scope.get("client") or ("anon",))[0]
        headers, over = self.headers_for(key, spend=True)
        if over:
            await _err("Too many requests", 429, headers)(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + [
                    (k.lower().encode(), v.encode()) for k, v in headers.items()]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def make(service: Service, public_base_url: str) -> tuple[Any, Any]:
    """The Mastodon stand-in app and its fault renderer."""
    store = service.store
    base = public_base_url.rstrip("/")

    def init() -> None:
        store["settings"] = dict(DEFAULT_SETTINGS)
        store["statuses"] = {}  # id → status (with private `_` keys)
        store["idempotency"] = {}  # key → (status id, time)
        store["media"] = {}
        store["rate"] = {}
        store["seq"] = 0

    init()
    service.hooks.append(init)
    service.received = lambda: {"statuses": [_public(s) for s in store["statuses"].values()  # type: ignore[method-assign]
                                             if not s["_deleted"]]}

    def authorized(request: Request, *, required: bool) -> Response | None:
        from publisher.sandbox import CREDENTIALS  # the package imports this module lazily

        auth = request.headers.get("authorization")
        if auth is None and not required:
            return None
        if auth is None or not auth.startswith("Bearer ") or auth[7:].strip() != CREDENTIALS["mastodon_token"]:
            return _err("The access token is invalid", 401)
        return None

    def next_id() -> str:
        store["seq"] += 1
        return str((int(time.time() * 1000) << 16) + store["seq"])

    def account() -> dict[str, Any]:
        count = sum(1 for s in store["statuses"].values() if not s["_deleted"])
        return {"id": ACCOUNT_ID, "username": USERNAME, "acct": USERNAME, "display_name": "市安监局",
                "locked": False, "bot": False, "discoverable": True, "group": False,
                "created_at": "2015-01-01T00:00:00.000Z", "note": "<p>市安全生产监督管理局官方账号</p>",
                "url": f"{base}/@{USERNAME}", "uri": f"{base}/users/{USERNAME}",
                "avatar": f"{base}/avatars/original/missing.png", "header": f"{base}/headers/original/missing.png",
                "followers_count": 0, "following_count": 0, "statuses_count": count,
                "last_status_at": None, "emojis": [], "fields": []}

    async def params(request: Request) -> dict[str, Any]:
        """Form (urlencoded or multipart) or JSON, as Rails reads them; `media_ids[]` becomes a list."""
        ctype = request.headers.get("content-type", "")
        if "json" in ctype:
            try:
                data = json.loads(await request.body() or b"{}")
            except ValueError:
                return {"_invalid": True}
            return data if isinstance(data, dict) else {"_invalid": True}
        if "multipart" in ctype:
            form = await request.form()
            out: dict[str, Any] = {}
            for k, v in form.multi_items():
                if k.endswith("[]"):
                    out.setdefault(k[:-2], []).append(v)
                else:
                    out[k] = v
            return out
        raw = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
        return {(k[:-2] if k.endswith("[]") else k): (v if k.endswith("[]") else v[-1]) for k, v in raw.items()}

    def validate(p: dict[str, Any], *, has_media: bool) -> Response | None:
        if p.get("_invalid"):
            return _err("Error occurred while parsing request parameters", 400)
        text = str(p.get("status") or "")
        spoiler = str(p.get("spoiler_text") or "")
        visibility = p.get("visibility")
        if visibility is not None and visibility not in VISIBILITIES:
            return _err(f"'{visibility}' is not a valid visibility", 422)
        if not text.strip() and not has_media:
            return _err("Validation failed: Text can't be blank", 422)
        limit = store["settings"]["max_characters"]
        if status_length(text, spoiler, store["settings"]["characters_reserved_per_url"]) > limit:
            return _err(f"Validation failed: Text character limit of {limit} exceeded", 422)
        return None

    def media_of(p: dict[str, Any]) -> list[dict[str, Any]] | Response:
        ids = p.get("media_ids") or []
        if isinstance(ids, str):
            ids = [ids]
        if len(ids) > store["settings"]["max_media_attachments"]:
            return _err("Cannot attach more than 4 files", 422)
        return [store["media"][str(i)] for i in ids if str(i) in store["media"]]

    def language_of(p: dict[str, Any]) -> str | None:
        lang = p.get("language")
        return lang if isinstance(lang, str) and re.fullmatch(r"[a-z]{2,3}", lang) else None

    def live(sid: str) -> dict[str, Any] | None:
        status = store["statuses"].get(sid)
        return None if status is None or status["_deleted"] else status

    async def create(request: Request) -> Response:
        problem = authorized(request, required=True)
        if problem:
            return problem
        key = request.headers.get("idempotency-key")
        now = time.time()
        if key:
            seen = store["idempotency"].get(key)
            if seen and now - seen[1] < IDEMPOTENCY_TTL_S and live(seen[0]):
                return JSONResponse(_public(store["statuses"][seen[0]]))
        p = await params(request)
        media = media_of(p)
        if isinstance(media, Response):
            return media
        problem = validate(p, has_media=bool(media))
        if problem:
            return problem
        sid = next_id()
        text = str(p.get("status") or "")
        status = {
            "id": sid, "created_at": iso(now), "in_reply_to_id": None, "in_reply_to_account_id": None,
            "sensitive": str(p.get("sensitive", "false")).lower() in ("true", "1"),
            "spoiler_text": str(p.get("spoiler_text") or ""), "visibility": p.get("visibility") or "public",
            "language": language_of(p), "uri": f"{base}/users/{USERNAME}/statuses/{sid}",
            "url": f"{base}/@{USERNAME}/{sid}", "replies_count": 0, "reblogs_count": 0, "favourites_count": 0,
            "edited_at": None, "favourited": False, "reblogged": False, "muted": False, "bookmarked": False,
            "pinned": False, "content": render_content(text), "filtered": [], "reblog": None,
            "application": {"name": "publisher", "website": None}, "media_attachments": media,
            "mentions": [], "tags": [], "emojis": [], "card": None, "poll": None,
            "_text": text, "_deleted": False,
        }
        store["statuses"][sid] = status
        if key:
            store["idempotency"][key] = (sid, now)
        return JSONResponse(_public(status))

    async def one(request: Request) -> Response:
        sid = request.path_params["id"]
        problem = authorized(request, required=request.method != "GET")
        if problem:
            return problem
        status = live(sid)
        if status is None:
            return _err("Record not found", 404)
        if request.method == "GET":
            return JSONResponse(_public(status))
        if request.method == "DELETE":
            status["_deleted"] = True
            return JSONResponse({**_public(status), "text": status["_text"]})
        p = await params(request)  # PUT: an edit
        media = media_of(p) if "media_ids" in p else status["media_attachments"]
        if isinstance(media, Response):
            return media
        problem = validate(p, has_media=bool(media))
        if problem:
            return problem
        text = str(p.get("status") or "")
        status.update(_text=text, content=render_content(text), media_attachments=media, edited_at=iso(time.time()),
                      spoiler_text=str(p.get("spoiler_text") or ""), language=language_of(p) or status["language"])
        return JSONResponse(_public(status))

    async def instance(request: Request) -> Response:
        s = store["settings"]
        host = base.split("://", 1)[-1].split("/", 1)[0]
        return JSONResponse({
            "domain": host, "title": "市安监局 (sandbox)", "version": "4.2.0", "source_url": "https://github.com/mastodon/mastodon",
            "description": "A loopback stand-in of a Mastodon server.", "usage": {"users": {"active_month": 1}},
            "thumbnail": {"url": f"{base}/packs/media/images/preview.png"}, "languages": ["zh", "en"],
            "configuration": {
                "urls": {"streaming": base.replace("http", "ws", 1)},
                "accounts": {"max_featured_tags": 10},
                "statuses": {"max_characters": s["max_characters"], "max_media_attachments": s["max_media_attachments"],
                             "characters_reserved_per_url": s["characters_reserved_per_url"]},
                "media_attachments": {"supported_mime_types": sorted(set(_IMAGE_MAGIC.values())),
                                      "image_size_limit": 16777216, "image_matrix_limit": 33177600},
                "polls": {"max_options": 4, "max_characters_per_option": 50, "min_expiration": 300,
                          "max_expiration": 2629746},
                "translation": {"enabled": False},
            },
            "registrations": {"enabled": False, "approval_required": False, "message": None},
            "contact": {"email": "admin@example.invalid", "account": account()}, "rules": [],
        })

    async def verify_credentials(request: Request) -> Response:
        problem = authorized(request, required=True)
        if problem:
            return problem
        source = {"privacy": "public", "sensitive": False, "language": "zh", "note": "", "fields": []}
        return JSONResponse({**account(), "source": source})

    async def account_statuses(request: Request) -> Response:
        problem = authorized(request, required=False)
        if problem:
            return problem
        if request.path_params["id"] != ACCOUNT_ID:
            return _err("Record not found", 404)
        q = request.query_params
        try:
            limit = max(1, min(int(q.get("limit", "20")), 40))
        except ValueError:
            limit = 20
        rows = sorted((s for s in store["statuses"].values() if not s["_deleted"]),
                      key=lambda s: int(s["id"]), reverse=True)
        if q.get("max_id"):
            rows = [s for s in rows if int(s["id"]) < int(q["max_id"])]
        if q.get("since_id"):
            rows = [s for s in rows if int(s["id"]) > int(q["since_id"])]
        rows = rows[:limit]
        headers = {}
        if rows:
            url = f"{base}/api/v1/accounts/{ACCOUNT_ID}/statuses"
            headers["Link"] = (f'<{url}?limit={limit}&max_id={rows[-1]["id"]}>; rel="next", '
                               f'<{url}?limit={limit}&min_id={rows[0]["id"]}>; rel="prev"')
        return JSONResponse([_public(s) for s in rows], headers=headers)

    async def upload(request: Request) -> Response:
        problem = authorized(request, required=True)
        if problem:
            return problem
        if "multipart/form-data" not in request.headers.get("content-type", ""):
            return _err("Validation failed: File can't be blank", 422)
        form = await request.form(max_part_size=20 * 1024 * 1024)
        file = form.get("file")
        if not isinstance(file, UploadFile):
            return _err("Validation failed: File can't be blank", 422)
        data = await file.read()
        ctype = next((t for magic, t in _IMAGE_MAGIC.items() if data.startswith(magic)), None)
        if ctype is None:
            return _err("Validation failed: File content type is invalid", 422)
        mid = next_id()
        media: dict[str, Any] = {"id": mid, "type": "image", "url": f"{base}/system/media_attachments/{mid}/original",
                                 "preview_url": f"{base}/system/media_attachments/{mid}/small", "remote_url": None,
                                 "text_url": None, "meta": {}, "description": form.get("description") or None,
                                 "blurhash": None}
        store["media"][mid] = media
        return JSONResponse(media)

    async def page(request: Request) -> Response:
        status = live(request.path_params["id"])
        if status is None:
            return HTMLResponse("<!doctype html><title>The page you are looking for isn't here.</title>", 404)
        return HTMLResponse(f"<!doctype html><meta charset=utf-8><title>市安监局 (@{USERNAME})</title>"
                            f"<article>{status['content']}</article>")

    app = Starlette(routes=[
        Route("/api/v1/statuses", create, methods=["POST"]),
        Route("/api/v1/statuses/{id}", one, methods=["GET", "PUT", "DELETE"]),
        Route("/api/v2/instance", instance),
        Route("/api/v1/accounts/verify_credentials", verify_credentials),
        Route("/api/v1/accounts/{id}/statuses", account_statuses),
        Route("/api/v2/media", upload, methods=["POST"]),
        Route(f"/@{USERNAME}/{{id}}", page),
    ])
    limiter = RateLimiter(app, store)

    def render_fault(kind: FaultKind, retry_after: str | None) -> Response:
        headers, _ = limiter.headers_for("fault", spend=False)
        if kind == "unauthorized":
            return _err("The access token is invalid", 401, headers)
        if kind == "rate_limited":
            # Mastodon names the end of the window and never sends Retry-After.
            if retry_after and retry_after.isdigit():
                headers["X-RateLimit-Reset"] = iso(time.time() + int(retry_after))
            headers["X-RateLimit-Remaining"] = "0"
            return _err("Too many requests", 429, headers)
        if retry_after:
            headers["Retry-After"] = retry_after
        status = service.faults.error_status
        return _err("Service Unavailable" if status == 503 else "Internal Server Error", status, headers)

    return limiter, render_fault


def _public(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if not k.startswith("_")}
