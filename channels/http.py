"""The HTTP plumbing the network adapters share: one call, one error mapping, one feed cache, one page check.

An adapter subclasses `HttpChannel` and keeps only its protocol: endpoints, bodies, credentials and what
an answer means. Everything below is written once:

- `request`: the call on the injected `httpx.AsyncClient` (made once per channel by the daemon, with
  the channel's `timeout`); a transport failure or a status outside `ok` raises the typed error.
- `failure`: a refused answer as a typed error. 408, 425, 429 and 5xx are worth another try (429 as
  `RateLimited`), with `Retry-After` in either of its forms (RFC 9110 §10.2.3); any other status is
  permanent. The remote's own message is kept: the adapter names where its protocol puts it
  (`error_code_field`, `error_message_field`). A protocol that means more by an answer than its status
  says so in `protocol_error` (Weibo's error codes, Mastodon's 404 for a status that is gone), adds a
  next step in `hint`, or reads its wait elsewhere in `retry_after` (Mastodon's `X-RateLimit-Reset`).
- `read_feed`: an RSS/Atom feed with conditional GET (ETag / Last-Modified); a 304 hands back what was
  parsed last time.
- `page_is_live`: the item's public page, fetched without credentials: 2xx live, 404/410 not live.

Log events are named after the adapter's type: `<type>.refused`, `<type>.feed_not_modified`,
`<type>.feed_bozo`; each carries `channel=`.
"""

from __future__ import annotations

import email.utils
import io
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import feedparser
import httpx
import structlog

from channels.base import Channel, ChannelError, PermanentError, RateLimited, TransientError

log = structlog.get_logger()

SUCCESS = frozenset(range(200, 300))
GONE = frozenset({404, 410})
RETRYABLE_STATUS = frozenset({408, 425, 429})  # and every 5xx
FEED_ACCEPT = "application/atom+xml, application/rss+xml;q=0.9, */*;q=0.1"
REMOTE_CHARS = 500  # how much of an answer an error keeps


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP-date (RFC 9110 §5.6.7) as an aware datetime, or None when it is not one."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """`Retry-After` is either delta-seconds or an HTTP-date (RFC 9110 §10.2.3); seconds from `now`."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    when = parse_http_date(value)
    return None if when is None else max(0.0, (when - now).total_seconds())


def is_retryable(status: int) -> bool:
    return status in RETRYABLE_STATUS or status >= 500


@dataclass(frozen=True)
class RemoteSaid:
    """What the remote said about a refusal, in its protocol's own terms."""

    code: str | None
    message: str


@dataclass(frozen=True)
class _Fetched:
    etag: str | None
    last_modified: str | None
    parsed: Any  # feedparser's result


class HttpChannel(Channel):
    """Base of the adapters that speak HTTP; see the module docstring for what it owns."""

    service: ClassVar[str] = "the server"  # how error messages name the remote
    url_option: ClassVar[str] = "url"  # the option a person checks when the answers make no sense
    error_code_field: ClassVar[str | None] = None  # the key of the protocol's error code in a JSON answer
    error_message_field: ClassVar[str] = "message"  # the key of its human-readable message
    # A success answer that is not the JSON the protocol promises: most often base_url points elsewhere.
    unreadable_answer: ClassVar[type[ChannelError]] = PermanentError

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._feeds: dict[str, _Fetched] = {}

    # --- the call ----------------------------------------------------------------------------

    async def request(self, method: str, url: str, *, what: str, ok: Collection[int] = SUCCESS,
                      **kw: Any) -> httpx.Response:
        """One call on the shared client, which carries the channel's timeout; `what` completes "could not …"."""
        try:
            resp = await self.http.request(method, url, **kw)
        except httpx.HTTPError as exc:
            raise self.transport_error(exc, what) from exc
        except httpx.InvalidURL as exc:
            raise PermanentError(f"{self.display_name}: could not {what}: the URL is not valid ({exc}); "
                                 "fix it in config.yaml") from exc
        if resp.status_code not in ok:
            raise self.failure(resp, what)
        return resp

    def json_body(self, resp: httpx.Response, what: str) -> Any:
        """The answer's JSON; `unreadable_answer` when it is none."""
        try:
            return resp.json()
        except ValueError:
            raise self.unreadable(resp, what) from None

    def unreadable(self, resp: httpx.Response, what: str) -> ChannelError:
        """An answer that is not what the protocol promises."""
        return self.unreadable_answer(
            f"{self.display_name}: could not {what}: {self.service} answered HTTP {resp.status_code} with something "
            f"the protocol does not describe; check the channel's {self.url_option} in config.yaml",
            status=resp.status_code, remote=resp.text[:REMOTE_CHARS])

    # --- the error mapping -------------------------------------------------------------------

    def transport_error(self, exc: httpx.HTTPError, what: str) -> ChannelError:
        """Timeouts, refused and reset connections are worth another try; a URL no client can use is not."""
        text = f"{self.display_name}: could not {what}: {type(exc).__name__}: {exc}".rstrip(": ")
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.TooManyRedirects):
            return PermanentError(f"{text}; check the channel's URLs in config.yaml")
        return TransientError(text)

    def failure(self, resp: httpx.Response, what: str) -> ChannelError:
        """A refused answer as a typed error: the protocol's own reading first, then the HTTP status."""
        said = self.remote_said(resp)
        log.warning(f"{self.type_name}.refused", channel=self.name, call=what, http_status=resp.status_code,
                    error_code=said.code, error=said.message[:200])
        special = self.protocol_error(resp, what, said)
        if special is not None:
            return special
        return self.status_error(resp, self.describe(resp, what, said))

    def status_error(self, resp: httpx.Response, message: str) -> ChannelError:
        """The retry etiquette of HTTP: 429 rate limited, 408/425/5xx transient, anything else permanent."""
        status, remote = resp.status_code, resp.text[:REMOTE_CHARS]
        if status == 429:
            return RateLimited(message, status=status, remote=remote, retry_after=self.retry_after(resp))
        if is_retryable(status):
            return TransientError(message, status=status, remote=remote, retry_after=self.retry_after(resp))
        return PermanentError(message, status=status, remote=remote)

    def describe(self, resp: httpx.Response, what: str, said: RemoteSaid) -> str:
        """'<channel>: could not <what>: <service> answered HTTP <status> <code>: <message>; <hint>'."""
        text = f"{self.display_name}: could not {what}: {self.service} answered HTTP {resp.status_code}"
        if said.code:
            text += f" {said.code}"
        if said.message:
            text += f": {said.message}"
        hint = self.hint(resp, said)
        return f"{text}; {hint}" if hint else text

    # --- hooks for the protocol --------------------------------------------------------------

    def remote_said(self, resp: httpx.Response) -> RemoteSaid:
        """The protocol's error code and message out of a JSON answer (empty when there are none)."""
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return RemoteSaid(None, "")
        code = body.get(self.error_code_field) if self.error_code_field else None
        message = body.get(self.error_message_field)
        return RemoteSaid(None if code is None else str(code), "" if message is None else str(message))

    def protocol_error(self, resp: httpx.Response, what: str, said: RemoteSaid) -> ChannelError | None:
        """An answer the protocol means more by than its HTTP status; None leaves it to the status."""
        return None

    def hint(self, resp: httpx.Response, said: RemoteSaid) -> str | None:
        """What a person should do next, added to the message."""
        return None

    def retry_after(self, resp: httpx.Response) -> float | None:
        """Seconds to wait before another try, when the answer says."""
        return parse_retry_after(resp.headers.get("Retry-After"), self.clock.now())

    # --- reading what readers read -----------------------------------------------------------

    async def read_feed(self, url: str, *, what: str = "read the feed") -> Any:
        """The feed at `url` parsed by feedparser, asked for with conditional GET; a 304 reuses the last parse."""
        seen = self._feeds.get(url)
        headers = {"Accept": FEED_ACCEPT}
        if seen and seen.etag:
            headers["If-None-Match"] = seen.etag
        if seen and seen.last_modified:
            headers["If-Modified-Since"] = seen.last_modified
        resp = await self.request("GET", url, what=f"{what} {url}", ok=SUCCESS | {304} if seen else SUCCESS,
                                  headers=headers)
        if resp.status_code == 304 and seen is not None:
            log.debug(f"{self.type_name}.feed_not_modified", channel=self.name, url=url)
            return seen.parsed
        # A stream, so that feedparser never takes the bytes for a URL or a file name to open; only ids,
        # links and titles are read, so the HTML sanitizing and URI resolving are skipped.
        parsed = feedparser.parse(io.BytesIO(resp.content), sanitize_html=False, resolve_relative_uris=False,
                                  response_headers={"content-type": resp.headers.get("content-type", "")})
        if parsed.bozo:
            log.warning(f"{self.type_name}.feed_bozo", channel=self.name, url=url,
                        error=str(parsed.get("bozo_exception")))
        self._feeds[url] = _Fetched(resp.headers.get("ETag"), resp.headers.get("Last-Modified"), parsed)
        return parsed

    async def page_is_live(self, url: str, *, what: str = "open the public page") -> bool:
        """The public page as a reader opens it (no credentials, redirects followed): 2xx live, 404/410 not."""
        resp = await self.request("GET", url, what=f"{what} {url}", ok=SUCCESS | GONE, follow_redirects=True)
        return resp.status_code in SUCCESS
