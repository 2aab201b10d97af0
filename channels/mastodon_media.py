"""Mastodon's pictures: which attachments go along, their alt text, and the upload that waits for processing.

The item's JPEG/PNG/GIF/WebP attachments (in order, as many as the instance's `max_media_attachments`,
each smaller than its `image_size_limit`) are uploaded to `/api/v2/media` with an alt text, then named
in the status's `media_ids`. An upload answered 202 is still being processed; `/api/v1/media/:id` is
polled (206 → 200) for up to about ten seconds, since a status naming unprocessed media is refused.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import structlog

from channels.base import PermanentError, TransientError
from publisher.model import Attachment, Revision

if TYPE_CHECKING:
    from channels.mastodon import Mastodon

log = structlog.get_logger()

DEFAULT_MAX_CHARACTERS = 500
DEFAULT_URL_CHARACTERS = 23
PICTURE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
DEFAULT_MAX_MEDIA = 4
DEFAULT_IMAGE_SIZE_LIMIT = 16 * 1024 * 1024
DEFAULT_DESCRIPTION_LIMIT = 1500
MEDIA_POLL_DELAYS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.0, 2.0)  # seconds between looks; 10 s in all
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

    @classmethod
    def from_instance(cls, body: Any) -> InstanceLimits:
        """Read from the `/api/v2/instance` answer; KeyError, TypeError or ValueError when it is not one."""
        conf = body["configuration"]
        statuses, media = conf["statuses"], conf.get("media_attachments") or {}
        supported = media.get("supported_mime_types")
        return cls(
            max_characters=int(statuses["max_characters"]),
            per_url=int(statuses.get("characters_reserved_per_url", DEFAULT_URL_CHARACTERS)),
            max_media=int(statuses.get("max_media_attachments", DEFAULT_MAX_MEDIA)),
            image_size_limit=int(media.get("image_size_limit", DEFAULT_IMAGE_SIZE_LIMIT)),
            picture_types=PICTURE_TYPES if not isinstance(supported, list) else tuple(
                t for t in PICTURE_TYPES if t in supported),
            description_limit=int(media.get("description_limit", DEFAULT_DESCRIPTION_LIMIT)))


def alt_text(att: Attachment, rev: Revision, limit: int = DEFAULT_DESCRIPTION_LIMIT) -> str:
    """The picture's description for readers who cannot see it: its file name, or the title when the name is a serial."""
    stem = " ".join(PurePath(att.name).stem.split())
    text = stem if stem and not _SERIAL_NAME_RE.fullmatch(stem) else " ".join(rev.title.split())
    return text[:limit]


def pictures(channel: Mastodon, rev: Revision, limits: InstanceLimits) -> list[Attachment]:
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
        log.info("mastodon.attachment_skipped", channel=channel.name, item_id=rev.item_id, attachment=att.name,
                 content_type=att.content_type, size=att.size, reason=reason,
                 image_size_limit=limits.image_size_limit, max_media=limits.max_media)
    return chosen


async def upload(channel: Mastodon, rev: Revision, att: Attachment, limits: InstanceLimits) -> str:
    """Upload one picture and wait until Mastodon has processed it; its media id."""
    try:
        data = await asyncio.to_thread(att.path.read_bytes)
    except OSError as exc:
        raise PermanentError(f"attachment {att.name} of {rev.item_id} cannot be read ({exc}); re-submit the item "
                             "with the file beside it") from exc
    files = {"file": (att.name, data, att.content_type)}
    form = {"description": alt_text(att, rev, limits.description_limit)}
    what = f"upload the picture {att.name} of {rev.item_id}"
    try:
        resp = await channel.send("POST", "/api/v2/media", what=what, ok={200, 202}, files=files, data=form)
    except PermanentError as exc:
        if exc.status not in (413, 422):
            raise
        raise PermanentError(
            f"{exc}; replace the file with a JPEG, PNG, GIF or WebP smaller than {limits.image_size_limit} bytes, "
            "or set with_pictures: false on this channel, then re-queue", status=exc.status, remote=exc.remote) from None
    media = channel.json_body(resp, what)
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
        status = (await channel.send("GET", f"/api/v1/media/{media_id}", what=what, ok={200, 206})).status_code
    if status != 200:
        raise TransientError(f"Mastodon was still processing the picture {att.name} of {rev.item_id} after "
                             f"{waited:.0f} s; the status was not sent", retry_after=30.0)
    log.info("mastodon.media_uploaded", channel=channel.name, item_id=rev.item_id, attachment=att.name,
             media_id=media_id, size=len(data), waited_s=waited)
    return media_id
