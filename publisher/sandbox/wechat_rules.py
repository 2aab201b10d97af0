"""The WeChat stand-in's rules from the official documents: its settings, errcodes and messages, the limits of
an article, and the paging of the batchget calls (publisher/sandbox/wechat.py holds the endpoints)."""

from __future__ import annotations

import hashlib
import html
import re
import time
from collections.abc import Callable
from typing import Any

import nh3
from starlette.responses import JSONResponse, Response

DEFAULT_SETTINGS: dict[str, Any] = {
    "token_ttl_s": 7200,  # expires_in of a new token
    "expire_tokens": False,  # one shot: every token handed out so far expires now
    "ip_whitelist": None,  # a list of client IPs the account allows (40164 for any other); None: any
    "quota_exhausted": False,  # every API call but the token's answers 45009 (the daily quota)
    "publish_seconds": 1.0,  # how long freepublish/get says 1 (publishing)
    "publish_outcome": 0,  # what a publish ends in: 0 success, 2, 3 or 4 (a failure)
    "banned": [],  # article ids the platform banned after success (status 6)
}
ERRORS = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40004: "invalid media type",
    40005: "invalid file type",
    40007: "invalid media_id",
    40009: "invalid image size",
    40013: "invalid appid",
    40125: "invalid appsecret",
    40164: "invalid ip {ip} ipv6 ::ffff:{ip}, not in whitelist",
    41001: "access_token missing",
    41005: "media data missing",
    42001: "access_token expired",
    44003: "empty news data",
    45002: "content size out of limit",
    45003: "title size out of limit",
    45004: "description size out of limit",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit  mustslower  retry next minute",
    45110: "author size out of limit",
    47001: "data format error",
    53600: "Article ID 无效",
}
IMAGE_TYPES = {b"\xff\xd8\xff": "jpg", b"\x89PNG\r\n\x1a\n": "png", b"GIF87a": "gif", b"GIF89a": "gif", b"BM": "bmp"}
MAX_MATERIAL = 10 * 1024 * 1024
MAX_UPLOADIMG = 1024 * 1024
IMG_RE = re.compile(r"<img\b[^>]*>", re.I)
SRC_RE = re.compile(r"""\bsrc\s*=\s*["']([^"']*)["']""", re.I)
LIMITS = {"title": (32, 45003), "author": (16, 45110), "digest": (128, 45004)}
PUBLIC_NOTICE = {5: "该内容已被发布者删除", 6: "此内容因违规无法查看"}


def err(code: int, **fill: str) -> JSONResponse:
    """WeChat's refusal: HTTP 200, errcode and errmsg (with the request id the platform appends)."""
    rid = hashlib.sha1(f"{code}{time.monotonic_ns()}".encode()).hexdigest()[:8]
    return JSONResponse({"errcode": code, "errmsg": ERRORS[code].format(**fill) + f" rid: {rid}-sandbox"})


def image_kind(data: bytes) -> str | None:
    return next((kind for magic, kind in IMAGE_TYPES.items() if data.startswith(magic)), None)


def text_of(content: str) -> str:
    return " ".join(html.unescape(nh3.clean(content, tags=set())).split())


def check_article(art: Any, materials: dict[str, Any], known: set[str]) -> Response | dict[str, Any]:
    """One article of draft/add or draft/update, as the platform keeps it, or its refusal."""
    if not isinstance(art, dict) or not isinstance(art.get("title"), str) or not art["title"]:
        return err(47001)
    for key, (limit, code) in LIMITS.items():
        if len(str(art.get(key) or "")) > limit:
            return err(code)
    content = str(art.get("content") or "")
    if len(content) >= 20_000 or len(content.encode()) >= 1024 * 1024:
        return err(45002)
    if art.get("thumb_media_id") not in materials:
        return err(40007)

    def keep(m: re.Match[str]) -> str:
        src = SRC_RE.search(m.group(0))
        return m.group(0) if src and src.group(1) in known else ""

    content = re.sub(r"(?is)<script\b.*?</script>", "", IMG_RE.sub(keep, content))
    digest = str(art.get("digest") or "") or text_of(content)[:54]
    return {"title": art["title"], "author": str(art.get("author") or ""), "digest": digest, "content": content,
            "content_source_url": str(art.get("content_source_url") or ""), "thumb_media_id": art["thumb_media_id"],
            "thumb_url": materials[art["thumb_media_id"]]["url"],
            "need_open_comment": int(art.get("need_open_comment") or 0),
            "only_fans_can_comment": int(art.get("only_fans_can_comment") or 0)}


def page_of(body: Any, items: list[dict[str, Any]], strip: Callable[[dict[str, Any]], dict[str, Any]]) -> Response:
    """The batchget paging the platform documents: offset, count 1..20, no_content."""
    if not isinstance(body, dict):
        return err(47001)
    offset, count = body.get("offset", 0), body.get("count", 0)
    if not isinstance(offset, int) or not isinstance(count, int) or offset < 0 or not 1 <= count <= 20:
        return err(47001)
    chunk = items[offset:offset + count]
    if body.get("no_content") == 1:
        chunk = [strip(i) for i in chunk]
    return JSONResponse({"total_count": len(items), "item_count": len(chunk), "item": chunk})


def without_content(item: dict[str, Any]) -> dict[str, Any]:
    news = [{k: v for k, v in a.items() if k != "content"} for a in item["content"]["news_item"]]
    return {**item, "content": {"news_item": news}}
