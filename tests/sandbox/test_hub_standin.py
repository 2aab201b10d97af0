"""Conformance of the WebSub hub / provincial collector stand-in, with raw HTTP requests.

The feeds it collects come from a tiny origin server on loopback that serves hand-written Atom
documents with an `ETag`, so the stand-in is checked against the protocol, not against our adapter.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import feedparser
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from publisher.sandbox import SandboxServer


class Origin:
    """A feed server on a loopback port in a thread; `documents` maps a path to the bytes it serves."""

    def __init__(self) -> None:
        self.documents: dict[str, bytes] = {}
        self.hits: list[dict[str, str | None]] = []
        app = Starlette(routes=[Route("/{name:path}", self._serve)])
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=lambda: asyncio.run(self._server.serve(sockets=[sock])),
                                        daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def _serve(self, request: Request) -> Response:
        path = request.path_params["name"]
        self.hits.append({"path": path, "if-none-match": request.headers.get("if-none-match")})
        body = self.documents.get(path)
        if body is None:
            return Response("no such feed", status_code=404)
        etag = '"' + hashlib.sha1(body).hexdigest() + '"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return Response(body, media_type="application/atom+xml", headers={"ETag": etag})

    def __enter__(self) -> Origin:
        self._thread.start()
        while not self._server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(5)


def atom(entries: list[tuple[str, str, str]], tombstones: list[tuple[str, str]] = ()) -> bytes:  # type: ignore[assignment]
    """A minimal valid Atom feed: entries are (id, title, updated), tombstones (ref, when)."""
    parts = [f"""<entry><id>{i}</id><title>{t}</title><updated>{u}</updated>
<link rel="alternate" href="https://bureau.example/a/{i[-4:]}"/></entry>""" for i, t, u in entries]
    parts += [f'<at:deleted-entry ref="{r}" when="{w}"/>' for r, w in tombstones]
    return f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:at="http://purl.org/atompub/tombstones/1.0">
<id>tag:bureau.example,2015:provincial</id><title>省安监局信息报送</title>
<updated>2015-03-18T09:00:00Z</updated><author><name>publisher</name></author>
{''.join(parts)}
</feed>""".encode()


E1 = "tag:bureau.example,2015:provincial:0001"
E2 = "tag:bureau.example,2015:provincial:0002"


@pytest.fixture
def origin() -> Iterator[Origin]:
    with Origin() as server:
        yield server


async def collected(http: httpx.AsyncClient, sandbox: SandboxServer, until: Any) -> Any:
    """What the collector holds, once `until(received)` is true (the hub fetches after answering)."""
    deadline = time.monotonic() + 5.0
    while True:
        received = (await http.get(f"{sandbox.base_url}/_sandbox/hub/received")).json()
        if until(received) or time.monotonic() > deadline:
            return received
        await asyncio.sleep(0.02)


async def test_ping_without_mode_is_refused(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """A POST without hub.mode gets 400 with a plain-text reason."""
    resp = await http.post(sandbox.url("hub") + "/", data={"hub.url": "http://127.0.0.1/feed.xml"})
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("text/plain")
    assert resp.text == "hub.mode is invalid"


async def test_ping_without_url_is_refused(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """A publish ping must name at least one hub.url."""
    resp = await http.post(sandbox.url("hub") + "/", data={"hub.mode": "publish"})
    assert resp.status_code == 400
    assert resp.text == "MUST supply at least one hub.url parameter"


@pytest.mark.parametrize("bad", ["ftp://127.0.0.1/feed.xml", "http://127.0.0.1/feed.xml#top", "feed.xml"])
async def test_ping_with_bad_url_is_refused(sandbox: SandboxServer, http: httpx.AsyncClient, bad: str) -> None:
    """Only absolute http(s) topic URLs without a fragment are accepted."""
    resp = await http.post(sandbox.url("hub") + "/", data={"hub.mode": "publish", "hub.url": bad})
    assert resp.status_code == 400
    assert resp.text == f"hub.url invalid: {bad}"


async def test_subscription_requests_are_refused(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """The collector hub takes publish pings only; a subscribe gets 400, not a silent accept."""
    resp = await http.post(sandbox.url("hub") + "/", data={
        "hub.mode": "subscribe", "hub.topic": "http://127.0.0.1/f.xml", "hub.callback": "http://127.0.0.1/cb"})
    assert resp.status_code == 400


async def test_publish_ping_is_accepted_and_feed_collected(sandbox: SandboxServer, http: httpx.AsyncClient,
                                                           origin: Origin) -> None:
    """A valid ping answers 204 at once, then the hub fetches the feed and records its entries."""
    origin.documents["p.xml"] = atom([(E1, "关于安全生产的通知", "2015-03-18T01:00:00Z")])
    resp = await http.post(sandbox.url("hub") + "/", data={"hub.mode": "publish", "hub.url": origin.url("p.xml")})
    assert resp.status_code == 204 and resp.content == b""
    got = await collected(http, sandbox, lambda r: E1 in r["entries"])
    entry = got["entries"][E1]
    assert entry["title"] == "关于安全生产的通知"
    assert entry["updated"] == "2015-03-18T01:00:00Z"
    assert entry["link"] == "https://bureau.example/a/0001"
    assert got["feeds"][origin.url("p.xml")]["fetches"] == 1


async def test_refetch_is_conditional(sandbox: SandboxServer, http: httpx.AsyncClient, origin: Origin) -> None:
    """The collector sends the ETag it saw, and counts a 304 as not modified."""
    origin.documents["p.xml"] = atom([(E1, "一", "2015-03-18T01:00:00Z")])
    first = await http.post(sandbox.url("hub") + "/poll", params={"url": origin.url("p.xml")})
    second = await http.post(sandbox.url("hub") + "/poll", params={"url": origin.url("p.xml")})
    assert first.status_code == second.status_code == 200
    assert second.json()["fetches"] == 2 and second.json()["not_modified"] == 1
    assert origin.hits[0]["if-none-match"] is None
    assert origin.hits[1]["if-none-match"] == first.json()["etag"]


async def test_later_updated_replaces_earlier(sandbox: SandboxServer, http: httpx.AsyncClient,
                                              origin: Origin) -> None:
    """A newer `updated` replaces the recorded entry; an older copy never does."""
    poll = sandbox.url("hub") + "/poll"
    origin.documents["p.xml"] = atom([(E1, "第一版", "2015-03-18T01:00:00Z")])
    await http.post(poll, params={"url": origin.url("p.xml")})
    origin.documents["p.xml"] = atom([(E1, "第二版", "2015-03-18T02:00:00Z")])
    await http.post(poll, params={"url": origin.url("p.xml")})
    origin.documents["old.xml"] = atom([(E1, "第一版", "2015-03-18T01:00:00Z")])
    await http.post(poll, params={"url": origin.url("old.xml")})
    got = (await http.get(f"{sandbox.base_url}/_sandbox/hub/received")).json()
    assert got["entries"][E1]["title"] == "第二版"


async def test_tombstone_marks_entry_deleted(sandbox: SandboxServer, http: httpx.AsyncClient,
                                             origin: Origin) -> None:
    """An RFC 6721 deleted-entry moves the entry from `entries` to `deleted` with its `when`."""
    poll = sandbox.url("hub") + "/poll"
    origin.documents["p.xml"] = atom([(E1, "一", "2015-03-18T01:00:00Z"), (E2, "二", "2015-03-18T01:30:00Z")])
    await http.post(poll, params={"url": origin.url("p.xml")})
    origin.documents["p.xml"] = atom([(E2, "二", "2015-03-18T01:30:00Z")], [(E1, "2015-03-18T03:00:00Z")])
    await http.post(poll, params={"url": origin.url("p.xml")})
    got = (await http.get(f"{sandbox.base_url}/_sandbox/hub/received")).json()
    assert E1 not in got["entries"] and E2 in got["entries"]
    assert got["deleted"][E1]["when"] == "2015-03-18T03:00:00Z"


async def test_collected_feed_is_valid_atom_with_etag(sandbox: SandboxServer, http: httpx.AsyncClient,
                                                      origin: Origin) -> None:
    """collected.xml lists the collected entries, parses without bozo, and answers 304 to its ETag."""
    origin.documents["p.xml"] = atom([(E1, "一", "2015-03-18T01:00:00Z")])
    await http.post(sandbox.url("hub") + "/poll", params={"url": origin.url("p.xml")})
    resp = await http.get(sandbox.url("hub") + "/collected.xml")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/atom+xml")
    parsed = feedparser.parse(resp.content)
    assert not parsed.bozo
    assert [e.id for e in parsed.entries] == [E1]
    again = await http.get(sandbox.url("hub") + "/collected.xml", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status_code == 304


async def test_unreachable_feed_is_recorded_not_raised(sandbox: SandboxServer, http: httpx.AsyncClient,
                                                       origin: Origin) -> None:
    """A feed the hub cannot fetch leaves an error on the feed record and no entries."""
    resp = await http.post(sandbox.url("hub") + "/poll", params={"url": origin.url("missing.xml")})
    assert resp.json()["last_status"] == 404 and "404" in resp.json()["last_error"]


async def test_faults_render_as_plain_text(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """Rate limiting is a 429 with Retry-After, errors a 5xx, revoked access a 401, all plain text."""
    ping = {"hub.mode": "publish", "hub.url": "http://127.0.0.1:9/feed.xml"}
    faults = sandbox.services["hub"].faults
    faults.burst_429, faults.retry_after = 1, "7"
    resp = await http.post(sandbox.url("hub") + "/", data=ping)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "7"
    assert resp.headers["content-type"].startswith("text/plain")
    faults.error_rate, faults.error_status = 1.0, 502
    assert (await http.post(sandbox.url("hub") + "/", data=ping)).status_code == 502
    faults.error_rate, faults.unauthorized = 0.0, True
    assert (await http.post(sandbox.url("hub") + "/", data=ping)).status_code == 401
