"""Stand-in of a Mastodon server's client API (statuses, accounts, instance, media).

Built from Mastodon's API documents and its source: `POST /api/v1/statuses` (form or JSON) with
`Authorization: Bearer` and an optional `Idempotency-Key` (a repeat within an hour answers the
first status again); the status length is counted as `StatusLengthValidator` counts it (spoiler
text plus text, every URL 23 characters); statuses are read, edited (`PUT`) and deleted (`DELETE`)
by id. Every response carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
`X-RateLimit-Reset` (ISO 8601), with 300 requests per 5-minute window; a throttled request gets
429 `{"error": "Too many requests"}` with those headers and no `Retry-After`. Errors are
`{"error": "…"}`. Each status has a public page under `{base}/@bureau/<id>`.

Media follow `methods/media` and Mastodon's source: `POST /api/v2/media` (multipart, `file` required,
optional `description` up to 1500 characters) answers 200 with the MediaAttachment when it was processed
at once, or 202 with `"url": null` while it is processed in the background (animated GIFs, which become
`gifv`, always; every upload when the `media_async` setting is on). `GET /api/v1/media/:id` answers 206
while processing, 200 when done, 404 for an id that is unknown, another account's, or already attached.
The file's type is read from its bytes, as Paperclip does; a type outside `supported_mime_types` or a
file not smaller than `image_size_limit` is refused with 422. Uploads have their own throttle (30 per 30
minutes per account). A status takes `media_ids[]` (at most `max_media_attachments`), each the account's
own, unattached (or, on an edit, attached to that status) and processed, else 422 with Mastodon's
message; an edit without `media_ids` detaches every picture, as `UpdateStatusService` does.

A second account (token `OTHER_TOKEN`) exists only to upload media that the bureau's account does not own.

Settings a test may change live in `service.store["settings"]` (see `DEFAULT_SETTINGS`).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from publisher.sandbox.core import FaultKind, Service
from publisher.sandbox.mastodon_rules import (
    RateLimiter,
    err,
    human_size,
    iso,
    render_content,
    sniff,
    status_length,
)

ACCOUNT_ID = "109348212345678901"
USERNAME = "bureau"
OTHER_TOKEN = "sandbox-mastodon-other-token"  # another account on the server, for ownership checks
OTHER_ACCOUNT_ID = "109348212345670002"
VISIBILITIES = ("public", "unlisted", "private", "direct")
IDEMPOTENCY_TTL_S = 3600

DEFAULT_SETTINGS: dict[str, Any] = {
    "max_characters": 500,
    "characters_reserved_per_url": 23,
    "max_media_attachments": 4,
    "image_size_limit": 16 * 1024 * 1024,  # bytes; a file must be smaller than this
    "media_async": False,  # True: every upload answers 202 and is processed in the background
    "media_processing_polls": 1,  # while processing: GETs of /api/v1/media/:id answered 206 before it is ready
    "rate_limit": 300,  # requests per window, per token (or per address when anonymous)
    "rate_period_s": 300,
    "media_rate_limit": 30,  # uploads per window, per token (rack-attack's throttle_api_media)
    "media_rate_period_s": 1800,
}
SUPPORTED_MIME_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
DESCRIPTION_LIMIT = 1500
MAX_BODY_BYTES = 99 * 1024 * 1024  # the reverse proxy's client_max_body_size; beyond it, 413

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

    def received() -> dict[str, Any]:
        return {"statuses": [public(s) for s in store["statuses"].values() if not s["_deleted"]],
                "media": [{"id": m["id"], "type": m["type"], "content_type": m["_content_type"], "size": m["_size"],
                           "description": m["description"], "processed": m["_polls_left"] == 0,
                           "status_id": m["_status_id"], "account_id": m["_account"]} for m in store["media"].values()]}

    service.received = received  # type: ignore[method-assign]

    def account_of(request: Request, *, media: bool = False) -> str | None:
        """The account the bearer token belongs to; the other account's token only reaches the media API."""
        from publisher.sandbox import CREDENTIALS  # the package imports this module lazily

        auth = request.headers.get("authorization") or ""
        token = auth[7:].strip() if auth.startswith("Bearer ") else None
        if token == CREDENTIALS["mastodon_token"]:
            return ACCOUNT_ID
        if media and token == OTHER_TOKEN:
            return OTHER_ACCOUNT_ID
        return None

    def authorized(request: Request, *, required: bool) -> Response | None:
        if request.headers.get("authorization") is None and not required:
            return None
        if account_of(request) is None:
            return err("The access token is invalid", 401)
        return None

    def media_json(media: dict[str, Any]) -> dict[str, Any]:
        """A MediaAttachment as the API shows it: `url` stays null until processing is done."""
        out = {k: v for k, v in media.items() if not k.startswith("_")}
        if media["_polls_left"]:
            out["url"] = None
        return out

    def public(status: dict[str, Any]) -> dict[str, Any]:
        return {**_public(status), "media_attachments": [media_json(store["media"][i]) for i in status["_media_ids"]]}

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
            return err("Error occurred while parsing request parameters", 400)
        text = str(p.get("status") or "")
        spoiler = str(p.get("spoiler_text") or "")
        visibility = p.get("visibility")
        if visibility is not None and visibility not in VISIBILITIES:
            return err(f"'{visibility}' is not a valid visibility", 422)
        if not text.strip() and not has_media:
            return err("Validation failed: Text can't be blank", 422)
        limit = store["settings"]["max_characters"]
        if status_length(text, spoiler, store["settings"]["characters_reserved_per_url"]) > limit:
            return err(f"Validation failed: Text character limit of {limit} exceeded", 422)
        return None

    def media_of(p: dict[str, Any], sid: str | None = None) -> list[str] | Response:
        """`media_ids[]` checked as PostStatusService / UpdateStatusService check them: the ids, in order."""
        ids = p.get("media_ids") or []
        if not isinstance(ids, list):  # `media_ids=1` without [] is no array: Rails' permit drops it
            ids = []
        limit = store["settings"]["max_media_attachments"]
        if len(ids) > limit:
            return err(f"Cannot attach more than {limit} files", 422)
        wanted = list(dict.fromkeys(str(i) for i in ids))
        found = [i for i in wanted if i in store["media"] and store["media"][i]["_account"] == ACCOUNT_ID
                 and store["media"][i]["_status_id"] in (None, sid)]
        missing = [i for i in wanted if i not in found]
        if missing:
            return err(f"Media {', '.join(missing)} not found or already attached to another post", 422)
        if any(store["media"][i]["_polls_left"] for i in found):
            return err("Cannot attach files that have not finished processing. Try again in a moment!", 422)
        return found

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
                return JSONResponse(public(store["statuses"][seen[0]]))
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
            "application": {"name": "publisher", "website": None}, "media_attachments": [],
            "mentions": [], "tags": [], "emojis": [], "card": None, "poll": None,
            "_text": text, "_deleted": False, "_media_ids": media,
        }
        store["statuses"][sid] = status
        for mid in media:
            store["media"][mid]["_status_id"] = sid
        if key:
            store["idempotency"][key] = (sid, now)
        return JSONResponse(public(status))

    async def one(request: Request) -> Response:
        sid = request.path_params["id"]
        problem = authorized(request, required=request.method != "GET")
        if problem:
            return problem
        status = live(sid)
        if status is None:
            return err("Record not found", 404)
        if request.method == "GET":
            return JSONResponse(public(status))
        if request.method == "DELETE":
            status["_deleted"] = True
            shown = {**public(status), "text": status["_text"]}
            for mid in status["_media_ids"]:  # kept unattached for a while, so a redraft can reuse them
                store["media"][mid]["_status_id"] = None
            return JSONResponse(shown)
        p = await params(request)  # PUT: an edit; without media_ids every attachment is detached
        media = media_of(p, sid)
        if isinstance(media, Response):
            return media
        problem = validate(p, has_media=bool(media))
        if problem:
            return problem
        text = str(p.get("status") or "")
        for mid in status["_media_ids"]:
            store["media"][mid]["_status_id"] = None
        for mid in media:
            store["media"][mid]["_status_id"] = sid
        status.update(_text=text, content=render_content(text), _media_ids=media, edited_at=iso(time.time()),
                      spoiler_text=str(p.get("spoiler_text") or ""), language=language_of(p) or status["language"])
        return JSONResponse(public(status))

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
                "media_attachments": {"supported_mime_types": list(SUPPORTED_MIME_TYPES),
                                      "description_limit": DESCRIPTION_LIMIT, "image_size_limit": s["image_size_limit"],
                                      "image_matrix_limit": 33177600},
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
            return err("Record not found", 404)
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
        return JSONResponse([public(s) for s in rows], headers=headers)

    async def upload(request: Request) -> Response:
        owner = account_of(request, media=True)
        if owner is None:
            return err("The access token is invalid", 401)
        try:
            length = int(request.headers.get("content-length") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY_BYTES:  # the reverse proxy refuses it before Mastodon sees it
            return HTMLResponse("<html><head><title>413 Request Entity Too Large</title></head></html>", 413)
        if "multipart/form-data" not in request.headers.get("content-type", ""):
            return err("Validation failed: File can't be blank", 422)
        try:
            form = await request.form(max_part_size=MAX_BODY_BYTES)
        except MultiPartException:
            return err("Error occurred while parsing request parameters", 400)
        file = form.get("file")
        if not isinstance(file, UploadFile):
            return err("Validation failed: File can't be blank", 422)
        data = await file.read()
        ctype = sniff(data)
        if ctype not in SUPPORTED_MIME_TYPES:
            return err("Validation failed: File content type is invalid, File is invalid", 422)
        limit = store["settings"]["image_size_limit"]
        if len(data) >= limit:
            return err(f"Validation failed: File file size must be less than {human_size(limit)}", 422)
        description = form.get("description")
        description = description if isinstance(description, str) and description else None
        if description is not None and len(description) > DESCRIPTION_LIMIT:
            return err(f"Validation failed: Description is too long (maximum is {DESCRIPTION_LIMIT} characters)", 422)
        # an animated GIF becomes a looping video (gifv), a larger format that is always processed in the background
        kind = "gifv" if ctype == "image/gif" and b"NETSCAPE2.0" in data else "image"
        background = kind == "gifv" or bool(store["settings"]["media_async"])
        mid = next_id()
        media: dict[str, Any] = {
            "id": mid, "type": kind, "url": f"{base}/system/media_attachments/{mid}/original",
            "preview_url": f"{base}/system/media_attachments/{mid}/small", "remote_url": None, "text_url": None,
            "meta": {}, "description": description, "blurhash": None,
            "_account": owner, "_content_type": ctype, "_size": len(data), "_status_id": None,
            "_polls_left": max(0, int(store["settings"]["media_processing_polls"])) if background else 0,
        }
        store["media"][mid] = media
        return JSONResponse(media_json(media), status_code=202 if media["_polls_left"] else 200)

    async def media_one(request: Request) -> Response:
        owner = account_of(request, media=True)
        if owner is None:
            return err("The access token is invalid", 401)
        media = store["media"].get(request.path_params["id"])
        if media is None or media["_account"] != owner or media["_status_id"] is not None:
            return err("Record not found", 404)
        if media["_polls_left"]:
            answer = JSONResponse(media_json(media), status_code=206)
            media["_polls_left"] -= 1  # processing goes on in the background; it is done after so many looks
            return answer
        return JSONResponse(media_json(media))

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
        Route("/api/v1/media/{id}", media_one, methods=["GET"]),
        Route(f"/@{USERNAME}/{{id}}", page),
    ])
    limiter = RateLimiter(app, store)

    def render_fault(kind: FaultKind, retry_after: str | None) -> Response:
        headers, _ = limiter.headers_for("fault", spend=False)
        if kind == "unauthorized":
            return err("The access token is invalid", 401, headers)
        if kind == "rate_limited":
            # Mastodon names the end of the window and never sends Retry-After.
            if retry_after and retry_after.isdigit():
                headers["X-RateLimit-Reset"] = iso(time.time() + int(retry_after))
            headers["X-RateLimit-Remaining"] = "0"
            return err("Too many requests", 429, headers)
        if retry_after:
            headers["Retry-After"] = retry_after
        status = service.faults.error_status
        return err("Service Unavailable" if status == 503 else "Internal Server Error", status, headers)

    return limiter, render_fault


def _public(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if not k.startswith("_")}
