"""Mastodon through its client REST API: post, edit, delete and read back statuses.

The text is the title, the summary and the bureau_site link, fitted to the instance's
`max_characters` as Mastodon counts (every URL as `characters_reserved_per_url`, read once from
`/api/v2/instance`). Every post carries `Idempotency-Key`, so a resend after a lost answer gets
the first status back. A 429 names the end of the window in `X-RateLimit-Reset` (ISO 8601), not
in `Retry-After`; the wait is computed against the injected clock.
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from typing import Any, Literal

import httpx
import structlog
from pydantic import SecretStr

from channels.base import (
    Channel,
    ChannelOptions,
    PermanentError,
    RateLimited,
    Receipt,
    TransientError,
    error_for_status,
    parse_retry_after,
    transport_error,
)
from channels.render import longest
from publisher.items import Revision

log = structlog.get_logger()

DEFAULT_MAX_CHARACTERS = 500
DEFAULT_URL_CHARACTERS = 23
# twitter-text's URL extraction as Mastodon uses it, reduced: a CJK character or a space ends a URL.
URL_RE = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_TAG_RE = re.compile(r"<[^>]+>")


def mastodon_length(text: str, per_url: int = DEFAULT_URL_CHARACTERS) -> int:
    """Length as Mastodon counts it: characters, every URL as `per_url`."""
    return len(URL_RE.sub("x" * per_url, text))


def plain_text(content: str) -> str:
    """A status's HTML `content` as the text a reader sees."""
    text = re.sub(r"</p>\s*<p>", "\n\n", content)
    return html.unescape(_TAG_RE.sub("", text.replace("<br />", "\n").replace("<br>", "\n"))).strip()


class Mastodon(Channel):
    """The bureau's microblog account on a Mastodon server."""

    type_name = "mastodon"
    default_rate_limit = "300/5m"

    class Options(ChannelOptions):
        base_url: str
        access_token: SecretStr
        visibility: Literal["public", "unlisted", "private", "direct"] = "public"
        language: str = "zh"

    options: Options

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._limits: tuple[int, int] | None = None
        self._account_id: str | None = None

    # --- rendering ---------------------------------------------------------------------------

    async def limits(self) -> tuple[int, int]:
        """(max_characters, characters_reserved_per_url) of the instance, read once."""
        if self._limits is None:
            try:
                body = await self._call("GET", "/api/v2/instance", auth=False)
                conf = body["configuration"]["statuses"]
                self._limits = (int(conf["max_characters"]),
                                int(conf.get("characters_reserved_per_url", DEFAULT_URL_CHARACTERS)))
            except (PermanentError, KeyError, TypeError, ValueError) as exc:
                # An older server without v2/instance: Mastodon's own defaults, not cached.
                log.warning("mastodon.instance_limits_unknown", channel=self.name, error=str(exc)[:200])
                return DEFAULT_MAX_CHARACTERS, DEFAULT_URL_CHARACTERS
        return self._limits

    def render(self, rev: Revision, max_chars: int = DEFAULT_MAX_CHARACTERS,
               per_url: int = DEFAULT_URL_CHARACTERS) -> str:
        """Title, summary and link (if any), cut at a character boundary to fit; the link is never cut."""
        title = " ".join(rev.title.split())
        summary = rev.short_summary.strip()
        if " ".join(summary.split()) == title:
            summary = ""
        tail = f"\n\n{rev.link}" if rev.link else ""

        def ok(text: str) -> bool:
            return mastodon_length(text, per_url) <= max_chars

        full = title + (f"\n\n{summary}" if summary else "") + tail
        if ok(full):
            return full
        if ok(f"{title}\n\n…{tail}"):
            n = longest(lambda n: ok(f"{title}\n\n{summary[:n].rstrip()}…{tail}"), summary)
            return f"{title}\n\n{summary[:n].rstrip()}…{tail}" if n else title + tail
        n = longest(lambda n: ok(f"{title[:n]}…{tail}"), title)
        return f"{title[:n]}…{tail}"

    async def _payload(self, rev: Revision) -> dict[str, Any]:
        max_chars, per_url = await self.limits()
        return {"status": self.render(rev, max_chars, per_url), "visibility": self.options.visibility,
                "language": self.options.language}

    # --- the five calls ----------------------------------------------------------------------

    async def publish(self, rev: Revision) -> Receipt:
        body = await self._call("POST", "/api/v1/statuses", json=await self._payload(rev),
                                headers={"Idempotency-Key": rev.idempotency_key})
        receipt = self._receipt(body)
        log.info("mastodon.status_created", channel=self.name, item=rev.item_id, status_id=receipt.remote_id)
        return receipt

    async def update(self, rev: Revision, receipt: Receipt) -> Receipt:
        payload = await self._payload(rev)
        payload.pop("visibility")  # an edit cannot change visibility
        try:
            body = await self._call("PUT", f"/api/v1/statuses/{receipt.remote_id}", json=payload)
        except _Missing as exc:
            raise PermanentError(
                f"the Mastodon status {receipt.remote_id} is gone (deleted on the server?); re-queue the item as a "
                "new post if it should be there", status=exc.status, remote=exc.remote) from None
        log.info("mastodon.status_edited", channel=self.name, item=rev.item_id, status_id=receipt.remote_id)
        return self._receipt(body)

    async def retract(self, receipt: Receipt) -> None:
        try:
            await self._call("DELETE", f"/api/v1/statuses/{receipt.remote_id}")
        except _Missing:
            log.info("mastodon.already_gone", channel=self.name, status_id=receipt.remote_id)
            return
        log.info("mastodon.status_deleted", channel=self.name, status_id=receipt.remote_id)

    async def find(self, rev: Revision) -> Receipt | None:
        if self._account_id is None:
            me = await self._call("GET", "/api/v1/accounts/verify_credentials")
            self._account_id = str(me["id"])
        statuses = await self._call("GET", f"/api/v1/accounts/{self._account_id}/statuses", params={"limit": 40})
        title = " ".join(rev.title.split())
        for status in statuses if isinstance(statuses, list) else []:
            content = status.get("content") or ""
            if rev.link:
                hit = f'href="{html.escape(rev.link)}"' in content or rev.link in plain_text(content)
            else:
                hit = plain_text(content).startswith(title[:40])
            if hit:
                return self._receipt(status)
        return None

    async def verify(self, receipt: Receipt) -> bool:
        try:
            status = await self._call("GET", f"/api/v1/statuses/{receipt.remote_id}")
        except _Missing:
            return False
        url = status.get("url") or receipt.url
        if not url:
            return True
        try:
            page = await self.http.get(url)  # the public page, fetched without the token
        except httpx.HTTPError as exc:
            raise transport_error(exc, "Mastodon status page") from exc
        if page.status_code in (404, 410):
            return False
        if page.status_code != 200:
            raise error_for_status(page, f"Mastodon status page answered HTTP {page.status_code}", now=self.clock.now())
        return True

    # --- the wire ----------------------------------------------------------------------------

    def _receipt(self, status: dict[str, Any]) -> Receipt:
        if not status.get("id"):
            raise TransientError(f"Mastodon answered without a status id: {str(status)[:200]}")
        return Receipt(remote_id=str(status["id"]), url=status.get("url"), extra={"uri": status.get("uri")})

    async def _call(self, method: str, path: str, *, auth: bool = True, headers: dict[str, str] | None = None,
                    **kw: Any) -> Any:
        url = self.options.base_url.rstrip("/") + path
        sent = dict(headers or {})
        if auth:
            sent["Authorization"] = f"Bearer {self.options.access_token.get_secret_value()}"
        try:
            resp = await self.http.request(method, url, headers=sent, **kw)
        except httpx.HTTPError as exc:
            raise transport_error(exc, f"Mastodon {method} {path}") from exc
        if resp.status_code == 200:
            try:
                return resp.json()
            except ValueError:
                raise TransientError(f"Mastodon {path} answered 200 with an unreadable body",
                                     status=200, remote=resp.text[:500]) from None
        raise self._error(resp, f"{method} {path}")

    def _error(self, resp: httpx.Response, what: str) -> Exception:
        status = resp.status_code
        try:
            message = str(resp.json().get("error"))
        except (ValueError, AttributeError):
            message = resp.text[:200]
        log.warning("mastodon.refused", channel=self.name, call=what, http_status=status, error=message[:200])
        now = self.clock.now()
        if status == 429:
            wait = _until(resp.headers.get("X-RateLimit-Reset"), now)
            if wait is None:
                wait = parse_retry_after(resp.headers.get("Retry-After"), now)
            return RateLimited(f"Mastodon rate limit reached ({message}); waiting for the window to reset",
                               status=status, remote=resp.text[:500], retry_after=wait)
        if status == 401:
            return PermanentError(
                f"Mastodon refused the access token ({message}); create a new token for the account (Preferences → "
                "Development, scopes read and write:statuses), set it as this channel's access_token "
                "(the environment variable config.yaml names for it) and re-queue", status=status, remote=resp.text[:500])
        if status == 404:
            return _Missing(f"Mastodon {what}: {message}", status=status, remote=resp.text[:500])
        if status == 422:
            return PermanentError(f"Mastodon refused the status: {message}", status=status, remote=resp.text[:500])
        return error_for_status(resp, f"Mastodon {what} failed with HTTP {status}: {message}", now=now)


class _Missing(PermanentError):
    """The status does not exist (any more)."""


def _until(reset: str | None, now: datetime) -> float | None:
    """Seconds from `now` to an ISO 8601 `X-RateLimit-Reset`."""
    if not reset:
        return None
    try:
        when = datetime.fromisoformat(reset.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


__all__ = ["Mastodon", "mastodon_length", "plain_text"]
