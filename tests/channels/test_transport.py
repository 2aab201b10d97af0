"""The channels' HTTP transport (channels/transport.py): httpx above, aiohttp below, against a raw loopback server.

The server reads each request's bytes as they arrived and answers with bytes the test writes, so that what goes
on the wire (the URL as encoded, the headers and no others, a streamed body) and every way an answer can fail
(refused, dropped, reset, not HTTP, cut short, never coming) are checked as an independent HTTP peer sees them."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from channels.transport import AiohttpTransport, channel_client

Script = Callable[[bytes], bytes | None]  # the raw request → the raw answer (None: close without one)


@dataclass
class RawPeer:
    answer: Script = lambda _req: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    hang: asyncio.Event = field(default_factory=asyncio.Event)
    close: bool = False  # close the connection after each answer
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # set by each request
    url: str = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").lower().split("\r\n")
                length = next((int(x.split(":")[1]) for x in lines if x.startswith("content-length:")), 0)
                if any(x.startswith("transfer-encoding:") and "chunked" in x for x in lines):
                    body = b""
                    while (size := int((await reader.readuntil(b"\r\n")).strip(), 16)) > 0:
                        body += (await reader.readexactly(size + 2))[:-2]
                    await reader.readuntil(b"\r\n")
                else:
                    body = await reader.readexactly(length)
                raw = head + body
                self.requests.append(raw)
                self.arrived.set()
                out = self.answer(raw)
                if out is None:
                    return
                if out == b"hang":
                    await self.hang.wait()
                    return
                writer.write(out)
                await writer.drain()
                if self.close:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


@pytest.fixture
async def peer() -> AsyncIterator[RawPeer]:
    peer = RawPeer()
    server = await asyncio.start_server(peer.serve, "127.0.0.1", 0)
    peer.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    yield peer
    peer.hang.set()
    server.close()
    await server.wait_closed()


def head_of(raw: bytes) -> list[str]:
    return raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")


async def test_the_url_goes_out_as_httpx_encoded_it(peer: RawPeer) -> None:
    """A signed query must reach the server byte for byte: nothing re-quotes %7E, %2B or %2F, or a Chinese path."""
    async with channel_client(timeout=5, concurrency=1) as http:
        resp = await http.get(peer.url + "/文章/a%2Fb", params={"sig": "a+b/c~d=", "q": "安全"})
    assert resp.status_code == 200 and resp.text == "ok"
    assert head_of(peer.requests[0])[0] == ("GET /%E6%96%87%E7%AB%A0/a%2Fb?sig=a%2Bb%2Fc~d%3D&q=%E5%AE%89%E5%85%A8 "
                                            "HTTP/1.1")


async def test_only_the_headers_httpx_set_go_out(peer: RawPeer) -> None:
    """No header of aiohttp's own (a Content-Type for a bare body, its User-Agent); repeated headers stay repeated."""
    async with channel_client(timeout=5, concurrency=1, user_agent="publisher/test") as http:
        await http.post(peer.url + "/x", content=b"\x00\x01", headers=[("X-Tag", "a"), ("X-Tag", "b")])
    lines = head_of(peer.requests[0])
    names = sorted(line.split(":")[0].lower() for line in lines[1:])
    assert names == ["accept", "accept-encoding", "connection", "content-length", "host", "user-agent", "x-tag",
                     "x-tag"]
    assert "User-Agent: publisher/test" in lines and "X-Tag: a" in lines and "X-Tag: b" in lines
    assert peer.requests[0].endswith(b"\r\n\r\n\x00\x01")


async def test_a_multipart_upload_is_streamed_whole(peer: RawPeer) -> None:
    """A file upload (httpx streams a multipart body) arrives whole, framed once (Content-Length or chunked)."""
    image = bytes(range(256)) * 4000  # ~1 MB
    async with channel_client(timeout=5, concurrency=1) as http:
        resp = await http.post(peer.url + "/media", files={"file": ("封面.png", image, "image/png")}, data={"a": "1"})
    assert resp.status_code == 200
    raw = peer.requests[0]
    assert image in raw and b'name="a"\r\n\r\n1\r\n' in raw
    framing = [x for x in head_of(raw) if x.lower().startswith(("content-length:", "transfer-encoding:"))]
    assert len(framing) == 1


async def test_cookies_and_redirects_stay_httpx_s(peer: RawPeer) -> None:
    """A cookie the server sets goes back once (httpx's jar, not a second one in aiohttp); a redirect is followed
    by httpx only when asked."""
    def answer(raw: bytes) -> bytes:
        path = head_of(raw)[0].split(" ")[1]
        if path == "/login":
            return b"HTTP/1.1 302 Found\r\nSet-Cookie: sid=abc; Path=/\r\nLocation: /home\r\nContent-Length: 0\r\n\r\n"
        return b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nhome"
    peer.answer = answer
    async with channel_client(timeout=5, concurrency=1) as http:
        first = await http.get(peer.url + "/login")
        assert first.status_code == 302 and len(peer.requests) == 1  # not followed
        followed = await http.get(peer.url + "/login", follow_redirects=True)
        assert followed.text == "home"
        await http.get(peer.url + "/other")
    cookies = [[x for x in head_of(r) if x.lower().startswith("cookie:")] for r in peer.requests]
    assert cookies == [[], ["Cookie: sid=abc"], ["Cookie: sid=abc"], ["Cookie: sid=abc"]]  # one header, one value


async def test_a_compressed_answer_is_decoded_once(peer: RawPeer) -> None:
    packed = gzip.compress("发布成功".encode())
    peer.answer = lambda _raw: (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Type: text/plain; charset=utf-8"
                                b"\r\nContent-Length: " + str(len(packed)).encode() + b"\r\n\r\n" + packed)
    async with channel_client(timeout=5, concurrency=1) as http:
        resp = await http.get(peer.url + "/x")
    assert resp.text == "发布成功" and resp.headers["content-encoding"] == "gzip"


async def test_connections_are_kept_alive_and_bounded(peer: RawPeer) -> None:
    """Forty requests, four at a time, over a pool of 2 × concurrency connections at most."""
    async with channel_client(timeout=5, concurrency=2) as http:
        sem = asyncio.Semaphore(4)

        async def one(i: int) -> int:
            async with sem:
                return (await http.get(f"{peer.url}/{i}")).status_code
        codes = await asyncio.gather(*(one(i) for i in range(40)))
    assert codes == [200] * 40 and len(peer.requests) == 40 and 1 <= peer.connections <= 4


@pytest.mark.parametrize(("answer", "error"), [
    (lambda _raw: None, httpx.RemoteProtocolError),  # closed without an answer
    (lambda _raw: b"SSH-2.0-OpenSSH_9.2\r\n\r\n", httpx.RemoteProtocolError),  # not HTTP
    (lambda _raw: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", httpx.RemoteProtocolError),  # cut short
])
async def test_a_broken_answer_is_an_httpx_transport_error(peer: RawPeer, answer: Script,
                                                           error: type[Exception]) -> None:
    """Nothing of aiohttp's own escapes: the adapters map httpx's transport errors to "try again"."""
    peer.answer, peer.close = answer, True
    async with channel_client(timeout=5, concurrency=1) as http:
        with pytest.raises(error) as caught:
            await http.get(peer.url + "/x")
    assert isinstance(caught.value, httpx.TransportError)


async def test_a_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with channel_client(timeout=5, concurrency=1) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/x")


async def test_timeouts_keep_their_httpx_names(peer: RawPeer) -> None:
    """No answer: ReadTimeout. Every connection busy: PoolTimeout, not a connect timeout."""
    peer.answer = lambda _raw: b"hang"
    async with httpx.AsyncClient(timeout=httpx.Timeout(0.3, pool=0.2),
                                 transport=AiohttpTransport(httpx.Limits(max_connections=1))) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(peer.url + "/x")
        peer.arrived.clear()
        held = asyncio.create_task(http.get(peer.url + "/y"))
        await peer.arrived.wait()  # the pool's one connection is busy with it
        with pytest.raises(httpx.PoolTimeout):
            await http.get(peer.url + "/z")
        with pytest.raises(httpx.ReadTimeout):
            await held


async def test_a_url_no_client_can_use_is_refused_before_the_wire() -> None:
    async with channel_client(timeout=5, concurrency=1) as http:
        with pytest.raises(httpx.UnsupportedProtocol):
            await http.get("ftp://127.0.0.1/x")
