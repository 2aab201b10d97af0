"""Mastodon's rules, as the stand-in applies them: Rails' reading of parameters, the media type from a
file's first bytes and the checks of an upload, Rails' number_to_human_size in messages, the status
length (every URL counts as 23 characters, twitter-text), the formatter's HTML for plain text, the
`{"error": …}` body, and rack-attack's rate limits with their X-RateLimit headers. Apart from
publisher/sandbox/mastodon.py, which keeps the server's state and routes.
"""

from __future__ import annotations

import html
import json
import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from publisher.sandbox.core import fold_arrays

MEDIA_PATH_RE = re.compile(r"/api/v\d+/media$")
SUPPORTED_MIME_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
DESCRIPTION_LIMIT = 1500
MAX_BODY_BYTES = 99 * 1024 * 1024  # the reverse proxy's client_max_body_size; beyond it, 413

# twitter-text's URL extraction, reduced: a scheme, then URL characters (a CJK character ends it).
URL_RE = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")


def sniff(data: bytes) -> str | None:
    """The file's type from its first bytes (Paperclip trusts the content, not the declared type)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def human_size(n: int) -> str:
    """Rails' number_to_human_size, enough for the limit in a validation message."""
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} Bytes"


def status_length(text: str, spoiler_text: str = "", per_url: int = 23) -> int:
    """Mastodon's count: spoiler text plus text, every URL as `per_url` characters."""
    return len(spoiler_text) + len(URL_RE.sub("x" * per_url, text or ""))


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def shown(record: dict[str, Any]) -> dict[str, Any]:
    """A status or a media attachment without the stand-in's private `_` keys."""
    return {k: v for k, v in record.items() if not k.startswith("_")}


def media_json(media: dict[str, Any]) -> dict[str, Any]:
    """A MediaAttachment as the API shows it: `url` stays null until processing is done."""
    out = shown(media)
    if media["_polls_left"]:
        out["url"] = None
    return out


def err(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def rails_params(request: Request) -> dict[str, Any]:
    """Form (urlencoded or multipart) or JSON, as Rails reads them; `media_ids[]` becomes a list.
    A body Rails cannot parse comes back as `{"_invalid": True}`."""
    ctype = request.headers.get("content-type", "")
    if "json" in ctype:
        try:
            data = json.loads(await request.body() or b"{}")
        except ValueError:
            return {"_invalid": True}
        return data if isinstance(data, dict) else {"_invalid": True}
    if "multipart" in ctype:
        return fold_arrays((await request.form()).multi_items())
    raw = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return {(k[:-2] if k.endswith("[]") else k): (v if k.endswith("[]") else v[-1]) for k, v in raw.items()}


def language_of(params: dict[str, Any]) -> str | None:
    """An ISO 639 code as given, or None (Mastodon then guesses, which the stand-in does not)."""
    lang = params.get("language")
    return lang if isinstance(lang, str) and re.fullmatch(r"[a-z]{2,3}", lang) else None


async def read_upload(request: Request, size_limit: int) -> tuple[bytes, str, str | None] | Response:
    """The `file` of POST /api/v2/media with its sniffed type and its description, or the refusal."""
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
    if len(data) >= size_limit:
        return err(f"Validation failed: File file size must be less than {human_size(size_limit)}", 422)
    description = form.get("description")
    description = description if isinstance(description, str) and description else None
    if description is not None and len(description) > DESCRIPTION_LIMIT:
        return err(f"Validation failed: Description is too long (maximum is {DESCRIPTION_LIMIT} characters)", 422)
    return data, ctype, description


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

    def headers_for(self, key: str, *, spend: bool, throttle: str = "") -> tuple[dict[str, str], bool]:
        """The window's headers for `key` under a throttle ("" for all API calls, "media_" for uploads)."""
        settings = self.store["settings"]
        period, limit = settings[f"{throttle}rate_period_s"], settings[f"{throttle}rate_limit"]
        now = time.time()
        window = int(now // period)
        counts: dict[tuple[str, str, int], int] = self.store["rate"]
        if spend:
            counts[(throttle, key, window)] = counts.get((throttle, key, window), 0) + 1
        used = counts.get((throttle, key, window), 0)
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
        if not over and scope["method"] == "POST" and MEDIA_PATH_RE.search(scope["path"]) and "authorization" in hdrs:
            # rack-attack's throttle_api_media: uploads per user, apart from the general budget
            media_headers, over = self.headers_for(key, spend=True, throttle="media_")
            if over:
                headers = media_headers
        if over:
            await err("Too many requests", 429, headers)(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + [
                    (k.lower().encode(), v.encode()) for k, v in headers.items()]
            await send(message)

        await self.app(scope, receive, send_with_headers)
