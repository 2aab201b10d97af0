"""The WeChat article of an item, as `draft/add` takes it: title, author and digest within the platform's limits,
the body as sanitized HTML with each picture uploaded through `media/uploadimg` (WeChat drops any other `<img>`),
the cover (the first picture attachment, else `default_cover`), and the 阅读原文 link (`content_source_url`).
What `find` matches an article by (`identity`) is made here too, so that it is always what was sent."""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import structlog

from channels.base import PermanentError
from channels.render import render_html
from channels.wechat_api import MAX_COVER, WechatApi, WechatOptions, fit, picture_kind
from publisher.model import Revision

log = structlog.get_logger()

TITLE_MAX, AUTHOR_MAX, DIGEST_MAX = 32, 16, 128  # characters, as the draft/add document gives them
CONTENT_MAX_CHARS, CONTENT_MAX_BYTES = 20_000, 1024 * 1024  # under both
PICTURE_TYPES = {"image/jpeg", "image/png", "image/gif"}
_IMG_RE = re.compile(r"<img\b[^>]*>", re.I)
_SRC_RE = re.compile(r"""\bsrc="([^"]*)\"""", re.I)


class WechatArticle(WechatApi):
    """Base of the WeChat adapter: the article of a revision, its pictures uploaded."""

    Options = WechatOptions
    options: WechatOptions

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._default_cover: bytes | None = None  # read (or fetched) once

    def identity(self, rev: Revision) -> dict[str, str]:
        """What `find` matches: the title and digest as sent, and the 阅读原文 link when there is one."""
        return {"title": fit(rev.title, TITLE_MAX), "digest": fit(rev.short_summary, DIGEST_MAX),
                "content_source_url": rev.link or ""}

    async def article(self, rev: Revision) -> dict[str, Any]:
        """The draft/add article of a revision, pictures uploaded; PermanentError when it breaks a platform limit."""
        content = await self.content(rev)
        size = len(content.encode())
        if len(content) >= CONTENT_MAX_CHARS or size >= CONTENT_MAX_BYTES:
            raise PermanentError(
                f"{self.display_name}: {rev.item_id} is too large for a WeChat article ({len(content)} characters, "
                f"{size} bytes of HTML; WeChat takes under {CONTENT_MAX_CHARS} characters and 1 MB): shorten the body "
                "or split the item, then re-queue")
        author = self.options.author or rev.author or ""
        return {**self.identity(rev), "author": fit(author, AUTHOR_MAX), "content": content,
                "thumb_media_id": await self.cover_of(rev), "need_open_comment": int(self.options.open_comment),
                "only_fans_can_comment": 0}

    async def cover_of(self, rev: Revision) -> str:
        for att in rev.attachments:
            if att.content_type in PICTURE_TYPES and att.size <= MAX_COVER:
                data = await asyncio.to_thread(att.path.read_bytes)
                if picture_kind(data) is not None:
                    return await self.cover(data, f"{att.name} of {rev.item_id}")
        where = self.options.default_cover
        if where is None:
            raise PermanentError(f"{self.display_name}: {rev.item_id} has no picture for the article's cover: attach a "
                                 f"JPEG or PNG, or set channels.{self.name}.default_cover in config.yaml")
        if self._default_cover is None:
            if isinstance(where, Path):
                try:
                    self._default_cover = await asyncio.to_thread(where.read_bytes)
                except OSError as exc:
                    raise PermanentError(f"{self.display_name}: the default cover {where} cannot be read ({exc.strerror}); "
                                         f"fix channels.{self.name}.default_cover in config.yaml") from None
            else:
                resp = await self.request("GET", str(where), what=f"fetch the default cover {where}", follow_redirects=True)
                self._default_cover = resp.content
        return await self.cover(self._default_cover, str(where))

    async def content(self, rev: Revision) -> str:
        """The body as sanitized HTML, each picture of it uploaded to WeChat; pictures WeChat cannot take are left out."""
        body = render_html(rev.body)
        by_name = {att.name: att for att in rev.attachments}
        urls: dict[str, str | None] = {}
        for tag in _IMG_RE.findall(body):
            src = html.unescape(m.group(1)) if (m := _SRC_RE.search(tag)) else ""
            att = by_name.get(src) or by_name.get(unquote(src))  # Markdown percent-encodes a Chinese file name
            if src not in urls:
                urls[src] = await self.body_picture(att.path, rev.item_id) if att is not None else None
            if urls[src] is None:
                log.info("wechat.picture_dropped", channel=self.name, item_id=rev.item_id, src=src[:200])

        def point(m: re.Match[str]) -> str:
            src = html.unescape(s.group(1)) if (s := _SRC_RE.search(m.group(0))) else ""
            url = urls.get(src)
            return "" if url is None else _SRC_RE.sub(f'src="{html.escape(url)}"', m.group(0), count=1)

        return _IMG_RE.sub(point, body)


__all__ = ["AUTHOR_MAX", "DIGEST_MAX", "TITLE_MAX", "WechatArticle"]
