"""Mastodon through its client REST API: post, edit, delete and read back statuses.

The text is the title, the summary and the bureau_site link, fitted to the instance's
`max_characters` as Mastodon counts (every URL as `characters_reserved_per_url`, read once from
`/api/v2/instance`). Every post carries `Idempotency-Key`, so a resend after a lost answer gets
the first status back. A 429 names the end of the window in `X-RateLimit-Reset` (ISO 8601), not
in `Retry-After`; the wait is computed against the injected clock.

Pictures (channels/mastodon_media.py): the item's pictures are uploaded first, then named in the status's
`media_ids`. Every send uploads afresh: a resend after a lost answer leaves unattached
media behind (the server clears those), while `Idempotency-Key` still gives back the first status, with
its pictures. An edit names the pictures again; Mastodon detaches any an edit does not name.
"""


from __future__ import annotations

import html
import re
from collections.abc import Collection
from datetime import datetime
from typing import Any, Literal

import httpx
import structlog
from pydantic import SecretStr

from channels import mastodon_media
from channels.base import ChannelError, ChannelOptions, PermanentError, Receipt, TransientError
from channels.http import HttpChannel, RemoteSaid
from channels.mastodon_media import DEFAULT_MAX_CHARACTERS, DEFAULT_URL_CHARACTERS, InstanceLimits
from channels.render import longest
from publisher.model import Revision

log = structlog.get_logger()

# twitter-text's URL extraction as Mastodon uses it, reduced: a CJK character or a space ends a URL.
URL_RE = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_TAG_RE = re.compile(r"<[^>]+>")
NOT_READY = "not finished processing"  # Mastodon's 422 for media still processing: worth another try
TOKEN_SCOPES = "read, write:statuses and write:media"


def mastodon_length(text: str, per_url: int = DEFAULT_URL_CHARACTERS) -> int:
    """Length as Mastodon counts it: characters, every URL as `per_url`."""
    return len(URL_RE.sub("x" * per_url, text))


def plain_text(content: str) -> str:
    """A status's HTML `content` as the text a reader sees."""
    text = re.sub(r"</p>\s*<p>", "\n\n", content)
    return html.unescape(_TAG_RE.sub("", text.replace("<br />", "\n").replace("<br>", "\n"))).strip()


class Mastodon(HttpChannel):
    """The bureau's microblog account on a Mastodon server."""

    type_name = "mastodon"
    default_rate_limit = "300/5m"
    service = "Mastodon"
    url_option = "base_url"
    error_message_field = "error"  # {"error": "…"}
    unreadable_answer = TransientError

    class Options(ChannelOptions):
        base_url: str
        access_token: SecretStr
        visibility: Literal["public", "unlisted", "private", "direct"] = "public"
        language: str = "zh"
        with_pictures: bool = True  # the JPEG/PNG/GIF/WebP attachments go along as the status's media

    options: Options

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._limits: InstanceLimits | None = None
        self._account_id: str | None = None

    # --- rendering ---------------------------------------------------------------------------

    async def limits(self) -> tuple[int, int]:
        """(max_characters, characters_reserved_per_url) of the instance, read once."""
        limits = await self.instance_limits()
        return limits.max_characters, limits.per_url

    async def instance_limits(self) -> InstanceLimits:
        """The instance's status and media limits, read once."""
        if self._limits is None:
            try:
                self._limits = InstanceLimits.from_instance(
                    await self._call("GET", "/api/v2/instance", what="read the instance's limits", auth=False))
            except (PermanentError, KeyError, TypeError, ValueError, AttributeError) as exc:
                # An older server without v2/instance: Mastodon's own defaults, not cached.
                log.warning("mastodon.instance_limits_unknown", channel=self.name, error=str(exc)[:200])
                return InstanceLimits()
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

    async def _media_ids(self, rev: Revision) -> list[str] | None:
        """Upload the revision's pictures and wait until each is processed; None when pictures are off."""
        if not self.options.with_pictures:
            return None
        limits = await self.instance_limits()
        return [await mastodon_media.upload(self, rev, att, limits)
                for att in mastodon_media.pictures(self, rev, limits)]

    # --- the five calls ----------------------------------------------------------------------

    async def publish(self, rev: Revision) -> Receipt:
        payload = await self._payload(rev)
        media_ids = await self._media_ids(rev)
        if media_ids:
            payload["media_ids"] = media_ids
        # Fresh media ids on a resend do not matter: the key gives back the first status, pictures and all.
        body = await self._call("POST", "/api/v1/statuses", what=f"post the status of {rev.item_id}", json=payload,
                                headers={"Idempotency-Key": rev.idempotency_key})
        receipt = self._receipt(body)
        log.info("mastodon.status_created", channel=self.name, item_id=rev.item_id, status_id=receipt.remote_id,
                 media=len(media_ids or ()))
        return receipt

    async def update(self, rev: Revision, receipt: Receipt) -> Receipt:
        payload = await self._payload(rev)
        payload.pop("visibility")  # an edit cannot change visibility
        media_ids = await self._media_ids(rev)
        if media_ids is not None:
            payload["media_ids"] = media_ids  # an edit that names no media detaches them all
        try:
            body = await self._call("PUT", f"/api/v1/statuses/{receipt.remote_id}",
                                    what=f"edit the status of {rev.item_id}", json=payload)
        except _Missing as exc:
            raise PermanentError(
                f"the Mastodon status {receipt.remote_id} is gone (deleted on the server?); re-queue the item as a "
                "new post if it should be there", status=exc.status, remote=exc.remote) from None
        log.info("mastodon.status_edited", channel=self.name, item_id=rev.item_id, status_id=receipt.remote_id)
        return self._receipt(body)

    async def retract(self, receipt: Receipt) -> None:
        try:
            await self._call("DELETE", f"/api/v1/statuses/{receipt.remote_id}", what="delete the status")
        except _Missing:
            log.info("mastodon.already_gone", channel=self.name, status_id=receipt.remote_id)
            return
        log.info("mastodon.status_deleted", channel=self.name, status_id=receipt.remote_id)

    async def find(self, rev: Revision) -> Receipt | None:
        if self._account_id is None:
            me = await self._call("GET", "/api/v1/accounts/verify_credentials", what="read the account")
            self._account_id = str(me["id"])
        statuses = await self._call("GET", f"/api/v1/accounts/{self._account_id}/statuses",
                                    what="read the account's statuses", params={"limit": 40})
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
            status = await self._call("GET", f"/api/v1/statuses/{receipt.remote_id}", what="read the status back")
        except _Missing:
            return False
        url = status.get("url") or receipt.url
        return True if not url else await self.page_is_live(url, what="open the status page")

    # --- the wire ----------------------------------------------------------------------------

    def _receipt(self, status: dict[str, Any]) -> Receipt:
        if not status.get("id"):
            raise TransientError(f"Mastodon answered without a status id: {str(status)[:200]}")
        return Receipt(remote_id=str(status["id"]), url=status.get("url"), extra={"uri": status.get("uri")})

    async def _call(self, method: str, path: str, *, what: str, **kw: Any) -> Any:
        return self.json_body(await self.send(method, path, what=what, **kw), what)

    async def send(self, method: str, path: str, *, what: str, auth: bool = True,
                   headers: dict[str, str] | None = None, ok: Collection[int] = (200,), **kw: Any) -> httpx.Response:
        """One call on the API, with the token unless `auth` is False."""
        sent = dict(headers or {})
        if auth:
            sent["Authorization"] = f"Bearer {self.options.access_token.get_secret_value()}"
        return await self.request(method, self.options.base_url.rstrip("/") + path, what=what, ok=ok, headers=sent,
                                  **kw)

    def protocol_error(self, resp: httpx.Response, what: str, said: RemoteSaid) -> ChannelError | None:
        if resp.status_code == 404:
            return _Missing(self.describe(resp, what, said), status=404, remote=resp.text[:500])
        if resp.status_code == 422 and NOT_READY in said.message:
            return TransientError(self.describe(resp, what, said), status=422, remote=resp.text[:500],
                                  retry_after=30.0)
        return None

    def hint(self, resp: httpx.Response, said: RemoteSaid) -> str | None:
        if resp.status_code == 401:
            return (f"Mastodon refused the access token: create a new token for the account (Preferences → "
                    f"Development, scopes {TOKEN_SCOPES}), set it as this channel's access_token (the environment "
                    "variable config.yaml names for it) and re-queue")
        if resp.status_code == 403:
            return (f"the access token lacks a scope: create one with {TOKEN_SCOPES} (or set with_pictures: false "
                    "on this channel) and re-queue")
        if resp.status_code == 429:
            return "Mastodon's rate limit is reached; waiting for the window to reset"
        return None

    def retry_after(self, resp: httpx.Response) -> float | None:
        # Mastodon's 429 names the end of its window as an ISO time; a proxy in front may send Retry-After.
        wait = _until(resp.headers.get("X-RateLimit-Reset"), self.clock.now()) if resp.status_code == 429 else None
        return wait if wait is not None else super().retry_after(resp)


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


__all__ = ["InstanceLimits", "Mastodon", "mastodon_length", "plain_text"]
