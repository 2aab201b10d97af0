"""Mastodon through its client REST API: post, edit, delete and read back statuses.

The text is the title, the summary and the bureau_site link, fitted to the instance's
`max_characters` as Mastodon counts (every URL as `characters_reserved_per_url`, read once from
`/api/v2/instance`). Every post carries `Idempotency-Key`, so a resend after a lost answer gets
the first status back. A 429 names the end of the window in `X-RateLimit-Reset` (ISO 8601), not
in `Retry-After`; the wait is computed against the injected clock.

Pictures: the item's JPEG/PNG/GIF/WebP attachments (in order, as many as the instance's
`max_media_attachments`, each smaller than its `image_size_limit`) are uploaded to `/api/v2/media`
with an alt text, then named in the status's `media_ids`. An upload answered 202 is still being
processed; `/api/v1/media/:id` is polled (206 → 200) for up to about ten seconds, since a status naming
unprocessed media is refused. Every send uploads afresh: a resend after a lost answer leaves unattached
media behind (the server clears those), while `Idempotency-Key` still gives back the first status, with
its pictures. An edit names the pictures again; Mastodon detaches any an edit does not name.
"""

from __future__ import annotations

import asyncio
import html
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath
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
from publisher.model import Attachment, Revision

log = structlog.get_logger()

DEFAULT_MAX_CHARACTERS = 500
DEFAULT_URL_CHARACTERS = 23
# twitter-text's URL extraction as Mastodon uses it, reduced: a CJK character or a space ends a URL.
URL_RE = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_TAG_RE = re.compile(r"<[^>]+>")
PICTURE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
DEFAULT_MAX_MEDIA = 4
DEFAULT_IMAGE_SIZE_LIMIT = 16 * 1024 * 1024
DEFAULT_DESCRIPTION_LIMIT = 1500
MEDIA_POLL_DELAYS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.0, 2.0)  # seconds between looks; 10 s in all
NOT_READY = "not finished processing"  # Mastodon's 422 for media still processing: worth another try
# A file name that says nothing to a reader (a camera's or a messenger's serial) gives way to the title.
_SERIAL_NAME_RE = re.compile(r"(?i)(img|dsc[nf]?|dcim|pxl|mvimg|photo|image|scan|screenshot|微信图片|图片|照片)?[\W_\d]*")


@dataclass(frozen=True)
class InstanceLimits:
    """What `/api/v2/instance` says about statuses and media (Mastodon's defaults when it says nothing)."""

    max_characters: int = DEFAULT_MAX_CHARACTERS
    per_url: int = DEFAULT_URL_CHARACTERS
    max_media: int = DEFAULT_MAX_MEDIA
    image_size_limit: int = DEFAULT_IMAGE_SIZE_LIMIT
    picture_types: tuple[str, ...] = PICTURE_TYPES
    description_limit: int = DEFAULT_DESCRIPTION_LIMIT


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
                body = await self._call("GET", "/api/v2/instance", auth=False)
                conf = body["configuration"]
                statuses, media = conf["statuses"], conf.get("media_attachments") or {}
                supported = media.get("supported_mime_types")
                self._limits = InstanceLimits(
                    max_characters=int(statuses["max_characters"]),
                    per_url=int(statuses.get("characters_reserved_per_url", DEFAULT_URL_CHARACTERS)),
                    max_media=int(statuses.get("max_media_attachments", DEFAULT_MAX_MEDIA)),
                    image_size_limit=int(media.get("image_size_limit", DEFAULT_IMAGE_SIZE_LIMIT)),
                    picture_types=PICTURE_TYPES if not isinstance(supported, list) else tuple(
                        t for t in PICTURE_TYPES if t in supported),
                    description_limit=int(media.get("description_limit", DEFAULT_DESCRIPTION_LIMIT)))
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

    def pictures(self, rev: Revision, limits: InstanceLimits) -> list[Attachment]:
        """The attachments that go along as pictures, in order; every one left out is logged with the reason."""
        chosen: list[Attachment] = []
        for att in rev.attachments:
            if att.content_type not in limits.picture_types:
                reason = "not_a_picture"
            elif att.size >= limits.image_size_limit:
                reason = "too_large"
            elif len(chosen) >= limits.max_media:
                reason = "too_many"
            else:
                chosen.append(att)
                continue
            log.info("mastodon.attachment_skipped", channel=self.name, item=rev.item_id, attachment=att.name,
                     content_type=att.content_type, size=att.size, reason=reason, image_size_limit=limits.image_size_limit,
                     max_media=limits.max_media)
        return chosen

    @staticmethod
    def alt_text(att: Attachment, rev: Revision, limit: int = DEFAULT_DESCRIPTION_LIMIT) -> str:
        """The picture's description for readers who cannot see it: its file name, or the title when the name is a serial."""
        stem = " ".join(PurePath(att.name).stem.split())
        text = stem if stem and not _SERIAL_NAME_RE.fullmatch(stem) else " ".join(rev.title.split())
        return text[:limit]

    async def _media_ids(self, rev: Revision) -> list[str] | None:
        """Upload the revision's pictures and wait until each is processed; None when pictures are off."""
        if not self.options.with_pictures:
            return None
        limits = await self.instance_limits()
        ids = []
        for att in self.pictures(rev, limits):
            ids.append(await self._upload(rev, att, limits))
        return ids

    async def _upload(self, rev: Revision, att: Attachment, limits: InstanceLimits) -> str:
        try:
            data = await asyncio.to_thread(att.path.read_bytes)
        except OSError as exc:
            raise PermanentError(f"attachment {att.name} of {rev.item_id} cannot be read ({exc}); re-submit the item "
                                 "with the file beside it") from exc
        files = {"file": (att.name, data, att.content_type)}
        form = {"description": self.alt_text(att, rev, limits.description_limit)}
        refused = f"the picture {att.name} of {rev.item_id}"
        try:
            resp = await self._send("POST", "/api/v2/media", ok=(200, 202), refused=refused, files=files, data=form)
        except PermanentError as exc:
            if exc.status not in (413, 422):
                raise
            raise PermanentError(
                f"{exc}; replace the file with a JPEG, PNG, GIF or WebP smaller than {limits.image_size_limit} bytes, "
                "or set with_pictures: false on this channel, then re-queue", status=exc.status, remote=exc.remote) from None
        media = self._json(resp, "/api/v2/media")
        media_id = str(media.get("id") or "") if isinstance(media, dict) else ""
        if not media_id:
            raise TransientError(f"Mastodon answered the upload of {att.name} without a media id",
                                 status=resp.status_code, remote=resp.text[:500])
        waited = 0.0
        status = resp.status_code
        for delay in MEDIA_POLL_DELAYS:
            if status == 200:
                break
            await asyncio.sleep(delay)
            waited += delay
            status = (await self._send("GET", f"/api/v1/media/{media_id}", ok=(200, 206), refused=refused)).status_code
        if status != 200:
            raise TransientError(f"Mastodon was still processing the picture {att.name} of {rev.item_id} after "
                                 f"{waited:.0f} s; the status was not sent", retry_after=30.0)
        log.info("mastodon.media_uploaded", channel=self.name, item=rev.item_id, attachment=att.name, media_id=media_id,
                 size=len(data), waited_s=waited)
        return media_id

    # --- the five calls ----------------------------------------------------------------------

    async def publish(self, rev: Revision) -> Receipt:
        payload = await self._payload(rev)
        media_ids = await self._media_ids(rev)
        if media_ids:
            payload["media_ids"] = media_ids
        # Fresh media ids on a resend do not matter: the key gives back the first status, pictures and all.
        body = await self._call("POST", "/api/v1/statuses", json=payload, headers={"Idempotency-Key": rev.idempotency_key})
        receipt = self._receipt(body)
        log.info("mastodon.status_created", channel=self.name, item=rev.item_id, status_id=receipt.remote_id,
                 media=len(media_ids or ()))
        return receipt

    async def update(self, rev: Revision, receipt: Receipt) -> Receipt:
        payload = await self._payload(rev)
        payload.pop("visibility")  # an edit cannot change visibility
        media_ids = await self._media_ids(rev)
        if media_ids is not None:
            payload["media_ids"] = media_ids  # an edit that names no media detaches them all
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

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        return self._json(await self._send(method, path, **kw), path)

    async def _send(self, method: str, path: str, *, auth: bool = True, headers: dict[str, str] | None = None,
                    ok: tuple[int, ...] = (200,), refused: str = "the status", **kw: Any) -> httpx.Response:
        url = self.options.base_url.rstrip("/") + path
        sent = dict(headers or {})
        if auth:
            sent["Authorization"] = f"Bearer {self.options.access_token.get_secret_value()}"
        try:
            resp = await self.http.request(method, url, headers=sent, **kw)
        except httpx.HTTPError as exc:
            raise transport_error(exc, f"Mastodon {method} {path}") from exc
        if resp.status_code in ok:
            return resp
        raise self._error(resp, f"{method} {path}", refused)

    @staticmethod
    def _json(resp: httpx.Response, path: str) -> Any:
        try:
            return resp.json()
        except ValueError:
            raise TransientError(f"Mastodon {path} answered {resp.status_code} with an unreadable body",
                                 status=resp.status_code, remote=resp.text[:500]) from None

    def _error(self, resp: httpx.Response, what: str, refused: str = "the status") -> Exception:
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
                "Development, scopes read, write:statuses and write:media), set it as this channel's access_token "
                "(the environment variable config.yaml names for it) and re-queue", status=status, remote=resp.text[:500])
        if status == 403:
            return PermanentError(
                f"Mastodon {what} was refused ({message}); the access token lacks a scope: create one with read, "
                "write:statuses and write:media (or set with_pictures: false on this channel) and re-queue",
                status=status, remote=resp.text[:500])
        if status == 404:
            return _Missing(f"Mastodon {what}: {message}", status=status, remote=resp.text[:500])
        if status == 422 and NOT_READY in message:
            return TransientError(f"Mastodon refused {refused}: {message}", status=status, remote=resp.text[:500],
                                  retry_after=30.0)
        if status == 422:
            return PermanentError(f"Mastodon refused {refused}: {message}", status=status, remote=resp.text[:500])
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


__all__ = ["InstanceLimits", "Mastodon", "mastodon_length", "plain_text"]
