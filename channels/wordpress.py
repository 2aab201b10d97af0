"""WordPress (the bureau's own site) through the REST API v2, with an application password.

The body is rendered from Markdown (CommonMark and tables) and sanitized with nh3 whatever it holds.
WordPress has no idempotency key, so every post carries a slug derived from the item id that
survives WordPress's slug sanitizing; `find` looks that slug up before a resend, and a create goes
in as a draft that is published only after every other post with the slug has gone to the trash.
Category term ids are looked up by slug (and created when missing), because WordPress drops
unknown ids without a word. Attachments are uploaded to the media library and linked at the end.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import re
from collections.abc import Collection
from pathlib import PurePath
from typing import Any, Literal

import httpx
import structlog
from pydantic import SecretStr, field_validator

from channels.base import ChannelError, ChannelOptions, PermanentError, Receipt
from channels.http import GONE, HttpChannel, RemoteSaid
from channels.render import render_html
from publisher.model import Attachment, Revision

log = structlog.get_logger()

FIND_STATUSES = "publish,draft,future,pending,private"  # everything but trash: a trashed post is retracted
_SAFE_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_MARKER = re.compile(r"<!-- publisher item=\S+ revision=(\d+) -->")


def slug_for(item_id: str, prefix: str = "item-") -> str:
    """A slug WordPress keeps as it is: ids already in slug form pass through; others get a hash suffix.

    WordPress lowercases slugs and percent-encodes anything non-ASCII, so "A" and "a" would meet and
    a Chinese id would come back encoded; the hash of the exact id keeps such ids apart and findable.
    """
    if _SAFE_SLUG.fullmatch(item_id) and len(item_id) <= 150:
        return prefix + item_id
    readable = re.sub(r"[^a-z0-9]+", "-", item_id.lower()).strip("-")[:120].strip("-")
    digest = hashlib.sha256(item_id.encode("utf-8")).hexdigest()[:10]
    return f"{prefix}{readable}-{digest}" if readable else f"{prefix}{digest}"


class WordPress(HttpChannel):
    """Posts on a WordPress site; remote_id is the post id, url its permalink."""

    type_name = "wordpress"
    default_rate_limit = None  # WordPress documents no limit of its own; a host's limit arrives as 429
    service = "WordPress"
    url_option = "base_url"
    error_code_field = "code"  # {"code", "message", "data": {"status"}}

    class Options(ChannelOptions):
        base_url: str  # the site root; the REST root is base_url + "/wp-json/"
        username: str
        app_password: SecretStr
        status: Literal["publish", "draft", "pending", "private"] = "publish"
        force_delete: bool = False  # False: a retraction goes to the trash, where an admin can restore it
        category_map: dict[str, str] = {}  # our category key → WordPress category slug (default: the key)
        slug_prefix: str = "item-"

        @field_validator("base_url")
        @classmethod
        def _strip_slash(cls, value: str) -> str:
            return value.rstrip("/")

        @field_validator("slug_prefix")
        @classmethod
        def _prefix_survives_sanitizing(cls, value: str) -> str:
            if not re.fullmatch(r"([a-z0-9]+-?)*", value):
                raise ValueError("slug_prefix may hold only lower-case ASCII letters, digits and single dashes")
            return value

    options: Options

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._api = self.options.base_url + "/wp-json/"
        self._auth = httpx.BasicAuth(self.options.username, self.options.app_password.get_secret_value())
        self._terms: dict[str, int] = {}  # category slug → term id, for the life of the adapter

    # --- the five calls ---------------------------------------------------------------------------

    async def publish(self, rev: Revision) -> Receipt:
        """Create the post safely without an idempotency key: as a draft carrying the item's slug, then keep
        the oldest post with that slug (an earlier attempt's create may have landed after its timeout), trash
        any other, and only then give the kept one the configured status, with this revision's content. A
        create that lands late stays a draft, so a peer slower than the timeout never shows the item twice."""
        slug = slug_for(rev.item_id, self.options.slug_prefix)
        payload, media = await self._payload(rev, slug, {})
        draft = {**payload, "status": "draft"}  # a draft keeps the slug as given: wp_unique_post_slug() skips it
        created = self._json(await self._call("POST", "wp/v2/posts", "create the post", json=draft), "post")
        posts = sorted((p for p in await self._with_slug(slug) if p.get("slug") == slug), key=lambda p: int(p["id"]))
        keep = posts[0] if posts else created
        for extra in posts[1:]:
            await self.retract(Receipt(remote_id=str(extra["id"])))  # its slug becomes <slug>__trashed
            log.warning("wordpress.duplicate_trashed", channel=self.name, post_id=extra["id"], kept=keep["id"],
                        item_id=rev.item_id)
        resp = await self._call("POST", f"wp/v2/posts/{keep['id']}", "publish the post", json=payload)
        post = self._json(resp, "post")
        if post.get("slug") != slug and self.options.status == "publish":
            # another post holds our slug, so `find` cannot see this one; an admin should rename it
            log.warning("wordpress.slug_taken", channel=self.name, item_id=rev.item_id, wanted=slug, got=post.get("slug"))
        log.info("wordpress.post_created", channel=self.name, post_id=post.get("id"), item_id=rev.item_id,
                 revision=rev.revision)
        return self._receipt(post, media)

    async def update(self, rev: Revision, receipt: Receipt) -> Receipt:
        slug = slug_for(rev.item_id, self.options.slug_prefix)
        payload, media = await self._payload(rev, slug, dict(receipt.extra.get("media", {})))
        resp = await self._call("POST", f"wp/v2/posts/{receipt.remote_id}", "update the post", json=payload)
        post = self._json(resp, "post")
        log.info("wordpress.post_updated", channel=self.name, post_id=receipt.remote_id, item_id=rev.item_id,
                 revision=rev.revision)
        return self._receipt(post, media)

    async def retract(self, receipt: Receipt) -> None:
        params = {"force": "true"} if self.options.force_delete else {}
        resp = await self._call("DELETE", f"wp/v2/posts/{receipt.remote_id}", "retract the post", params=params,
                                ok={200} | GONE)
        if resp.status_code != 200:
            # a retraction repeated after a lost answer finds the post already trashed or deleted
            code = self.remote_said(resp).code
            if code not in ("rest_already_trashed", "rest_post_invalid_id"):
                raise self.failure(resp, "retract the post")
            log.info("wordpress.post_already_gone", channel=self.name, post_id=receipt.remote_id, code=code)
            return
        event = "wordpress.post_deleted" if self.options.force_delete else "wordpress.post_trashed"
        log.info(event, channel=self.name, post_id=receipt.remote_id)

    async def find(self, rev: Revision) -> Receipt | None:
        """The post of this item with the configured status (a draft an interrupted create left is not it:
        the next create keeps that draft and gives it the status)."""
        slug = slug_for(rev.item_id, self.options.slug_prefix)
        wanted = {self.options.status} | ({"future"} if self.options.status == "publish" else set())
        for post in sorted(await self._with_slug(slug), key=lambda p: int(p["id"])):
            if post.get("slug") == slug and post.get("status") in wanted:
                receipt = self._receipt(post, {})
                log.info("wordpress.post_found", channel=self.name, post_id=receipt.remote_id, item_id=rev.item_id,
                         revision=receipt.extra.get("revision"))
                return receipt
        return None

    async def _with_slug(self, slug: str) -> list[dict[str, Any]]:
        params = {"slug": slug, "status": FIND_STATUSES, "context": "edit", "per_page": 100}
        posts: list[dict[str, Any]] = self._json(await self._call("GET", "wp/v2/posts", "look up the post",
                                                                  params=params), "list")
        return posts

    async def verify(self, receipt: Receipt) -> bool:
        resp = await self._call("GET", f"wp/v2/posts/{receipt.remote_id}", "read the post back", ok={200, 404})
        if resp.status_code == 404:
            if self.remote_said(resp).code != "rest_post_invalid_id":
                raise self.failure(resp, "read the post back")
            return False
        post = self._json(resp, "post")
        if post.get("status") != "publish":
            return False
        link = post.get("link") or receipt.url
        if not link:
            return False
        return await self.page_is_live(link, what="open the published page")

    # --- rendering --------------------------------------------------------------------------------

    async def _payload(self, rev: Revision, slug: str, media: dict[str, dict[str, Any]]
                       ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        category = await self._category_id(rev)
        links: list[tuple[str, str]] = []
        for index, att in enumerate(rev.attachments, start=1):
            data = await asyncio.to_thread(att.path.read_bytes)
            key = f"{att.name}:{hashlib.sha256(data).hexdigest()[:16]}"
            if key not in media:  # an unchanged file is not uploaded again with each revision
                media[key] = await self._upload(att, data, f"{slug}-{index}")
            links.append((att.name, media[key]["url"]))
        content = render_html(rev.body)
        if links:
            rows = "".join(f'<li><a href="{html.escape(url)}">{html.escape(name)}</a></li>' for name, url in links)
            content += f"\n<h2>附件</h2>\n<ul>{rows}</ul>"
        content += f"\n<!-- publisher item={slug} revision={rev.revision} -->"
        payload = {
            "title": html.escape(rev.title, quote=False),  # a title is plain text; WordPress reads it as HTML
            "content": content,
            "excerpt": html.escape(rev.short_summary, quote=False),
            "status": self.options.status,
            "slug": slug,
            "categories": [category],
        }
        return payload, media

    async def _category_id(self, rev: Revision) -> int:
        slug = self.options.category_map.get(rev.category, rev.category)
        if slug in self._terms:
            return self._terms[slug]
        resp = await self._call("GET", "wp/v2/categories", "look up the category", params={"slug": slug})
        found = self._json(resp, "list")
        if found:
            term_id = int(found[0]["id"])
        else:
            body = {"name": rev.category_name or slug, "slug": slug}
            resp = await self._call("POST", "wp/v2/categories", "create the category", json=body, ok=(201, 400))
            if resp.status_code == 400:  # created meanwhile by someone else: WordPress names the term
                try:
                    term_id = int(resp.json()["data"]["term_id"])
                except (ValueError, KeyError, TypeError):
                    raise self.failure(resp, "create the category") from None
            else:
                term_id = int((self._json(resp, "term"))["id"])
                log.info("wordpress.category_created", channel=self.name, slug=slug, term_id=term_id)
        self._terms[slug] = term_id
        return term_id

    async def _upload(self, att: Attachment, data: bytes, stem: str) -> dict[str, Any]:
        # WordPress reads only `filename=` and drops '%' from it, so the stored name is ASCII; the
        # editor's own file name travels as the title and is the link's text.
        suffix = PurePath(att.name).suffix.lower()
        filename = stem + (suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else "")
        headers = {"Content-Type": att.content_type, "Content-Disposition": f'attachment; filename="{filename}"'}
        resp = await self._call("POST", "wp/v2/media", f"upload {att.name}", content=data, headers=headers,
                                params={"title": att.name}, ok=(201,))
        item = self._json(resp, "media")
        log.info("wordpress.media_uploaded", channel=self.name, media_id=item.get("id"), size=len(data))
        return {"id": item.get("id"), "url": item.get("source_url")}

    # --- the wire ---------------------------------------------------------------------------------

    async def _call(self, method: str, path: str, what: str, *, ok: Collection[int] = (200, 201),
                    **kw: Any) -> httpx.Response:
        return await self.request(method, self._api + path, what=what, ok=ok, auth=self._auth, **kw)

    def remote_said(self, resp: httpx.Response) -> RemoteSaid:
        said = super().remote_said(resp)
        return RemoteSaid(said.code, re.sub(r"<[^>]+>", "", said.message))  # the message without its <strong> marks

    def protocol_error(self, resp: httpx.Response, what: str, said: RemoteSaid) -> ChannelError | None:
        if said.code == "rest_upload_sideload_error":  # a refused file type stays refused: no use retrying
            return PermanentError(self.describe(resp, what, said) + "; WordPress does not accept this file type",
                                  status=resp.status_code, remote=resp.text[:500])
        return None

    def hint(self, resp: httpx.Response, said: RemoteSaid) -> str | None:
        if said.code is None:
            return "the answer holds no WordPress error: is base_url the site root?"
        if resp.status_code == 401 or _anonymous(resp, said.code):
            # WordPress 6.1 never says incorrect_password over REST: a wrong password or user makes the
            # request anonymous, so a write answers 401 rest_cannot_*, a look-up of drafts 400
            anonymous = said.code not in ("incorrect_password", "invalid_username", "invalid_email")
            return (("WordPress took the request as anonymous; " if anonymous else "")
                    + "check the channel's username and application password"
                    " (WordPress: Users → Profile → Application Passwords)")
        if resp.status_code == 403:
            return "the WordPress user lacks the right: give it the Editor or Administrator role"
        return None

    def _json(self, resp: httpx.Response, kind: str) -> Any:
        data = self.json_body(resp, f"read the REST {kind}")
        if (kind == "list") != isinstance(data, list) or not isinstance(data, list | dict):
            raise self.unreadable(resp, f"read the REST {kind}")
        return data

    def _receipt(self, post: dict[str, Any], media: dict[str, dict[str, Any]]) -> Receipt:
        extra: dict[str, Any] = {"slug": post.get("slug"), "modified_gmt": post.get("modified_gmt"), "media": media}
        raw = (post.get("content") or {}).get("raw") or ""
        if marker := _MARKER.search(raw):
            extra["revision"] = int(marker.group(1))
        return Receipt(remote_id=str(post["id"]), url=post.get("link"), extra=extra)


def _anonymous(resp: httpx.Response, code: str | None) -> bool:
    """An answer that only an anonymous request gets: edit context refused, or non-public statuses forbidden."""
    if code == "rest_forbidden_context":
        return True
    try:
        detail = resp.json()["data"]["details"]["status"]["code"]
        return code == "rest_invalid_param" and detail == "rest_forbidden_status"
    except (ValueError, KeyError, TypeError):
        return False
