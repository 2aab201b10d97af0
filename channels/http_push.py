"""`http_push`: push items as JSON to a portal that has its own push API (the city government portal).

Such portals follow no standard, so the wire shape is configuration: a Jinja2 template renders the
JSON body, dotted paths pick the id and URL out of the answer, and URL templates name the update,
delete and lookup endpoints. The defaults fit the usual shape (and the sandbox's portal):
`POST {url}` → `{"code": 0, "data": {"id", "url"}}`, `PUT`/`DELETE {url}/{remote_id}`, 409 on a
duplicate `source_id`.

Crash recovery (`find`): with `find_url` the portal is asked by our item id. Without it, the
`verify_feed` is searched by title (the id then comes from `feed_id_pattern` applied to the link, or
is the link itself). With neither, `find` returns None: a resend is then still safe on a portal that
refuses a duplicate `source_id` with 409, because `publish` takes that answer as "already there".

Verification reads `verify_feed` (RSS/Atom) with conditional GET; without a feed, the article page
itself must answer 200.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import httpx
import jinja2
import structlog
from jinja2.sandbox import SandboxedEnvironment
from pydantic import field_validator

from channels.base import ChannelOptions, ManualTask, PermanentError, Receipt
from channels.http import GONE, SUCCESS, HttpChannel, RemoteSaid, is_retryable
from channels.http_push_auth import Auth
from channels.render import render_html, render_text
from publisher.clock import CHINA
from publisher.model import Revision

log = structlog.get_logger()

DEFAULT_BODY = """{
  "source_id": {{ rev.item_id | tojson }},
  "title": {{ rev.title | tojson }},
  "content": {{ html | tojson }},
  "column": {{ column | tojson }},
  "summary": {{ summary | tojson }},
  "publish_time": {{ publish_time | tojson }}
  {%- if rev.source %},
  "source": {{ rev.source | tojson }}{% endif %}
}"""
_HINTS = {
    400: "the portal refused the content: fix the item or the channel's body template",
    401: "check the channel's auth credentials",
    403: "the credentials lack the right: ask the portal's operators",
    404: "it is not on the portal (removed by hand?)",
    422: "the portal refused the content: fix the item or the channel's body template",
}
_URL_FIELDS = {"url": "https://portal.example/api", "remote_id": "1", "item_id": "x", "revision": "1"}


def _environment() -> SandboxedEnvironment:
    # Autoescape would HTML-escape into JSON; values are JSON-encoded through `tojson` instead.
    env = SandboxedEnvironment(autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["tojson"] = lambda value: json.dumps(value, ensure_ascii=False, default=str)  # dates as ISO
    return env


def dig(data: Any, path: str) -> Any:
    """Follow a dotted path ("data.id", "data.0.url") into decoded JSON; None where it leads nowhere."""
    for part in path.split(".") if path else []:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


class HttpPush(HttpChannel):
    """A configurable JSON push to a portal (see the module docstring for the wire defaults)."""

    type_name = "http_push"
    service = "the portal"

    class Options(ChannelOptions):
        url: str  # the create endpoint
        method: Literal["POST", "PUT"] = "POST"
        headers: dict[str, str] = {}
        body: str = DEFAULT_BODY  # Jinja2 template rendering JSON; sees rev, html, text, column, summary, publish_time
        columns: dict[str, str] = {}  # our category key -> the portal's column; default the category's name
        auth: Auth | None = None
        response_id: str = "data.id"
        response_url: str | None = "data.url"
        update_url: str | None = "{url}/{remote_id}"  # None: the portal takes no edits (a person does it)
        update_method: Literal["PUT", "POST", "PATCH"] = "PUT"
        delete_url: str | None = "{url}/{remote_id}"
        find_url: str | None = None  # e.g. "{url}?source_id={item_id}"
        find_results: str = "data"  # path to the list in the find answer; each element has:
        find_id: str = "id"
        find_link: str = "url"
        verify_feed: str | None = None
        feed_id_pattern: str | None = None  # regex with one group: the portal id inside a feed link

        @field_validator("body")
        @classmethod
        def _template_compiles(cls, value: str) -> str:
            try:
                _environment().from_string(value)
            except jinja2.TemplateSyntaxError as exc:
                raise ValueError(f"body template, line {exc.lineno}: {exc.message}") from exc
            return value

        @field_validator("update_url", "delete_url", "find_url")
        @classmethod
        def _url_template(cls, value: str | None) -> str | None:
            if value is not None:
                try:
                    value.format_map(_URL_FIELDS)
                except (KeyError, ValueError, IndexError) as exc:
                    raise ValueError(f"URL template {value!r} may use only {{{'}, {'.join(_URL_FIELDS)}}}: "
                                     f"{exc}") from exc
            return value

        @field_validator("feed_id_pattern")
        @classmethod
        def _one_group(cls, value: str | None) -> str | None:
            try:
                groups = re.compile(value).groups if value is not None else 1
            except re.error as exc:
                raise ValueError(f"feed_id_pattern: {exc}") from exc
            if groups != 1:
                raise ValueError("feed_id_pattern needs exactly one (group): the portal id")
            return value

    options: Options

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._template = _environment().from_string(self.options.body)

    # --- the five calls -------------------------------------------------------------------------

    async def publish(self, rev: Revision) -> Receipt:
        resp = await self._send(self.options.method, self.options.url, self._render(rev), f"publish {rev.item_id}",
                                ok=SUCCESS | {409})
        if resp.status_code == 409:
            receipt = self._receipt(resp, rev) or await self.find(rev)
            if receipt is None:
                raise PermanentError(f"{self.display_name} says item {rev.item_id} is there already but it "
                                     "cannot be found: set find_url, or look it up on the portal",
                                     status=409, remote=resp.text[:500])
            log.info("http_push.already_there", channel=self.name, item_id=rev.item_id, remote_id=receipt.remote_id)
            return receipt
        receipt = self._receipt(resp, rev)
        if receipt is None:
            raise PermanentError(f"{self.display_name} accepted item {rev.item_id} but its answer has no "
                                 f"{self.options.response_id!r}: check response_id", status=resp.status_code,
                                 remote=resp.text[:500])
        log.info("http_push.created", channel=self.name, item_id=rev.item_id, remote_id=receipt.remote_id)
        return receipt

    async def update(self, rev: Revision, receipt: Receipt) -> Receipt:
        if not self.options.update_url:
            raise ManualTask(f"{self.display_name} takes no edits over its API: change "
                             f"{receipt.url or receipt.remote_id} by hand")
        url = self._url(self.options.update_url, remote_id=receipt.remote_id, rev=rev)
        resp = await self._send(self.options.update_method, url, self._render(rev), f"update {rev.item_id}")
        new = self._receipt(resp, rev)  # many portals answer an edit with {"code": 0} alone
        log.info("http_push.updated", channel=self.name, item_id=rev.item_id, remote_id=receipt.remote_id)
        return Receipt(remote_id=new.remote_id if new else receipt.remote_id,
                       url=(new.url if new and new.url else receipt.url),
                       extra={**receipt.extra, "title": rev.title})

    async def retract(self, receipt: Receipt) -> None:
        if not self.options.delete_url:
            raise ManualTask(f"{self.display_name} takes no deletions over its API: remove "
                             f"{receipt.url or receipt.remote_id} by hand")
        resp = await self._send("DELETE", self._url(self.options.delete_url, remote_id=receipt.remote_id),
                                b"", f"retract {receipt.remote_id}", ok=SUCCESS | GONE)
        if resp.status_code in GONE:
            # A retry after a lost answer finds it gone: that is the outcome we wanted.
            log.info("http_push.already_gone", channel=self.name, remote_id=receipt.remote_id)
            return
        log.info("http_push.retracted", channel=self.name, remote_id=receipt.remote_id)

    async def find(self, rev: Revision) -> Receipt | None:
        if self.options.find_url:
            resp = await self._send("GET", self._url(self.options.find_url, rev=rev), None, f"look up {rev.item_id}",
                                    ok=SUCCESS | {404})
            if resp.status_code == 404:
                return None
            found = dig(self.json_body(resp, f"look up {rev.item_id}"), self.options.find_results)
            for hit in found if isinstance(found, list) else [found] if isinstance(found, dict) else []:
                remote_id = dig(hit, self.options.find_id)
                if remote_id is not None:
                    link = dig(hit, self.options.find_link)
                    return Receipt(remote_id=str(remote_id), url=str(link) if link else None,
                                   extra={"title": rev.title})
            return None
        if self.options.verify_feed:
            for entry in await self._feed_entries():
                if entry.get("title") == rev.title and entry.get("link"):
                    link = entry["link"]
                    match = re.search(self.options.feed_id_pattern, link) if self.options.feed_id_pattern else None
                    return Receipt(remote_id=match.group(1) if match else link, url=link,
                                   extra={"title": rev.title, "found_in": "feed"})
        return None

    async def verify(self, receipt: Receipt) -> bool:
        if self.options.verify_feed:
            want_link, want_title = _comparable(receipt.url), receipt.extra.get("title")
            if any((want_link and want_link in {_comparable(e.get("link")), _comparable(e.get("id"))})
                   or (want_title and e.get("title") == want_title) for e in await self._feed_entries()):
                return True
            # A column feed lists only its newest articles: an older one is proven by its own page.
            if not receipt.url:
                return False
        if receipt.url:
            return await self.page_is_live(receipt.url, what="open the article page")
        raise PermanentError(f"{self.display_name}: cannot verify {receipt.remote_id}: the portal gave no "
                             "page URL; set verify_feed")

    # --- the wire -------------------------------------------------------------------------------

    def _render(self, rev: Revision) -> bytes:
        when = (rev.publish_at or self.clock.now()).astimezone(CHINA)
        try:
            rendered = self._template.render(
                rev=rev, html=render_html(rev.body), text=render_text(rev.body), summary=rev.short_summary,
                column=self.options.columns.get(rev.category) or rev.category_name or rev.category,
                publish_time=when.strftime("%Y-%m-%d %H:%M:%S"))
            json.loads(rendered)
        except (jinja2.TemplateError, ValueError) as exc:
            raise PermanentError(f"{self.name}: the body template did not render JSON for item {rev.item_id}: "
                                 f"{exc}; fix `body` in config.yaml") from exc
        return rendered.encode("utf-8")

    def _url(self, template: str, *, remote_id: str = "", rev: Revision | None = None) -> str:
        return template.format_map({
            "url": self.options.url.rstrip("/"), "remote_id": quote(remote_id, safe=""),
            "item_id": quote(rev.item_id, safe="") if rev else "", "revision": rev.revision if rev else ""})

    async def _send(self, method: str, url: str, body: bytes | None, what: str, *,
                    ok: Collection[int] = SUCCESS) -> httpx.Response:
        headers = {"Accept": "application/json", **self.options.headers}
        if body:
            headers["Content-Type"] = "application/json; charset=utf-8"
        if self.options.auth is not None:
            headers.update(self.options.auth.headers(body or b""))
        return await self.request(method, url, what=what, ok=ok, content=body or None, headers=headers)

    def _receipt(self, resp: httpx.Response, rev: Revision) -> Receipt | None:
        # A 409 may come from a proxy or a portal that explains in HTML: then `find` decides.
        data = None
        if resp.content:
            try:
                data = resp.json()
            except ValueError:
                if resp.status_code != 409:
                    raise self.unreadable(resp, f"read the portal's answer for {rev.item_id}") from None
        remote_id = dig(data, self.options.response_id)
        if remote_id is None or isinstance(remote_id, dict | list):
            return None
        link = dig(data, self.options.response_url) if self.options.response_url else None
        return Receipt(remote_id=str(remote_id), url=str(link) if link else None, extra={"title": rev.title})

    def hint(self, resp: httpx.Response, said: RemoteSaid) -> str | None:
        retry = "it will be tried again" if is_retryable(resp.status_code) else "read the portal's answer"
        return _HINTS.get(resp.status_code, retry)

    async def _feed_entries(self) -> list[Any]:
        assert self.options.verify_feed is not None
        return list((await self.read_feed(self.options.verify_feed)).entries)


def _comparable(link: str | None) -> str | None:
    """Links compare without scheme and trailing slash: portals flip between http and https."""
    if not link:
        return None
    parts = urlsplit(link.strip())
    return f"{parts.netloc}{parts.path.rstrip('/')}{'?' + parts.query if parts.query else ''}"
