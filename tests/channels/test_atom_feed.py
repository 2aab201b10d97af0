"""The atom_feed adapter against the WebSub hub / collector stand-in, with the feed served by feed_response."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import httpx
import lxml.html
import pytest
import uvicorn
from lxml import etree
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from channels.atom_feed import AtomFeed
from channels.atom_file import TOMBSTONE_NS
from channels.base import PermanentError, RateLimited, Receipt, TransientError
from channels.transport import channel_client
from publisher.app.web.app import feed_response
from publisher.clock import FrozenClock
from publisher.sandbox import SandboxServer
from tests.conftest import make_revision

FEED_ID = "tag:bureau.example,2015:provincial"
ATOM = "{http://www.w3.org/2005/Atom}"


class FeedServer:
    """The daemon's feed route in miniature: `/feeds/<name>.xml` served by feed_response from `root`."""

    def __init__(self, root: Path) -> None:
        async def serve(request: Request) -> Response:
            return feed_response(root / f"{request.path_params['name']}.xml", request)

        app = Starlette(routes=[Route("/feeds/{name}.xml", serve)])
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=lambda: asyncio.run(self._server.serve(sockets=[self._sock])),
                                        daemon=True)

    def __enter__(self) -> FeedServer:
        self._thread.start()
        while not self._server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(5)


@pytest.fixture
def feeds(tmp_path: Path) -> Iterator[FeedServer]:
    with FeedServer(tmp_path / "feeds") as server:
        yield server


def make_feed(tmp_path: Path, http: httpx.AsyncClient, clock: FrozenClock, **options: Any) -> AtomFeed:
    opts = {"path": tmp_path / "feeds" / "provincial_feed.xml", "feed_id": FEED_ID, **options}
    return AtomFeed(name="provincial_feed", options=AtomFeed.Options(**opts), http=http, clock=clock,
                    display_name="省安监局信息报送")


def wired(tmp_path: Path, http: httpx.AsyncClient, clock: FrozenClock, feeds: FeedServer,
          sandbox: SandboxServer, **options: Any) -> AtomFeed:
    """The shipped wiring: the feed served by our web server, the hub (and collector) in the sandbox."""
    return make_feed(tmp_path, http, clock, public_url=f"{feeds.base_url}/feeds/provincial_feed.xml",
                     websub_hub=sandbox.url("hub") + "/", **options)


async def collected(http: httpx.AsyncClient, sandbox: SandboxServer, until: Any) -> Any:
    """What the collector holds once `until(received)` holds; the hub fetches after answering the ping."""
    deadline = time.monotonic() + 5.0
    while True:
        received = (await http.get(f"{sandbox.base_url}/_sandbox/hub/received")).json()
        if until(received) or time.monotonic() > deadline:
            return received
        await asyncio.sleep(0.02)


def parsed(adapter: AtomFeed) -> Any:
    return feedparser.parse(adapter.options.path.read_bytes())


async def test_feed_is_valid_atom(tmp_path: Path, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """A published item yields an Atom feed that feedparser reads without bozo, with self and hub links."""
    adapter = make_feed(tmp_path, http, clock, public_url="http://127.0.0.1:8700/feeds/provincial_feed.xml",
                        entry_base="http://127.0.0.1:8700/items/")
    receipt = await adapter.publish(make_revision())
    feed = parsed(adapter)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert feed.feed.id == FEED_ID and feed.feed.title == "省安监局信息报送"
    assert {ln.rel: ln.href for ln in feed.feed.links}["self"] == adapter.options.public_url
    entry = feed.entries[0]
    assert entry.id == receipt.remote_id == f"{FEED_ID}:2015-accidents-0007"
    assert entry.link == receipt.url == "http://127.0.0.1:8700/items/2015-accidents-0007"
    assert entry.tags[0].term == "accidents" and entry.tags[0].label == "事故通报"
    assert entry.summary == "通报某化工企业较大爆炸事故调查结果"
    assert entry.content[0].type == "text/html" and "<strong>请各单位认真吸取教训。</strong>" in entry.content[0].value


async def test_entry_id_stable_across_revisions(tmp_path: Path, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """A new revision replaces the entry under the same id; `updated` is when it was written, `published` the first."""
    adapter = make_feed(tmp_path, http, clock)
    clock.set(datetime(2015, 3, 18, 1, 0, tzinfo=UTC))
    first = await adapter.publish(make_revision())
    clock.set(datetime(2015, 3, 19, 2, 0, tzinfo=UTC))
    second = await adapter.update(make_revision(revision=2, title="更正：事故调查报告",
                                                created_at=datetime(2015, 3, 19, 2, 0, tzinfo=UTC)), first)
    assert second.remote_id == first.remote_id
    feed = parsed(adapter)
    assert len(feed.entries) == 1
    entry = feed.entries[0]
    assert entry.id == first.remote_id and entry.title == "更正：事故调查报告"
    assert entry.updated.startswith("2015-03-19T02:00:00") and entry.published.startswith("2015-03-18T01:00:00")


async def test_older_revision_never_overwrites_newer(tmp_path: Path, http: httpx.AsyncClient,
                                                     clock: FrozenClock) -> None:
    """A late retry of revision 1 after revision 2 leaves revision 2 in the feed."""
    adapter = make_feed(tmp_path, http, clock)
    await adapter.publish(make_revision(revision=2, title="第二版", created_at=datetime(2015, 3, 19, tzinfo=UTC)))
    clock.advance(timedelta(hours=1))  # the retry is written later, yet its revision is older
    await adapter.publish(make_revision(revision=1, title="第一版"))
    assert parsed(adapter).entries[0].title == "第二版"
    assert b"<pub:revision>2</pub:revision>" in adapter.options.path.read_bytes()


async def test_max_entries_keeps_the_last_written(tmp_path: Path, http: httpx.AsyncClient,
                                                  clock: FrozenClock) -> None:
    """With max_entries=2 the feed holds the two entries written last, newest first, whatever their documents'
    age: an old document approved late still reaches the collector, and a resend brings an entry back."""
    adapter = make_feed(tmp_path, http, clock, max_entries=2)
    base = datetime(2015, 3, 1, tzinfo=UTC)
    for n in (2, 0, 3, 1):  # documents made out of order on purpose
        clock.advance(timedelta(minutes=1))
        await adapter.publish(make_revision(item_id=f"item-{n}", created_at=base + timedelta(days=n)))
    assert [e.id for e in parsed(adapter).entries] == [f"{FEED_ID}:item-1", f"{FEED_ID}:item-3"]
    clock.advance(timedelta(minutes=1))
    await adapter.update(make_revision(item_id="item-0", created_at=base), Receipt(remote_id=f"{FEED_ID}:item-0"))
    entries = parsed(adapter).entries
    assert [e.id for e in entries] == [f"{FEED_ID}:item-0", f"{FEED_ID}:item-1"]
    assert entries[0].updated.startswith(clock.now().strftime("%Y-%m-%dT%H:%M"))  # written now: newest `updated`


async def test_retract_writes_tombstone(tmp_path: Path, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """Retraction removes the entry and leaves an RFC 6721 deleted-entry with its ref and when."""
    adapter = make_feed(tmp_path, http, clock)
    keep = await adapter.publish(make_revision(item_id="keep"))
    gone = await adapter.publish(make_revision())
    await adapter.retract(gone)
    root = etree.parse(str(adapter.options.path)).getroot()
    graves = root.findall(f"{{{TOMBSTONE_NS}}}deleted-entry")
    assert [(g.get("ref"), g.get("when")) for g in graves] == [(gone.remote_id, "2015-03-18T09:00:00+00:00")]
    assert root.nsmap["at"] == TOMBSTONE_NS
    assert [e.findtext(f"{ATOM}id") for e in root.iter(f"{ATOM}entry")] == [keep.remote_id]
    assert not parsed(adapter).bozo
    assert await adapter.find(make_revision()) is None


async def test_ping_reaches_hub_and_collector(tmp_path: Path, http: httpx.AsyncClient, clock: FrozenClock,
                                              feeds: FeedServer, sandbox: SandboxServer) -> None:
    """After a write the hub is pinged, fetches our served feed and collects the entry, then its tombstone."""
    adapter = wired(tmp_path, http, clock, feeds, sandbox)
    receipt = await adapter.publish(make_revision())
    got = await collected(http, sandbox, lambda r: receipt.remote_id in r["entries"])
    assert got["entries"][receipt.remote_id]["title"] == make_revision().title
    ping = next(r for r in sandbox.services["hub"].requests if r["method"] == "POST")
    assert "hub.mode=publish" in ping["body"]
    links = {ln.rel: ln.href for ln in parsed(adapter).feed.links}
    assert links["hub"] == sandbox.url("hub") + "/" and links["self"] == adapter.options.public_url
    await adapter.retract(receipt)
    got = await collected(http, sandbox, lambda r: receipt.remote_id in r["deleted"])
    assert receipt.remote_id in got["deleted"] and receipt.remote_id not in got["entries"]


async def test_feed_response_conditional_get(tmp_path: Path, http: httpx.AsyncClient, clock: FrozenClock,
                                             feeds: FeedServer) -> None:
    """The served feed is 404 before the first write, then 200 with ETag/Last-Modified and 304 on either."""
    url = f"{feeds.base_url}/feeds/provincial_feed.xml"
    missing = await http.get(url)
    assert missing.status_code == 404 and missing.text
    await make_feed(tmp_path, http, clock).publish(make_revision())
    first = await http.get(url)
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/atom+xml; charset=utf-8"
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert etag.startswith('"') and not etag.startswith("W/")
    by_tag = await http.get(url, headers={"If-None-Match": etag})
    assert by_tag.status_code == 304 and by_tag.content == b"" and by_tag.headers["ETag"] == etag
    assert (await http.get(url, headers={"If-Modified-Since": modified})).status_code == 304
    stale = email.utils.formatdate(email.utils.parsedate_to_datetime(modified).timestamp() - 60, usegmt=True)
    assert (await http.get(url, headers={"If-Modified-Since": stale})).status_code == 200
    assert (await http.get(url, headers={"If-None-Match": '"other"', "If-Modified-Since": modified})).status_code == 200


async def test_find_after_lost_response(tmp_path: Path, clock: FrozenClock, feeds: FeedServer,
                                        sandbox: SandboxServer) -> None:
    """When the ping's answer never comes, the entry is written anyway and find returns its receipt."""
    sandbox.services["hub"].faults.black_hole = True
    async with channel_client(timeout=0.3, concurrency=1) as short:
        adapter = wired(tmp_path, short, clock, feeds, sandbox)
        assert await adapter.find(make_revision()) is None
        with pytest.raises(TransientError):
            await adapter.publish(make_revision())
        found = await adapter.find(make_revision(revision=2))
    assert found == Receipt(remote_id=f"{FEED_ID}:2015-accidents-0007", url=adapter.options.public_url)


async def test_verify_through_collected_feed(tmp_path: Path, http: httpx.AsyncClient, clock: FrozenClock,
                                             feeds: FeedServer, sandbox: SandboxServer) -> None:
    """verify is true once the collector's own feed lists the entry, and re-reads it with a conditional GET."""
    adapter = wired(tmp_path, http, clock, feeds, sandbox, verify_feed=sandbox.url("hub") + "/collected.xml")
    unseen = Receipt(remote_id=f"{FEED_ID}:never-sent")
    assert await adapter.verify(unseen) is False
    receipt = await adapter.publish(make_revision())
    await collected(http, sandbox, lambda r: receipt.remote_id in r["entries"])
    assert await adapter.verify(receipt) is True
    assert await adapter.verify(receipt) is True
    reads = [r for r in sandbox.services["hub"].requests if r["path"].endswith("/collected.xml")]
    current = (await http.get(sandbox.url("hub") + "/collected.xml")).headers["ETag"]
    assert reads[0]["headers"].get("if-none-match") is None
    assert reads[-1]["headers"].get("if-none-match") == current  # so the hub answered 304


async def test_verify_without_consumer_feed(tmp_path: Path, http: httpx.AsyncClient, clock: FrozenClock,
                                            feeds: FeedServer) -> None:
    """Without verify_feed the served feed (or, lacking a URL, the file) is checked for the entry."""
    served = make_feed(tmp_path, http, clock, public_url=f"{feeds.base_url}/feeds/provincial_feed.xml")
    receipt = await served.publish(make_revision())
    assert await served.verify(receipt) is True
    local = make_feed(tmp_path, http, clock)
    assert await local.verify(receipt) is True
    await local.retract(receipt)
    assert await served.verify(receipt) is False and await local.verify(receipt) is False


async def test_verify_feed_errors_are_typed(tmp_path: Path, http: httpx.AsyncClient, clock: FrozenClock,
                                            feeds: FeedServer) -> None:
    """A consumer feed that is not there is a permanent error, not a silent False."""
    adapter = make_feed(tmp_path, http, clock, verify_feed=f"{feeds.base_url}/feeds/nothing.xml")
    with pytest.raises(PermanentError) as err:
        await adapter.verify(Receipt(remote_id="x"))
    assert err.value.status == 404


@pytest.mark.parametrize(("faults", "error", "status", "retry_after"), [
    ({"error_rate": 1.0, "error_status": 503}, TransientError, 503, None),
    ({"burst_429": 1, "retry_after": "7"}, RateLimited, 429, 7.0),
    ({"unauthorized": True}, PermanentError, 401, None),
])
async def test_hub_failures_raise_typed_errors(tmp_path: Path, http: httpx.AsyncClient, clock: FrozenClock,
                                               feeds: FeedServer, sandbox: SandboxServer, faults: dict[str, Any],
                                               error: type[Exception], status: int, retry_after: float | None) -> None:
    """5xx is transient, 429 is rate limited with its Retry-After, 401 is permanent; the file is written anyway."""
    sandbox.services["hub"].faults.update(faults)
    adapter = wired(tmp_path, http, clock, feeds, sandbox)
    with pytest.raises(error) as err:
        await adapter.publish(make_revision())
    assert type(err.value) is error and err.value.status == status  # type: ignore[attr-defined]
    assert getattr(err.value, "retry_after", None) == retry_after
    assert err.value.remote  # type: ignore[attr-defined]
    assert await adapter.find(make_revision()) is not None


async def test_hub_refusing_the_url_is_permanent(tmp_path: Path, http: httpx.AsyncClient, clock: FrozenClock,
                                                 sandbox: SandboxServer) -> None:
    """A public_url the hub cannot accept is a 400 kept verbatim in the permanent error."""
    adapter = make_feed(tmp_path, http, clock, public_url="ftp://127.0.0.1/feed.xml",
                        websub_hub=sandbox.url("hub") + "/")
    with pytest.raises(PermanentError) as err:
        await adapter.publish(make_revision())
    assert err.value.status == 400 and err.value.remote == "hub.url invalid: ftp://127.0.0.1/feed.xml"


async def test_hostile_html_is_stripped(tmp_path: Path, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """Script, event handlers and javascript: links do not reach the feed's content."""
    body = ('正文<script>alert("x")</script>\n\n<img src="a.png" onerror="steal()">\n\n'
            '[点我](javascript:alert(1)) <a href="javascript:evil()">链接</a> <b onclick="x()">粗</b>')
    adapter = make_feed(tmp_path, http, clock)
    await adapter.publish(make_revision(body=body))
    content = parsed(adapter).entries[0].content[0].value
    elements = list(lxml.html.fragment_fromstring(content, create_parent="div").iter())
    assert not [el for el in elements if el.tag == "script"]
    assert not [(el.tag, k) for el in elements for k in el.attrib if k.startswith("on")]
    assert not [el for el in elements for v in el.attrib.values() if v.strip().lower().startswith("javascript:")]
    assert 'alert("x")' not in content and "steal" not in content and "evil" not in content
    assert "正文" in content and "粗" in content


async def test_chinese_text_survives(tmp_path: Path, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """Chinese title, body, category and author come out of the feed exactly as they went in."""
    rev = make_revision(item_id="2015-通知-七", author="办公室",
                        body="各区县：\n\n“安全第一，预防为主。”——《安全生产法》")
    adapter = make_feed(tmp_path, http, clock)
    receipt = await adapter.publish(rev)
    entry = parsed(adapter).entries[0]
    assert entry.title == rev.title and entry.author == "办公室" and entry.tags[0].label == "事故通报"
    assert "“安全第一，预防为主。”——《安全生产法》" in entry.content[0].value
    assert entry.id == receipt.remote_id == f"{FEED_ID}:2015-%E9%80%9A%E7%9F%A5-%E4%B8%83"
    assert await adapter.find(rev) == receipt


async def test_concurrent_writes_all_land(tmp_path: Path, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """Many publishes at once on one file lose none: each read-change-write holds the path's lock."""
    adapter = make_feed(tmp_path, http, clock)
    other = make_feed(tmp_path, http, clock)  # a second instance on the same file shares the lock
    await asyncio.gather(*((adapter, other)[i % 2].publish(make_revision(item_id=f"n-{i}")) for i in range(20)))
    assert len(parsed(adapter).entries) == 20
    assert not list((tmp_path / "feeds").glob("*.tmp"))


def test_options_are_checked(tmp_path: Path) -> None:
    """feed_id must be a tag: URI, and a hub needs the public URL it is told to fetch."""
    with pytest.raises(ValidationError, match="tag: URI"):
        AtomFeed.Options(path=tmp_path / "f.xml", feed_id="http://bureau.example/feed")
    with pytest.raises(ValidationError, match="public_url"):
        AtomFeed.Options(path=tmp_path / "f.xml", feed_id=FEED_ID, websub_hub="http://127.0.0.1/hub/")
    with pytest.raises(ValidationError, match="extra"):
        AtomFeed.Options(path=tmp_path / "f.xml", feed_id=FEED_ID, sla="1d")
