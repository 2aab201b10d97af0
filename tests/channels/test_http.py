"""The HTTP seam the adapters share (channels/http.py), against a scripted HTTP/1.1 server on loopback."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal

import httpx
import pytest
from structlog.testing import capture_logs

from channels.base import ChannelError, PermanentError, RateLimited, Receipt, TransientError
from channels.http import HttpChannel, RemoteSaid
from channels.transport import AiohttpTransport, channel_client
from publisher.clock import FrozenClock
from publisher.model import Revision

FEED = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><id>tag:bureau.example,2015:f</id><title>t</title>
<updated>2015-03-18T09:00:00Z</updated>
<entry><id>tag:bureau.example,2015:f:1</id><title>%s</title><link href="https://site.example/1"/>
<updated>2015-03-18T09:00:00Z</updated></entry></feed>"""


@dataclass
class Answer:
    """What the peer does with one request: answer it, never answer, or reset the connection."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    action: Literal["answer", "hang", "reset"] = "answer"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class Peer:
    """A loopback HTTP/1.1 server: each path answers by a scripted function; every request is kept."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[Seen], Answer]] = {}
        self.seen: list[Seen] = []
        self.arrived = asyncio.Event()  # set by each request
        self._stop = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.base_url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.base_url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        self._stop.set()  # releases the requests left hanging
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def url(self, path: str) -> str:
        return self.base_url + path

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method, path, _ = head[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
                await reader.readexactly(int(headers.get("content-length", "0")))
                seen = Seen(method, path, headers)
                self.seen.append(seen)
                self.arrived.set()
                answer = self.routes.get(path.split("?")[0], _not_found)(seen)
                if answer.action == "hang":
                    await self._stop.wait()
                    return
                if answer.action == "reset":  # SO_LINGER 0: the close sends RST, as a dropped connection does
                    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                               struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                lines = [f"HTTP/1.1 {answer.status} X", f"Content-Length: {len(answer.body)}",
                         *(f"{k}: {v}" for k, v in answer.headers.items())]
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + answer.body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


def _not_found(seen: Seen) -> Answer:
    return Answer(404)


class Probe(HttpChannel):
    """The smallest HTTP adapter: a protocol whose errors are {"code", "message"}; only the seam is exercised."""

    type_name = "probe"
    service = "the probe"
    error_code_field = "code"

    async def publish(self, rev: Revision) -> Receipt:
        raise NotImplementedError

    async def update(self, rev: Revision, receipt: Receipt) -> Receipt:
        raise NotImplementedError

    async def retract(self, receipt: Receipt) -> None:
        raise NotImplementedError

    async def find(self, rev: Revision) -> Receipt | None:
        raise NotImplementedError

    async def verify(self, receipt: Receipt) -> bool:
        raise NotImplementedError


class SlowDownProbe(Probe):
    """A protocol that says "slow down" with a code inside a 400 and names its wait in its own header."""

    def protocol_error(self, resp: httpx.Response, what: str, said: RemoteSaid) -> ChannelError | None:
        if said.code == "slow_down":
            return RateLimited(self.describe(resp, what, said), status=resp.status_code, retry_after=self.retry_after(resp))
        return None

    def hint(self, resp: httpx.Response, said: RemoteSaid) -> str | None:
        return "ask the probe's operators" if resp.status_code == 403 else None

    def retry_after(self, resp: httpx.Response) -> float | None:
        own = resp.headers.get("X-Wait")
        return float(own) if own else super().retry_after(resp)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    server = Peer()
    await server.start()
    yield server
    await server.stop()


def probe(http: httpx.AsyncClient, clock: FrozenClock, cls: type[Probe] = Probe) -> Probe:
    return cls(name="probe", options=cls.Options(), http=http, clock=clock, display_name="探针")


async def refusal(peer: Peer, http: httpx.AsyncClient, clock: FrozenClock, answer: Answer,
                  cls: type[Probe] = Probe) -> ChannelError:
    peer.routes["/x"] = lambda _: answer
    with pytest.raises(ChannelError) as caught:
        await probe(http, clock, cls).request("POST", peer.url("/x"), what="send x")
    return caught.value


@pytest.mark.parametrize(("status", "error"), [
    (400, PermanentError), (401, PermanentError), (403, PermanentError), (404, PermanentError), (409, PermanentError),
    (422, PermanentError), (408, TransientError), (425, TransientError), (429, RateLimited), (500, TransientError),
    (502, TransientError), (503, TransientError), (504, TransientError), (507, TransientError),
])
async def test_status_maps_to_the_error_class(peer: Peer, http: httpx.AsyncClient, clock: FrozenClock, status: int,
                                              error: type[ChannelError]) -> None:
    """408, 425 and every 5xx are transient, 429 is rate limited, any other refusal is permanent."""
    err = await refusal(peer, http, clock, Answer(status, body=b"nope"))
    assert type(err) is error and err.status == status and err.remote == "nope"
    assert str(err).startswith(f"探针: could not send x: the probe answered HTTP {status}")


async def test_a_status_outside_ok_is_a_refusal_and_one_inside_is_not(peer: Peer, http: httpx.AsyncClient,
                                                                      clock: FrozenClock) -> None:
    """`ok` names the statuses the protocol expects: a 404 named there comes back, a 200 left out is refused."""
    peer.routes["/x"] = lambda _: Answer(404)
    assert (await probe(http, clock).request("GET", peer.url("/x"), what="look", ok={200, 404})).status_code == 404
    peer.routes["/x"] = lambda _: Answer(200)
    with pytest.raises(PermanentError):
        await probe(http, clock).request("GET", peer.url("/x"), what="look", ok={201})


@pytest.mark.parametrize(("status", "retry_after", "expected"), [
    (429, "120", 120.0),
    (503, "7", 7.0),
    (429, "Wed, 18 Mar 2015 09:01:30 GMT", 90.0),  # the clock reads 09:00
    (503, "Wed, 18 Mar 2015 08:00:00 GMT", 0.0),  # a date gone by: try again at once
    (429, "soon", None),
    (429, None, None),
])
async def test_retry_after_in_both_forms(peer: Peer, http: httpx.AsyncClient, clock: FrozenClock, status: int,
                                         retry_after: str | None, expected: float | None) -> None:
    """Retry-After is read as delta-seconds or as an HTTP-date against the injected clock; anything else is no hint."""
    headers = {"Retry-After": retry_after} if retry_after else {}
    err = await refusal(peer, http, clock, Answer(status, headers))
    assert isinstance(err, TransientError) and err.retry_after == expected


async def test_the_remotes_message_is_kept(peer: Peer, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """The protocol's code and message land in the error's text; the answer itself stays in `remote`."""
    body = b'{"code": "rest_invalid_param", "message": "\xe6\xa0\x87\xe9\xa2\x98\xe8\xbf\x87\xe9\x95\xbf", "data": {}}'
    with capture_logs() as logs:
        err = await refusal(peer, http, clock, Answer(400, {"Content-Type": "application/json"}, body))
    assert str(err) == "探针: could not send x: the probe answered HTTP 400 rest_invalid_param: 标题过长"
    assert err.remote == body.decode()
    [refused] = [e for e in logs if e["event"] == "probe.refused"]
    assert (refused["channel"], refused["http_status"], refused["error_code"]) == ("probe", 400, "rest_invalid_param")


async def test_protocol_overrides_go_through_the_seam(peer: Peer, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """An adapter's reading of its own codes, its hint and its own wait header win over the plain status mapping."""
    slow = Answer(400, {"X-Wait": "42", "Retry-After": "5"}, b'{"code": "slow_down", "message": "too fast"}')
    err = await refusal(peer, http, clock, slow, SlowDownProbe)
    assert type(err) is RateLimited and err.retry_after == 42.0 and "too fast" in str(err)
    err = await refusal(peer, http, clock, Answer(503, {"Retry-After": "5"}), SlowDownProbe)
    assert type(err) is TransientError and err.retry_after == 5.0
    err = await refusal(peer, http, clock, Answer(403, body=b'{"code": "forbidden"}'), SlowDownProbe)
    assert type(err) is PermanentError and str(err).endswith("forbidden; ask the probe's operators")


async def test_unreadable_json_is_the_protocols_error(peer: Peer, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """A success answer that is not JSON raises the adapter's `unreadable_answer`, naming the URL option."""
    peer.routes["/x"] = lambda _: Answer(200, body=b"<html>a login page</html>")
    adapter = probe(http, clock)
    resp = await adapter.request("GET", peer.url("/x"), what="read x")
    with pytest.raises(PermanentError, match="check the channel's url") as caught:
        adapter.json_body(resp, "read x")
    assert caught.value.remote == "<html>a login page</html>"


async def test_no_answer_is_a_read_timeout(peer: Peer, clock: FrozenClock) -> None:
    """A server that never answers trips the client's read timeout: transient."""
    peer.routes["/x"] = lambda _: Answer(action="hang")
    async with channel_client(timeout=0.2, concurrency=1) as short:
        with pytest.raises(TransientError, match="ReadTimeout"):
            await probe(short, clock).request("GET", peer.url("/x"), what="read x")


async def test_a_full_pool_is_a_pool_timeout(peer: Peer, clock: FrozenClock) -> None:
    """With the only connection held by an unanswered request, the next one waits out the pool timeout: transient."""
    peer.routes["/x"] = lambda _: Answer(action="hang")
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, pool=0.2), transport=AiohttpTransport(limits)) as one:
        adapter = probe(one, clock)
        held = asyncio.create_task(adapter.request("GET", peer.url("/x"), what="hold the connection"))
        await peer.arrived.wait()
        with pytest.raises(TransientError, match="PoolTimeout"):
            await adapter.request("GET", peer.url("/x"), what="read x")
        held.cancel()
        with pytest.raises(asyncio.CancelledError):
            await held


async def test_a_reset_connection_is_transient(peer: Peer, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """A connection the server drops (RST) before answering is worth another try."""
    peer.routes["/x"] = lambda _: Answer(action="reset")
    with pytest.raises(TransientError) as caught:
        await probe(http, clock).request("GET", peer.url("/x"), what="read x")
    assert caught.value.status is None and "could not read x" in str(caught.value)


async def test_a_refused_connection_is_transient(http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """Nothing listening on the port is a ConnectError: transient."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransientError, match="ConnectError"):
        await probe(http, clock).request("GET", f"http://127.0.0.1:{port}/x", what="read x")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "127.0.0.1/no-scheme", "http://[::1/x"])
async def test_a_url_no_client_can_use_is_permanent(http: httpx.AsyncClient, clock: FrozenClock, url: str) -> None:
    """A URL without a usable scheme, or not a URL at all, is a configuration error, not worth a retry."""
    with pytest.raises(PermanentError, match="config.yaml"):
        await probe(http, clock).request("GET", url, what="read x")


async def test_feed_is_read_with_conditional_get(peer: Peer, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """The second read sends the validators back and a 304 gives the parse kept from the first; a change is re-read."""
    version = {"etag": '"v1"', "title": "first"}

    def feed(seen: Seen) -> Answer:
        validators = {"ETag": version["etag"], "Last-Modified": "Wed, 18 Mar 2015 08:00:00 GMT"}
        if seen.headers.get("if-none-match") == version["etag"]:
            return Answer(304, validators)
        return Answer(200, {"Content-Type": "application/atom+xml", **validators}, FEED % version["title"].encode())

    peer.routes["/feed.xml"] = feed
    adapter = probe(http, clock)
    first = await adapter.read_feed(peer.url("/feed.xml"))
    with capture_logs() as logs:
        again = await adapter.read_feed(peer.url("/feed.xml"))
    assert again is first and [e.title for e in again.entries] == ["first"]
    assert "probe.feed_not_modified" in [e["event"] for e in logs]
    assert "if-none-match" not in peer.seen[0].headers
    assert peer.seen[1].headers["if-none-match"] == '"v1"'
    assert peer.seen[1].headers["if-modified-since"] == "Wed, 18 Mar 2015 08:00:00 GMT"
    version.update(etag='"v2"', title="second")
    changed = await adapter.read_feed(peer.url("/feed.xml"))
    assert [e.title for e in changed.entries] == ["second"] and changed is not first


async def test_a_304_without_a_cached_copy_is_refused(peer: Peer, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """A 304 to a request that sent no validators has nothing to reuse: it is a permanent refusal."""
    peer.routes["/feed.xml"] = lambda _: Answer(304)
    with pytest.raises(PermanentError) as caught:
        await probe(http, clock).read_feed(peer.url("/feed.xml"))
    assert caught.value.status == 304


@pytest.mark.parametrize(("status", "live"), [(200, True), (204, True), (404, False), (410, False)])
async def test_public_page_check(peer: Peer, http: httpx.AsyncClient, clock: FrozenClock, status: int,
                                 live: bool) -> None:
    """2xx is live and 404/410 are not; the page is fetched as a reader would, without credentials."""
    peer.routes["/page"] = lambda _: Answer(status)
    assert await probe(http, clock).page_is_live(peer.url("/page")) is live
    assert "authorization" not in peer.seen[0].headers


async def test_public_page_follows_redirects(peer: Peer, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """A page moved to its canonical address is judged by where it lands."""
    peer.routes["/old"] = lambda _: Answer(301, {"Location": "/new"})
    peer.routes["/new"] = lambda _: Answer(200)
    assert await probe(http, clock).page_is_live(peer.url("/old")) is True
    peer.routes["/new"] = lambda _: Answer(410)
    assert await probe(http, clock).page_is_live(peer.url("/old")) is False


@pytest.mark.parametrize(("status", "error"), [(503, TransientError), (403, PermanentError), (429, RateLimited)])
async def test_public_page_other_answers_are_typed_errors(peer: Peer, http: httpx.AsyncClient, clock: FrozenClock,
                                                          status: int, error: type[ChannelError]) -> None:
    """Any page answer besides 2xx, 404 and 410 says nothing about the item: it is the typed error of its status."""
    peer.routes["/page"] = lambda _: Answer(status)
    with pytest.raises(error) as caught:
        await probe(http, clock).page_is_live(peer.url("/page"))
    assert type(caught.value) is error and caught.value.status == status
