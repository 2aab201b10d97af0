"""The WeChat official account API's plumbing: the shared access token, the errcode mapping, and the pictures.

- The token comes from `POST /cgi-bin/stable_token` (the stable token: several servers of one account get the
  same one instead of revoking each other's, as `/cgi-bin/token` does). It is fetched once and kept until
  shortly before `expires_in`, under a lock, so that concurrent sends share one fetch. A call refused with
  40001/40014/42001 (token invalid or expired) fetches a new one and is repeated once.
- WeChat answers HTTP 200 with `{"errcode", "errmsg"}` when it refuses: every answer is read for an errcode
  before it counts as a success. The codes that need a person say exactly what to change, and where.
- Covers are permanent image material, kept by content hash: the file name carries the hash
  (`publisher-cover-<sha256:16>.jpg`), so the account's material list (`material/batchget_material`, read once
  per process) tells whether a picture was uploaded before, by this process or an earlier one.
- Pictures in a body go through `media/uploadimg` (JPEG/PNG under 1 MB); the platform drops any other `<img>`.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
import structlog
from pydantic import AnyHttpUrl, Field, SecretStr

from channels.base import ChannelError, ChannelOptions, PermanentError, RateLimited, TransientError
from channels.http import HttpChannel, RemoteSaid
from publisher.clock import CHINA

log = structlog.get_logger()

TOKEN_REFUSED = {40001, 40014, 42001}  # invalid, malformed or expired access_token: fetch a new one, once
MISSING = {40007, 53600}  # no such media_id / article_id
COVER_TYPES = {b"\xff\xd8\xff": ("jpg", "image/jpeg"), b"\x89PNG\r\n\x1a\n": ("png", "image/png"),
               b"GIF87a": ("gif", "image/gif"), b"GIF89a": ("gif", "image/gif")}
MAX_COVER = 10 * 1024 * 1024  # permanent image material
MAX_BODY_PICTURE = 1024 * 1024  # media/uploadimg: under 1 MB, JPEG or PNG
MATERIAL_PAGES = 25  # the account's newest 500 images are searched for an earlier upload of a cover
ALLOW_LIST = "公众平台 mp.weixin.qq.com → 设置与开发 → 基本配置 → IP白名单"
DEVELOPER_ID = "公众平台 mp.weixin.qq.com → 设置与开发 → 基本配置 → 开发者ID"
_IP_RE = re.compile(r"invalid ip ([0-9a-fA-F.:]+)")


def picture_kind(data: bytes) -> tuple[str, str] | None:
    """(extension, content type) of a JPEG, PNG or GIF, from its first bytes; None for anything else."""
    return next((kind for magic, kind in COVER_TYPES.items() if data.startswith(magic)), None)


def next_midnight_china(now: datetime) -> datetime:
    """When WeChat's daily quotas reset: midnight, Beijing time."""
    return (now.astimezone(CHINA) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def fit(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, cut with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def matches(item: dict[str, Any], wanted: dict[str, str]) -> bool:
    """Is this draft or published article (a batchget item) the one `wanted` describes?"""
    news = (item.get("content") or {}).get("news_item") or [{}]
    first = news[0] if isinstance(news[0], dict) else {}
    return all(str(first.get(k) or "") == v for k, v in wanted.items())


class Missing(PermanentError):
    """The draft, material or article named does not exist (any more)."""


class WechatOptions(ChannelOptions):
    """channels.<name> of `type: wechat` in config.yaml, beyond the keys every channel takes."""

    api_base: str = "https://api.weixin.qq.com"
    appid: str
    secret: SecretStr
    # the cover of items without a picture attachment: a file (relative: to config.yaml), or a URL fetched once
    default_cover: AnyHttpUrl | Path | None = None
    author: str | None = None  # the article's author line; default: the item's `author`
    on_edit: Literal["manual", "republish"] = "manual"  # no API edits a published article
    # seconds after a send's checkpoint during which a draft submitted just before a crash is taken to be still
    # publishing (`find` says "look again later"); past it, a person looks in 公众平台 → 发表记录
    publish_timeout: float = Field(default=3600.0, gt=0)
    open_comment: bool = False  # need_open_comment
    retired: ClassVar[Mapping[str, str]] = {
        "find_wait": "a send now records how far it got, and `find` resumes from that (publish_timeout bounds the wait "
                     "for a publish in progress)"}


class WechatApi(HttpChannel):
    """Base of the WeChat adapter: every call (`call`), the token, covers and body pictures."""

    Options = WechatOptions
    options: WechatOptions

    service = "WeChat"
    url_option = "api_base"
    error_code_field, error_message_field = "errcode", "errmsg"
    unreadable_answer = TransientError

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._token: str | None = None
        self._token_until: datetime | None = None
        self._token_lock = asyncio.Lock()
        self._covers: dict[str, str] | None = None  # material name → media_id, read once from the account
        self._cover_lock = asyncio.Lock()
        self._pictures: dict[str, str] = {}  # sha256 of a body picture → its uploadimg URL

    # --- the token -------------------------------------------------------------------------------

    async def token(self, *, refused: str | None = None) -> str:
        """The access token, fetched once for every concurrent caller; `refused` names one WeChat just turned down."""
        async with self._token_lock:
            now = self.clock.now()
            if self._token and self._token != refused and self._token_until and now < self._token_until:
                return self._token
            body = await self.call("POST", "cgi-bin/stable_token", what="get an access token", token=False,
                                   json={"grant_type": "client_credential", "appid": self.options.appid,
                                         "secret": self.options.secret.get_secret_value(), "force_refresh": False})
            try:
                token, ttl = str(body["access_token"]), float(body.get("expires_in", 7200))
            except (KeyError, TypeError, ValueError):
                raise TransientError("WeChat answered the token request without an access_token") from None
            # kept until shortly before it expires: 5 minutes early, or half its life when that is shorter
            self._token, self._token_until = token, now + timedelta(seconds=ttl - min(300.0, ttl / 2))
            log.info("wechat.token_fetched", channel=self.name, expires_in=ttl)
            return token

    # --- one call --------------------------------------------------------------------------------

    async def call(self, method: str, path: str, *, what: str, token: bool = True, params: dict[str, str] | None = None,
                   **kw: Any) -> dict[str, Any]:
        """One API call, its answer read for an errcode; a refused token is replaced and the call repeated once."""
        url = self.options.api_base.rstrip("/") + "/" + path
        current = await self.token() if token else None
        for attempt in (1, 2):
            query = {**(params or {}), **({"access_token": current} if current else {})}
            resp = await self.request(method, url, what=what, params=query or None, **kw)
            body = self.json_body(resp, what)
            code = body.get("errcode") if isinstance(body, dict) else None
            if isinstance(body, dict) and code in (None, 0):
                return body
            if current and code in TOKEN_REFUSED and attempt == 1:
                log.info("wechat.token_refused", channel=self.name, errcode=code)
                current = await self.token(refused=current)
                continue
            raise self.failure(resp, what)
        raise AssertionError("unreachable")  # the second attempt returns or raises

    def protocol_error(self, resp: httpx.Response, what: str, said: RemoteSaid) -> ChannelError | None:
        """WeChat's errcodes, each with what a person or the dispatcher should do about it."""
        try:
            code = int(said.code) if said.code is not None else None
        except ValueError:
            code = None
        if code is None:
            return self.unreadable(resp, what) if resp.is_success else None
        status, remote, text = resp.status_code, resp.text[:500], f"{self.display_name}: could not {what}"
        opts = self.options
        if code == -1:
            return TransientError(f"{text}: WeChat is busy (errcode -1)", status=status, remote=remote)
        if code == 45009:
            wait = (next_midnight_china(self.clock.now()) - self.clock.now()).total_seconds()
            return RateLimited(f"{text}: the account's daily quota for this call is spent (errcode 45009); "
                               "waiting for midnight, Beijing time", status=status, remote=remote,
                               retry_after=max(60.0, wait))
        if code == 45011:
            return RateLimited(f"{text}: WeChat's per-minute limit (errcode 45011)", status=status, remote=remote,
                               retry_after=60.0)
        if code in TOKEN_REFUSED:
            return TransientError(f"{text}: WeChat refused a freshly fetched access token too (errcode {code}); "
                                  "another program may be refreshing this account's token", status=status, remote=remote)
        if code == 40164:
            found = _IP_RE.search(said.message)
            ip = found.group(1) if found else "this server's public IP address"
            return PermanentError(f"{text}: WeChat refuses calls from {ip} (errcode 40164): add {ip} to the "
                                  f"account's IP allow-list ({ALLOW_LIST}), then re-queue", status=status, remote=remote)
        if code == 40013:
            return PermanentError(f"{text}: WeChat does not know the appid {opts.appid!r} (errcode 40013): copy the "
                                  f"AppID from {DEVELOPER_ID} into channels.{self.name}.appid in config.yaml",
                                  status=status, remote=remote)
        if code == 40125:
            return PermanentError(f"{text}: WeChat refused the AppSecret (errcode 40125): copy (or reset) the AppSecret "
                                  f"at {DEVELOPER_ID} and set it in the environment variable channels.{self.name}.secret "
                                  "names (WECHAT_SECRET), then restart and re-queue", status=status, remote=remote)
        if code == 48001:
            return PermanentError(f"{text}: the account may not use this API (errcode 48001): publishing through the "
                                  "API needs a verified (认证) official account", status=status, remote=remote)
        if code in MISSING:
            return Missing(f"{text}: WeChat has no such item (errcode {code}: {said.message})", status=status,
                           remote=remote)
        return PermanentError(f"{text}: WeChat refused it (errcode {code}: {said.message})", status=status, remote=remote)

    # --- pictures --------------------------------------------------------------------------------

    async def cover(self, data: bytes, origin: str) -> str:
        """The permanent media_id of this cover picture: uploaded once, found again by the hash in its name."""
        kind = picture_kind(data)
        if kind is None or len(data) > MAX_COVER:
            raise PermanentError(f"{self.display_name}: the cover {origin} is not a JPEG, PNG or GIF under 10 MB; "
                                 f"attach such a picture first, or fix channels.{self.name}.default_cover")
        name = f"publisher-cover-{hashlib.sha256(data).hexdigest()[:16]}.{kind[0]}"
        async with self._cover_lock:  # one upload per picture, however many sends want it at once
            if self._covers is None:
                self._covers = await self._material_names()
            if name not in self._covers:
                body = await self.call("POST", "cgi-bin/material/add_material", what=f"upload the cover {origin}",
                                       params={"type": "image"}, files={"media": (name, data, kind[1])})
                self._covers[name] = _field(body, "media_id", "the cover upload")
                log.info("wechat.cover_uploaded", channel=self.name, cover=name, origin=origin, size=len(data))
            return self._covers[name]

    async def _material_names(self) -> dict[str, str]:
        """The covers this account holds already (this adapter's names only), newest 500 images."""
        found: dict[str, str] = {}
        for page in range(MATERIAL_PAGES):
            body = await self.call("POST", "cgi-bin/material/batchget_material", what="list the account's images",
                                   json={"type": "image", "offset": page * 20, "count": 20})
            items = body.get("item") or []
            for it in items:
                if str(it.get("name", "")).startswith("publisher-cover-") and it.get("media_id"):
                    found.setdefault(str(it["name"]), str(it["media_id"]))
            if len(items) < 20 or (page + 1) * 20 >= int(body.get("total_count") or 0):
                break
        return found

    async def body_picture(self, path: Path, what: str) -> str | None:
        """The WeChat URL of a picture in the body (uploaded once per process); None when WeChat cannot take it."""
        data = await asyncio.to_thread(path.read_bytes)
        kind = picture_kind(data)
        if kind is None or kind[0] == "gif" or len(data) >= MAX_BODY_PICTURE:
            log.warning("wechat.picture_skipped", channel=self.name, picture=path.name, size=len(data),
                        reason="WeChat takes JPEG or PNG under 1 MB in an article")
            return None
        key = hashlib.sha256(data).hexdigest()
        if key not in self._pictures:
            body = await self.call("POST", "cgi-bin/media/uploadimg", what=f"upload the picture {path.name} of {what}",
                                   files={"media": (f"{key[:16]}.{kind[0]}", data, kind[1])})
            self._pictures[key] = _field(body, "url", "the picture upload")
        return self._pictures[key]


def _field(body: dict[str, Any], key: str, what: str) -> str:
    value = body.get(key)
    if not value:
        raise TransientError(f"WeChat answered {what} without a {key}: {str(body)[:200]}")
    return str(value)


__all__ = ["Missing", "WechatApi", "WechatOptions", "fit", "matches", "next_midnight_china", "picture_kind"]
