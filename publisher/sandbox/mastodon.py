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

import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from publisher.sandbox.core import CREDENTIALS, FaultKind, Service, StandIn
from publisher.sandbox.mastodon_rules import (
    DESCRIPTION_LIMIT,
    SUPPORTED_MIME_TYPES,
    RateLimiter,
    err,
    iso,
    language_of,
    media_json,
    rails_params,
    read_upload,
    render_content,
    shown,
    status_length,
)

ACCOUNT_ID = "109348212345678901"
USERNAME = "bureau"
OTHER_TOKEN = "sandbox-mastodon-other-token"  # another account on the server, for ownership checks
OTHER_ACCOUNT_ID = "109348212345670002"
VISIBILITIES = ("public", "unlisted", "private", "direct")
IDEMPOTENCY_TTL_S = 3600
INVALID_TOKEN = "The access token is invalid"

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


def _account_of(request: Request, *, media: bool = False) -> str | None:
    """The account the bearer token belongs to; the other account's token only reaches the media API."""
    auth = request.headers.get("authorization") or ""
    token = auth[7:].strip() if auth.startswith("Bearer ") else None
    if token == CREDENTIALS["mastodon_token"]:
        return ACCOUNT_ID
    if media and token == OTHER_TOKEN:
        return OTHER_ACCOUNT_ID
    return None


def _refusal(request: Request, *, required: bool) -> Response | None:
    """401 for a token that is not the bureau's; without a token only where one is required."""
    if request.headers.get("authorization") is None and not required:
        return None
    if _account_of(request) is None:
        return err(INVALID_TOKEN, 401)
    return None


class Mastodon(StandIn):
    """The bureau's account on a Mastodon server: statuses, media, idempotency keys and rate windows."""

    def __init__(self, service: Service, base: str) -> None:
        super().__init__(service, base)
        # rack-attack sits in front of every route; its headers also go on the injected faults
        self.limiter = RateLimiter(Starlette(routes=self.routes()), self.store)

    def seed(self) -> None:
        self.store["settings"] = dict(DEFAULT_SETTINGS)
        self.store["statuses"] = {}  # id → status (with private `_` keys)
        self.store["idempotency"] = {}  # key → (status id, time)
        self.store["media"] = {}
        self.store["rate"] = {}
        self.store["seq"] = 0

    def received(self) -> dict[str, Any]:
        return {"statuses": [self.public(s) for s in self.store["statuses"].values() if not s["_deleted"]],
                "media": [{"id": m["id"], "type": m["type"], "content_type": m["_content_type"], "size": m["_size"],
                           "description": m["description"], "processed": m["_polls_left"] == 0,
                           "status_id": m["_status_id"], "account_id": m["_account"]}
                          for m in self.store["media"].values()]}

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/v1/statuses", self.create, methods=["POST"]),
            Route("/api/v1/statuses/{id}", self.status, methods=["GET", "PUT", "DELETE"]),
            Route("/api/v2/instance", self.instance),
            Route("/api/v1/accounts/verify_credentials", self.verify_credentials),
            Route("/api/v1/accounts/{id}/statuses", self.account_statuses),
            Route("/api/v2/media", self.upload, methods=["POST"]),
            Route("/api/v1/media/{id}", self.media, methods=["GET"]),
            Route(f"/@{USERNAME}/{{id}}", self.page),
        ]

    def asgi(self) -> ASGIApp:
        return self.limiter

    # --- state and representations ----------------------------------------------------------

    def public(self, status: dict[str, Any]) -> dict[str, Any]:
        return {**shown(status),
                "media_attachments": [media_json(self.store["media"][i]) for i in status["_media_ids"]]}

    def next_id(self) -> str:
        self.store["seq"] += 1
        return str((int(time.time() * 1000) << 16) + self.store["seq"])

    def live(self, sid: str) -> dict[str, Any] | None:
        status = self.store["statuses"].get(sid)
        return None if status is None or status["_deleted"] else status

    def attach(self, media_ids: list[str], sid: str | None) -> None:
        for mid in media_ids:
            self.store["media"][mid]["_status_id"] = sid

    def account(self) -> dict[str, Any]:
        count = sum(1 for s in self.store["statuses"].values() if not s["_deleted"])
        base = self.base
        return {"id": ACCOUNT_ID, "username": USERNAME, "acct": USERNAME, "display_name": "市安监局",
                "locked": False, "bot": False, "discoverable": True, "group": False,
                "created_at": "2015-01-01T00:00:00.000Z", "note": "<p>市安全生产监督管理局官方账号</p>",
                "url": f"{base}/@{USERNAME}", "uri": f"{base}/users/{USERNAME}",
                "avatar": f"{base}/avatars/original/missing.png", "header": f"{base}/headers/original/missing.png",
                "followers_count": 0, "following_count": 0, "statuses_count": count,
                "last_status_at": None, "emojis": [], "fields": []}

    # --- checks of a status's parameters ----------------------------------------------------

    def validate(self, p: dict[str, Any], *, has_media: bool) -> Response | None:
        if p.get("_invalid"):
            return err("Error occurred while parsing request parameters", 400)
        text = str(p.get("status") or "")
        spoiler = str(p.get("spoiler_text") or "")
        visibility = p.get("visibility")
        if visibility is not None and visibility not in VISIBILITIES:
            return err(f"'{visibility}' is not a valid visibility", 422)
        if not text.strip() and not has_media:
            return err("Validation failed: Text can't be blank", 422)
        settings = self.store["settings"]
        limit = settings["max_characters"]
        if status_length(text, spoiler, settings["characters_reserved_per_url"]) > limit:
            return err(f"Validation failed: Text character limit of {limit} exceeded", 422)
        return None

    def media_of(self, p: dict[str, Any], sid: str | None = None) -> list[str] | Response:
        """`media_ids[]` checked as PostStatusService / UpdateStatusService check them: the ids, in order."""
        ids = p.get("media_ids") or []
        if not isinstance(ids, list):  # `media_ids=1` without [] is no array: Rails' permit drops it
            ids = []
        limit = self.store["settings"]["max_media_attachments"]
        if len(ids) > limit:
            return err(f"Cannot attach more than {limit} files", 422)
        media = self.store["media"]
        wanted = list(dict.fromkeys(str(i) for i in ids))
        found = [i for i in wanted
                 if i in media and media[i]["_account"] == ACCOUNT_ID and media[i]["_status_id"] in (None, sid)]
        missing = [i for i in wanted if i not in found]
        if missing:
            return err(f"Media {', '.join(missing)} not found or already attached to another post", 422)
        if any(media[i]["_polls_left"] for i in found):
            return err("Cannot attach files that have not finished processing. Try again in a moment!", 422)
        return found

    async def checked(self, request: Request, sid: str | None = None) -> tuple[dict[str, Any], list[str]] | Response:
        """A create's or an edit's parameters and media ids, or Mastodon's refusal of them."""
        p = await rails_params(request)
        media = self.media_of(p, sid)
        if isinstance(media, Response):
            return media
        return self.validate(p, has_media=bool(media)) or (p, media)

    # --- statuses ---------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        """POST /api/v1/statuses; a repeated Idempotency-Key within the hour answers the first status."""
        if problem := _refusal(request, required=True):
            return problem
        key = request.headers.get("idempotency-key")
        now = time.time()
        if key:
            seen = self.store["idempotency"].get(key)
            if seen and now - seen[1] < IDEMPOTENCY_TTL_S and self.live(seen[0]):
                return JSONResponse(self.public(self.store["statuses"][seen[0]]))
        checked = await self.checked(request)
        if isinstance(checked, Response):
            return checked
        p, media = checked
        sid, text, base = self.next_id(), str(p.get("status") or ""), self.base
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
        self.store["statuses"][sid] = status
        self.attach(media, sid)
        if key:
            self.store["idempotency"][key] = (sid, now)
        return JSONResponse(self.public(status))

    async def status(self, request: Request) -> Response:
        """GET, PUT (edit) or DELETE /api/v1/statuses/:id; reading needs no token, the others do."""
        if problem := _refusal(request, required=request.method != "GET"):
            return problem
        status = self.live(request.path_params["id"])
        if status is None:
            return err("Record not found", 404)
        if request.method == "GET":
            return JSONResponse(self.public(status))
        if request.method == "DELETE":
            return self.delete(status)
        return await self.edit(request, status)

    def delete(self, status: dict[str, Any]) -> Response:
        status["_deleted"] = True
        answer = {**self.public(status), "text": status["_text"]}
        self.attach(status["_media_ids"], None)  # kept unattached for a while, so a redraft can reuse them
        return JSONResponse(answer)

    async def edit(self, request: Request, status: dict[str, Any]) -> Response:
        """An edit as UpdateStatusService makes it: without media_ids every attachment is detached."""
        checked = await self.checked(request, status["id"])
        if isinstance(checked, Response):
            return checked
        p, media = checked
        text = str(p.get("status") or "")
        self.attach(status["_media_ids"], None)
        self.attach(media, status["id"])
        status.update(_text=text, content=render_content(text), _media_ids=media, edited_at=iso(time.time()),
                      spoiler_text=str(p.get("spoiler_text") or ""), language=language_of(p) or status["language"])
        return JSONResponse(self.public(status))

    async def page(self, request: Request) -> Response:
        status = self.live(request.path_params["id"])
        if status is None:
            return HTMLResponse("<!doctype html><title>The page you are looking for isn't here.</title>", 404)
        return HTMLResponse(f"<!doctype html><meta charset=utf-8><title>市安监局 (@{USERNAME})</title>"
                            f"<article>{status['content']}</article>")

    # --- instance and account ---------------------------------------------------------------

    async def instance(self, request: Request) -> Response:
        s, base = self.store["settings"], self.base
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
            "contact": {"email": "admin@example.invalid", "account": self.account()}, "rules": [],
        })

    async def verify_credentials(self, request: Request) -> Response:
        if problem := _refusal(request, required=True):
            return problem
        source = {"privacy": "public", "sensitive": False, "language": "zh", "note": "", "fields": []}
        return JSONResponse({**self.account(), "source": source})

    async def account_statuses(self, request: Request) -> Response:
        """The account's statuses, newest first, paged by max_id / since_id with a Link header."""
        if problem := _refusal(request, required=False):
            return problem
        if request.path_params["id"] != ACCOUNT_ID:
            return err("Record not found", 404)
        q = request.query_params
        try:
            limit = max(1, min(int(q.get("limit", "20")), 40))
        except ValueError:
            limit = 20
        rows = sorted((s for s in self.store["statuses"].values() if not s["_deleted"]),
                      key=lambda s: int(s["id"]), reverse=True)
        if q.get("max_id"):
            rows = [s for s in rows if int(s["id"]) < int(q["max_id"])]
        if q.get("since_id"):
            rows = [s for s in rows if int(s["id"]) > int(q["since_id"])]
        rows = rows[:limit]
        headers = {}
        if rows:
            url = f"{self.base}/api/v1/accounts/{ACCOUNT_ID}/statuses"
            headers["Link"] = (f'<{url}?limit={limit}&max_id={rows[-1]["id"]}>; rel="next", '
                               f'<{url}?limit={limit}&min_id={rows[0]["id"]}>; rel="prev"')
        return JSONResponse([self.public(s) for s in rows], headers=headers)

    # --- media ------------------------------------------------------------------------------

    async def upload(self, request: Request) -> Response:
        """POST /api/v2/media: 200 when processed at once, 202 while processed in the background."""
        owner = _account_of(request, media=True)
        if owner is None:
            return err(INVALID_TOKEN, 401)
        read = await read_upload(request, self.store["settings"]["image_size_limit"])
        if isinstance(read, Response):
            return read
        data, ctype, description = read
        # an animated GIF becomes a looping video (gifv), a larger format that is always processed in the background
        kind = "gifv" if ctype == "image/gif" and b"NETSCAPE2.0" in data else "image"
        background = kind == "gifv" or bool(self.store["settings"]["media_async"])
        mid, base = self.next_id(), self.base
        media: dict[str, Any] = {
            "id": mid, "type": kind, "url": f"{base}/system/media_attachments/{mid}/original",
            "preview_url": f"{base}/system/media_attachments/{mid}/small", "remote_url": None, "text_url": None,
            "meta": {}, "description": description, "blurhash": None,
            "_account": owner, "_content_type": ctype, "_size": len(data), "_status_id": None,
            "_polls_left": max(0, int(self.store["settings"]["media_processing_polls"])) if background else 0,
        }
        self.store["media"][mid] = media
        return JSONResponse(media_json(media), status_code=202 if media["_polls_left"] else 200)

    async def media(self, request: Request) -> Response:
        """GET /api/v1/media/:id: 206 while processing, 200 when done, 404 unless the owner's and unattached."""
        owner = _account_of(request, media=True)
        if owner is None:
            return err(INVALID_TOKEN, 401)
        media = self.store["media"].get(request.path_params["id"])
        if media is None or media["_account"] != owner or media["_status_id"] is not None:
            return err("Record not found", 404)
        if media["_polls_left"]:
            answer = JSONResponse(media_json(media), status_code=206)
            media["_polls_left"] -= 1  # processing goes on in the background; it is done after so many looks
            return answer
        return JSONResponse(media_json(media))

    def render_fault(self, kind: FaultKind, retry_after: str | None) -> Response:
        headers, _ = self.limiter.headers_for("fault", spend=False)
        if kind == "unauthorized":
            return err(INVALID_TOKEN, 401, headers)
        if kind == "rate_limited":
            # Mastodon names the end of the window and never sends Retry-After.
            if retry_after and retry_after.isdigit():
                headers["X-RateLimit-Reset"] = iso(time.time() + int(retry_after))
            headers["X-RateLimit-Remaining"] = "0"
            return err("Too many requests", 429, headers)
        if retry_after:
            headers["Retry-After"] = retry_after
        status = self.service.faults.error_status
        return err("Service Unavailable" if status == 503 else "Internal Server Error", status, headers)
