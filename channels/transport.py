"""The HTTP transport under every channel's client: httpx's API above, aiohttp's connection pool and parser below.

The adapters speak httpx: its requests, responses and errors (channels/http.py maps the errors to transient or
permanent). Under the client, httpx's own transport (httpcore on anyio, pure Python) cost the daemon's event loop
more than the rest of a send put together: with only this transport changed, the fan-out bench's raw rate went
from ~715 to ~1 300 deliveries/s (docs/BENCHMARKS.md). `AiohttpTransport` hands each request to an aiohttp
session (its HTTP parser is compiled) and gives httpx an `httpx.Response` back, so nothing above it changes. What
it keeps of httpx's behaviour, and the tests hold it to (tests/channels/test_transport.py):

- **Errors**: every aiohttp failure becomes the httpx error that names it: a refused connection `ConnectError`,
  a connection dropped before the answer `RemoteProtocolError`, a reset `ReadError`, a timeout `ConnectTimeout`,
  `ReadTimeout` or `PoolTimeout`, an answer that is not HTTP `RemoteProtocolError`. Nothing of aiohttp's own
  escapes: the dispatcher takes an exception an adapter was not meant to raise for a defect and fails the row for
  good, where a dropped connection is worth another try. (That is why this is not the `httpx-aiohttp` package:
  it reports a dropped connection as a connect timeout and lets aiohttp's parse errors through.)
- **Timeouts**: httpx's connect, read and pool timeouts are aiohttp's `sock_connect`, `sock_read` and `connect`
  (the wait for a connection from the pool, TCP connect included). Writing a body has no timeout of its own in
  aiohttp; every adapter call is bounded by the dispatcher's deadline anyway (publisher/dispatch/policy.py).
- **The bytes on the wire**: the URL exactly as httpx encoded it (aiohttp must not re-quote a signed query), the
  headers httpx set and no others (aiohttp's automatic Accept, Accept-Encoding, User-Agent and Content-Type are
  off), a streamed body (multipart uploads) streamed. Cookies and redirects stay httpx's (aiohttp's cookie jar is
  off, and it never follows a redirect); the body is decompressed by httpx, not by aiohttp.
- **Limits**: `max_connections` is the pool's size; a connection idles `keepalive_expiry` seconds at most.

Proxies from the environment are httpx's: it mounts its own transport for them, and this one never sees those
requests.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
from multidict import CIMultiDict
from yarl import URL

# aiohttp adds these when a request lacks them; httpx sets what it means to send, and nothing more may go out
_NOT_AUTOMATIC = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
_MAX_HEADER = 16 * 1024  # one header line, as h11 (httpx's own parser) allows a whole header block
KEEPALIVE_S = 5.0  # httpx's default keep-alive expiry


def as_httpx_error(exc: BaseException, request: httpx.Request, *, pool_full: bool = False) -> Exception:
    """The httpx error for an aiohttp (or socket) failure on `request`. aiohttp has one class for a timeout
    waiting for a free connection and for one connecting: `pool_full` tells them apart."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        if pool_full:
            return httpx.PoolTimeout(f"no free connection in the pool ({text})", request=request)
        return httpx.ConnectTimeout(text, request=request)
    if isinstance(exc, TimeoutError):  # sock_read (SocketTimeoutError) and any other wait
        return httpx.ReadTimeout(text, request=request)
    if isinstance(exc, aiohttp.NonHttpUrlClientError):
        return httpx.UnsupportedProtocol(text, request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.InvalidURL(text)
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, unreachable, DNS, TLS handshake
        return httpx.ConnectError(text, request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(text, request=request)
    if isinstance(exc, aiohttp.ClientConnectionResetError):
        return httpx.WriteError(text, request=request)
    if isinstance(exc, OSError | aiohttp.ClientConnectionError):  # ClientOSError: a reset, a broken pipe
        return httpx.ReadError(text, request=request)
    return httpx.TransportError(text, request=request)


_FAILURES = (aiohttp.ClientError, OSError, TimeoutError)


class _Body(httpx.AsyncByteStream):
    """The answer's body as aiohttp receives it; a failure while reading it is an httpx error too."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response, self._request = response, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except _FAILURES as exc:
            raise as_httpx_error(exc, self._request) from exc

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx's async transport on one aiohttp session (made at the first request: it needs the running loop)."""

    def __init__(self, limits: httpx.Limits, verify: ssl.SSLContext | bool = True) -> None:
        self._limits = limits
        self._ssl = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0, limit_per_host=0, ssl=self._ssl,
                keepalive_timeout=KEEPALIVE_S if self._limits.keepalive_expiry is None else self._limits.keepalive_expiry)
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False, trust_env=False,
                skip_auto_headers=_NOT_AUTOMATIC, max_line_size=_MAX_HEADER, max_field_size=_MAX_HEADER)
        return self._session

    def _pool_full(self) -> bool:
        """Every connection of the pool is in use (aiohttp keeps no public count: read, with a safe default)."""
        limit = self._limits.max_connections
        connector = self._session.connector if self._session is not None else None
        return bool(limit) and len(getattr(connector, "_acquired", ())) >= (limit or 0)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        headers = CIMultiDict((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw)
        headers.popall("Transfer-Encoding", None)  # aiohttp frames a streamed body itself
        body: bytes | httpx.AsyncByteStream | None
        try:
            body = request.content or None
        except httpx.RequestNotRead:  # a streamed body (a multipart upload)
            assert isinstance(request.stream, httpx.AsyncByteStream)
            body = request.stream
        try:
            response = await self._open().request(
                request.method, URL(str(request.url), encoded=True), headers=headers, data=body,
                allow_redirects=False, server_hostname=request.extensions.get("sni_hostname"),
                timeout=aiohttp.ClientTimeout(total=None, connect=timeout.get("pool"),
                                              sock_connect=timeout.get("connect"), sock_read=timeout.get("read")))
        except _FAILURES as exc:
            raise as_httpx_error(exc, request, pool_full=self._pool_full()) from exc
        version = response.version
        return httpx.Response(
            status_code=response.status, headers=response.raw_headers, stream=_Body(response, request),
            request=request, extensions={
                "http_version": f"HTTP/{version.major}.{version.minor}".encode() if version else b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("latin-1", "replace")})

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Cookies(httpx.Cookies):
    """httpx's cookie jar, which reads an answer only when it sets a cookie: httpx hands every answer to the
    standard library's cookie machinery (two adapter objects and a header scan), 4 % of the loop at fan-out speed."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            super().extract_cookies(response)


class ChannelClient(httpx.AsyncClient):
    """httpx's client as the channels use it: on `AiohttpTransport`, with the cookie jar above."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._cookies = _Cookies(self._cookies)


def channel_client(*, timeout: float, concurrency: int, user_agent: str = "publisher") -> httpx.AsyncClient:
    """A channel's client, as the daemon makes one per channel: its timeout, a pool of `2 × concurrency`
    connections (keeping `concurrency` alive), on `AiohttpTransport`."""
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency)
    return ChannelClient(timeout=httpx.Timeout(timeout), limits=limits, transport=AiohttpTransport(limits),
                         headers={"User-Agent": user_agent})


__all__ = ["AiohttpTransport", "ChannelClient", "as_httpx_error", "channel_client"]
