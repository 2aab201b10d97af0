"""Weibo (新浪微博) through the open API v2: `statuses/share.json` to post, `show` and `user_timeline` to read back.

A post is the title, the summary and the link to the bureau_site article, fitted within 140 as
Weibo counts (full-width 1, half-width ½, a link 20 half-width places). The API has no edit, and
deletion is not open to ordinary apps, so an update or a retraction becomes a task for a person.
The token travels as the documented `access_token` parameter and in the `Authorization: OAuth2` header;
nothing here logs a URL or a request body.
"""

from __future__ import annotations

import asyncio
import math
import re
from datetime import timedelta
from typing import Any

import httpx
import structlog
from pydantic import SecretStr

from channels.base import ChannelError, ChannelOptions, ManualTask, PermanentError, RateLimited, Receipt, TransientError
from channels.http import HttpChannel, RemoteSaid
from channels.render import longest
from publisher.clock import CHINA
from publisher.model import Revision

log = structlog.get_logger()

LIMIT = 140
URL_HALF_WIDTHS = 20
MAX_PIC_BYTES = 5 * 1024 * 1024
PIC_TYPES = {"image/jpeg", "image/png", "image/gif"}
URL_RE = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")

TOKEN_CODES = {21301, 21314, 21315, 21316, 21317, 21319, 21327, 21332}
HOURLY_CODES = {10022, 10023, 20016}
DAILY_CODES = {10024}
DUPLICATE_CODES = {20017, 20019, 20111}
SYSTEM_CODES = {10001, 10002, 10009, 10010, 10011}  # Weibo's own trouble: worth another try


def weibo_length(text: str) -> int:
    """Length as Weibo counts it: ASCII ½, any other character 1, each link 10; rounded up."""
    halves = 0
    for piece in URL_RE.split(text):
        halves += sum(1 if ord(ch) < 0x80 else 2 for ch in piece)
    halves += URL_HALF_WIDTHS * len(URL_RE.findall(text))
    return math.ceil(halves / 2)


def _clean(text: str) -> str:
    # share.json refuses `#topic#`; a full-width ＃ reads the same and is plain text.
    return " ".join(text.replace("#", "＃").split())


class Weibo(HttpChannel):
    """The bureau's government microblog on Weibo."""

    type_name = "weibo"
    default_rate_limit = "30/h"
    can_update = False
    service = "Weibo"
    url_option = "api_base"
    error_code_field, error_message_field = "error_code", "error"  # {"request", "error_code", "error"}
    unreadable_answer = TransientError

    class Options(ChannelOptions):
        api_base: str = "https://api.weibo.com/2/"
        access_token: SecretStr
        with_picture: bool = True  # the first JPEG/PNG/GIF attachment goes along as `pic`
        topic: str | None = None  # a label put before the title (share.json refuses #topic# tags)
        web_base: str = "https://weibo.com"  # where people open a post: {web_base}/{uid}/{id}
        rip: str | None = None  # the operator's public IP, which Weibo asks apps to report

    options: Options

    # --- rendering ---------------------------------------------------------------------------

    def render(self, rev: Revision) -> str:
        """Title, summary and link, cut at a character boundary so the whole counts at most 140."""
        if not rev.link:
            raise PermanentError(
                f"channel {self.name}: a Weibo post must carry the bureau_site article link (Weibo refuses a "
                "share without a URL under the app's safe domain); set `link_from: bureau_site` on this channel")
        tail = " " + rev.link
        label = _clean(self.options.topic) + "｜" if self.options.topic else ""
        title = _clean(rev.title)
        summary = _clean(rev.short_summary)
        if summary == title:
            summary = ""
        head = f"{label}【{title}】"

        def ok(text: str) -> bool:
            return weibo_length(text) <= LIMIT

        if ok(head + summary + tail):
            return head + summary + tail
        if ok(head + "…" + tail):
            n = longest(lambda n: ok(head + summary[:n] + "…" + tail), summary)
            return head + (summary[:n] + "…" if n else "") + tail
        n = longest(lambda n: ok(f"{label}【{title[:n]}…】{tail}"), title)
        return f"{label}【{title[:n]}…】{tail}"

    # --- the five calls ----------------------------------------------------------------------

    async def publish(self, rev: Revision) -> Receipt:
        text = self.render(rev)
        data = {"status": text}
        if self.options.rip:
            data["rip"] = self.options.rip
        files = await self._picture(rev)
        try:
            body = await self._call("POST", "statuses/share.json", what=f"post {rev.item_id}", data=data, files=files)
        except _Duplicate as dup:
            found = await self.find(rev)
            if found is not None:
                log.info("weibo.duplicate_found", channel=self.name, item_id=rev.item_id, status_id=found.remote_id)
                return found
            raise PermanentError(
                f"Weibo says this text was posted already ({dup.remote}) but the account's recent posts do not "
                f"hold it; check the account by hand before re-queueing", status=dup.status, remote=dup.remote,
            ) from None
        receipt = self._receipt(body)
        log.info("weibo.status_created", channel=self.name, item_id=rev.item_id, status_id=receipt.remote_id)
        return receipt

    async def update(self, rev: Revision, receipt: Receipt) -> Receipt:
        where = receipt.url or f"status {receipt.remote_id}"
        text = self.render(rev) if rev.link else rev.title
        raise ManualTask(
            f"Weibo's API cannot edit a post. Open {where}, check whether revision {rev.revision} of "
            f"{rev.item_id} needs a correction there, and if so delete the post by hand and post this text "
            f"instead: {text}")

    async def retract(self, receipt: Receipt) -> None:
        where = receipt.url or f"status {receipt.remote_id}"
        raise ManualTask(
            f"Weibo does not let ordinary apps delete posts. Log in to the bureau's Weibo account, open "
            f"{where} and delete the post by hand")

    async def find(self, rev: Revision) -> Receipt | None:
        body = await self._call("GET", "statuses/user_timeline.json", what="read the account's timeline",
                                params={"count": 100})
        wanted = _without_urls(self.render(rev)) if rev.link else None
        for status in body.get("statuses") or []:
            text = status.get("text") or ""
            originals = [u.get("url_ori") for u in status.get("url_objects") or [] if isinstance(u, dict)]
            if (rev.link and (rev.link in text or rev.link in originals)) or (wanted and _without_urls(text) == wanted):
                return self._receipt(status)
        return None

    async def verify(self, receipt: Receipt) -> bool:
        try:
            body = await self._call("GET", "statuses/show.json", what="read the status back",
                                    params={"id": receipt.remote_id})
        except _Missing:
            return False
        return str(body.get("idstr") or body.get("id")) == receipt.remote_id and not body.get("deleted")

    # --- the wire ----------------------------------------------------------------------------

    async def _picture(self, rev: Revision) -> dict[str, Any] | None:
        if not self.options.with_picture:
            return None
        for att in rev.attachments:
            if att.content_type in PIC_TYPES and att.size < MAX_PIC_BYTES:
                data = await asyncio.to_thread(att.path.read_bytes)
                return {"pic": (att.name, data, att.content_type)}
        return None

    def _receipt(self, status: dict[str, Any]) -> Receipt:
        sid = str(status.get("idstr") or status.get("id") or "")
        if not sid:
            raise TransientError(f"Weibo answered without a status id: {str(status)[:200]}")
        uid = str((status.get("user") or {}).get("idstr") or (status.get("user") or {}).get("id") or "")
        url = f"{self.options.web_base.rstrip('/')}/{uid}/{sid}" if uid else None
        return Receipt(remote_id=sid, url=url, extra={"uid": uid, "mid": status.get("mid")})

    async def _call(self, method: str, path: str, *, what: str, **kw: Any) -> dict[str, Any]:
        url = self.options.api_base.rstrip("/") + "/" + path
        token = self.options.access_token.get_secret_value()
        # The documented `access_token` parameter (form field on POST, query on GET), and the OAuth2 header
        # the platform also reads: either alone is enough for api.weibo.com.
        field = "data" if method == "POST" else "params"
        kw[field] = {**(kw.get(field) or {}), "access_token": token}
        resp = await self.request(method, url, what=what, headers={"Authorization": f"OAuth2 {token}"}, **kw)
        body = self.json_body(resp, what)
        if not isinstance(body, dict) or "error_code" in body:  # Weibo may refuse inside a 200
            raise self.failure(resp, what)
        return body

    def protocol_error(self, resp: httpx.Response, what: str, said: RemoteSaid) -> ChannelError | None:
        """Weibo's error codes say more than its HTTP status: limits, tokens, duplicates, its own trouble."""
        code = int(said.code) if said.code and said.code.isdigit() else None
        if code is None:
            return self.unreadable(resp, what) if resp.is_success else None
        status, remote, now = resp.status_code, resp.text[:500], self.clock.now()
        header_wait = self.retry_after(resp)
        if code in HOURLY_CODES:
            return RateLimited(f"Weibo's posting limit is reached (error {code}); waiting for the hourly window",
                               status=status, remote=remote, retry_after=header_wait or 3600.0)
        if code in DAILY_CODES:
            midnight = (now.astimezone(CHINA) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
            wait = header_wait or max(60.0, (midnight - now).total_seconds())
            return RateLimited(f"Weibo's daily call limit is reached (error {code}); waiting for midnight China time",
                               status=status, remote=remote, retry_after=wait)
        if code in TOKEN_CODES:
            return PermanentError(
                f"Weibo refused the access token (error {code}: {said.message}); renew the token by logging "
                f"in to the app again, set it in this channel's access_token (WEIBO_TOKEN), then re-queue",
                status=status, remote=remote)
        if code == 20012:
            return PermanentError("Weibo says the text is too long (error 20012, over 140)", status=status,
                                  remote=remote)
        if code == 20018:
            return PermanentError(
                "Weibo refused the link (error 20018): the bureau_site article URL must be under the safe domain "
                "bound to the Weibo app (安全域名); bind the site's domain in the app settings", status=status,
                remote=remote)
        if code in DUPLICATE_CODES:
            return _Duplicate(f"Weibo says this is repeated content (error {code})", status=status, remote=remote)
        if code == 20101:
            return _Missing(f"Weibo has no such status (error {code})", status=status, remote=remote)
        if code in SYSTEM_CODES:
            return TransientError(f"Weibo had trouble (error {code}: {said.message})", status=status,
                                  remote=remote, retry_after=header_wait)
        return None  # any other code: the HTTP status decides, with Weibo's code and message in the text


class _Duplicate(PermanentError):
    """Repeat content: the post may be there already."""


class _Missing(PermanentError):
    """The status does not exist (or no longer does)."""


def _without_urls(text: str) -> str:
    return " ".join(URL_RE.sub(" ", text).split())


__all__ = ["Weibo", "weibo_length"]
