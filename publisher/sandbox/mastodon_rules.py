"""Mastodon's rules, as the stand-in applies them: the media type from a file's first bytes, Rails'
number_to_human_size in messages, the status length (every URL counts as 23 characters, twitter-text),
the formatter's HTML for plain text, the `{"error": …}` body, and rack-attack's rate limits with their
X-RateLimit headers. Apart from publisher/sandbox/mastodon.py, which keeps the server's state and routes.
"""

from __future__ import annotations

import html
import re
import time
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

MEDIA_PATH_RE = re.compile(r"/api/v\d+/media$")

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


def err(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
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
