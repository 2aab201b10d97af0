"""The outage suite: a channel black-holed, a channel flapping 5xx, 429 bursts (Retry-After in seconds and as an
HTTP date) under a client-side rate limit, and PostgreSQL cut away under a running daemon by a TCP proxy the test
controls. Other channels go on, everything is delivered once after recovery, the rate limit holds, and /healthz
says what is wrong while it is wrong.

Short form in CI; `PUBLISHER_LONG=1` runs more items and more outages (docs/RELIABILITY.md cites its figures).
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import subprocess
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from publisher.app.daemon import Daemon
from publisher.clock import FrozenClock
from publisher.model import DeliveryState
from publisher.sandbox import SandboxServer
from tests.harness import drop, faults, free_port, load, received, write_config

LONG = os.environ.get("PUBLISHER_LONG") == "1"
S = DeliveryState
SENT = {S.SENT, S.LIVE}


def _states(daemon: Daemon, item_id: str) -> dict[str, DeliveryState]:
    return {d.channel: d.state for d in daemon.store.deliveries_of(item_id) if d.state != S.SUPERSEDED}


def _published(sandbox: SandboxServer) -> Counter[str]:
    return Counter(str(p["slug"]) for p in received(sandbox, "wordpress")["posts"] if p["status"] == "publish")


@pytest.fixture
async def frozen(tmp_path: Path, sandbox: SandboxServer) -> AsyncIterator[tuple[Daemon, FrozenClock]]:
    clock = FrozenClock(datetime.now(UTC))
    cfg = load(write_config(tmp_path, sandbox, **{
        "channels.bureau_site.timeout": "300ms", "channels.microblog.rate_limit": "2/h",
        "channels.city_portal.verify_after": "0s"}))
    daemon = Daemon(cfg, clock=clock)
    yield daemon, clock
    await daemon.aclose()


async def test_a_black_holed_site_and_a_flapping_portal_hold_back_only_themselves(
        tmp_path: Path, sandbox: SandboxServer, frozen: tuple[Daemon, FrozenClock]) -> None:
    """The site never answers and the portal fails half its requests with 503: the feed goes out at once, the
    portal gets there through retries, and once the site answers again every item is on every peer once."""
    daemon, clock = frozen
    items = [f"hole-{n}" for n in range(12 if LONG else 4)]
    faults(sandbox, "wordpress", black_hole=True)
    faults(sandbox, "portal", error_rate=0.5, error_status=503)
    for item in items:
        drop(tmp_path / "queue" / "inbox", f"{item}.md", {"id": item, "title": f"停电演练{item}", "category": "updates"})
    await daemon.intake.scan()
    await daemon.dispatcher.run_once()
    for item in items:
        states = _states(daemon, item)
        assert states["provincial_feed"] in SENT  # not held back by the site that never answers
        assert states["bureau_site"] == S.RETRYING
    for _ in range(12):  # the portal's 503s are retried until each went through
        if all(_states(daemon, i)["city_portal"] in SENT for i in items):
            break
        clock.advance(timedelta(minutes=40))
        await daemon.dispatcher.run_once()
    assert all(_states(daemon, i)["city_portal"] in SENT for i in items)
    assert not _published(sandbox)
    faults(sandbox, "wordpress", black_hole=False)
    faults(sandbox, "portal", error_rate=0.0)
    clock.advance(timedelta(hours=1))
    await daemon.dispatcher.run_once()
    assert all(set(_states(daemon, i).values()) <= SENT for i in items)
    assert sorted(_published(sandbox)) == sorted(f"item-{i}" for i in items)
    assert set(_published(sandbox).values()) == {1}
    articles = Counter(a["source_id"] for a in received(sandbox, "portal"))
    assert sorted(articles) == sorted(items) and set(articles.values()) == {1}


async def test_429_bursts_are_waited_out_as_told_and_the_rate_limit_is_never_exceeded(
        tmp_path: Path, sandbox: SandboxServer, frozen: tuple[Daemon, FrozenClock]) -> None:
    """The portal answers 429 with an HTTP-date two minutes ahead, Weibo 429 with `Retry-After: 60`: no retry comes
    sooner than asked, the microblog never makes more than 2 requests (429s included) in any hour of its 2/h
    limit, and every item ends on each peer once."""
    daemon, clock = frozen
    items = [f"burst-{n}" for n in range(6 if LONG else 3)]
    start = clock.now()
    until = email.utils.format_datetime(start + timedelta(seconds=120), usegmt=True)
    faults(sandbox, "portal", burst_429=2, retry_after=until)
    faults(sandbox, "weibo", burst_429=2, retry_after="60")
    for item in items:
        drop(tmp_path / "queue" / "inbox", f"{item}.md", {"id": item, "title": f"限流演练{item}", "category": "updates",
                                                          "channels": ["bureau_site", "city_portal", "microblog"]})
    await daemon.intake.scan()
    await daemon.dispatcher.run_once()
    refused = [d for i in items for d in daemon.store.deliveries_of(i)
               if d.channel == "city_portal" and d.state == S.RETRYING]
    assert refused and all(d.next_attempt_at >= start + timedelta(seconds=119) for d in refused)
    weibo = sandbox.services["weibo"].requests
    posts_at: list[datetime] = []  # the frozen clock's time of each microblog request
    seen = 0
    for _ in range(40):
        fresh = [r for r in weibo[seen:] if r["method"] == "POST"]
        seen = len(weibo)
        posts_at += [clock.now()] * len(fresh)
        if all(set(_states(daemon, i).values()) <= SENT for i in items):
            break
        clock.advance(timedelta(minutes=10))
        await daemon.dispatcher.run_once()
    assert all(set(_states(daemon, i).values()) <= SENT for i in items), {i: _states(daemon, i) for i in items}
    for t in posts_at:
        assert sum(1 for u in posts_at if t <= u < t + timedelta(hours=1)) <= 2, posts_at
    assert len(posts_at) == len(items) + 2  # the two 429s were sent, and counted
    statuses = received(sandbox, "weibo")["statuses"]
    assert len(statuses) == len(items)
    articles = Counter(a["source_id"] for a in received(sandbox, "portal"))
    assert sorted(articles) == sorted(items) and set(articles.values()) == {1}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs of the test's own, unmounted afterwards; skipped where mounting is not allowed."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        if os.environ.get("CI") == "true" and os.geteuid() == 0:
            raise AssertionError(f"could not mount a tmpfs: {done.stderr!r}")
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with filler.open("wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


async def test_a_full_disk_holds_back_the_feed_only_until_space_returns(
        tmp_path: Path, sandbox: SandboxServer, small_disk: Path) -> None:
    """The feed's disk is full: its rows are retried (not failed as a defect) with the reason in their error, the
    site is not held back, and once space returns the feed holds each item once."""
    clock = FrozenClock(datetime.now(UTC))
    feed = small_disk / "provincial.xml"
    daemon = Daemon(load(write_config(tmp_path, sandbox, **{"channels.provincial_feed.path": str(feed)})), clock=clock)
    items = [f"disk-{n}" for n in range(6 if LONG else 2)]
    try:
        filler = _fill(small_disk)
        for item in items:
            drop(tmp_path / "queue" / "inbox", f"{item}.md", {"id": item, "title": f"磁盘写满演练{item}",
                                                              "category": "updates",
                                                              "channels": ["bureau_site", "provincial_feed"]})
        await daemon.intake.scan()
        await daemon.dispatcher.run_once()
        for item in items:
            rows = {d.channel: d for d in daemon.store.deliveries_of(item)}
            assert rows["bureau_site"].state in SENT
            assert rows["provincial_feed"].state == S.RETRYING, rows["provincial_feed"].last_error
            assert "No space left on device" in str(rows["provincial_feed"].last_error)
        filler.unlink()
        clock.advance(timedelta(hours=1))
        await daemon.dispatcher.run_once()
        assert all(_states(daemon, i)["provincial_feed"] in SENT for i in items)
        text = feed.read_text(encoding="utf-8")
        assert text.count("<entry") == len(items) and all(text.count(f"磁盘写满演练{i}<") == 1 for i in items)
    finally:
        await daemon.aclose()


# --- PostgreSQL cut away under the running daemon ------------------------------------------------------------


class CuttableProxy:
    """A TCP proxy on loopback, in a thread of its own (the store's calls block the daemon's event loop), between
    the daemon and PostgreSQL: `cut()` drops every connection and refuses new ones, as a restarting server does;
    `restore()` listens again on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()
        self.restore()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.links |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def _listen(self) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port)

    async def _cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.links):
            writer.transport.abort()
        self.links.clear()

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._listen())

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def pg_proxy(pg_url: str) -> Iterator[tuple[CuttableProxy, str]]:
    url = sa.engine.make_url(pg_url)
    proxy = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    try:
        yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    finally:
        proxy.close()


async def _until(predicate: Any, what: str, within_s: float = 60) -> None:
    for _ in range(int(within_s / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.postgres
async def test_postgresql_cut_away_mid_fanout_is_survived_reported_and_recovered(
        tmp_path: Path, sandbox: SandboxServer, pg_url: str, pg_proxy: tuple[CuttableProxy, str]) -> None:
    """PostgreSQL goes away (every connection dropped, new ones refused) while sends are in flight: /healthz
    answers 503 naming the store, the workers log the error and back off, and once it is back every worker is
    alive, /healthz is 200 again, the rows whose outcome was lost are reconciled by the running daemon, and each
    item is on each peer once."""
    proxy, via_proxy = pg_proxy
    port = free_port()
    cfg = load(write_config(tmp_path, sandbox, web_port=port, store_url=via_proxy, **{
        "channels.bureau_site.timeout": "1s", "channels.city_portal.timeout": "1s",
        "channels.provincial_feed.timeout": "1s"}))
    daemon = Daemon(cfg)
    daemon.dispatcher.lease_slack = timedelta(seconds=0.5)  # a lost outcome is reconciled within seconds
    direct = sa.create_engine(pg_url)
    stop = asyncio.Event()
    outages = 3 if LONG else 1
    items = [f"pg-{n:02d}" for n in range(8 * outages if LONG else 6)]

    def states() -> Counter[str]:
        with direct.connect() as conn:
            return Counter(dict(conn.exec_driver_sql("SELECT state, count(*) FROM deliveries GROUP BY state").all()))

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as web:
        async def health(code: int) -> bool:
            try:
                return (await web.get("/healthz")).status_code == code
            except httpx.HTTPError:
                return False

        with capture_logs() as logs:
            running = asyncio.create_task(daemon.run(stop))
            try:
                await _until(lambda: health(200), "the daemon to start")
                faults(sandbox, "wordpress", write_latency_s=0.3)  # sends stay in flight long enough to be cut
                faults(sandbox, "portal", latency_s=0.3)
                per_outage = len(items) // outages
                for k in range(outages):
                    for item in items[k * per_outage:(k + 1) * per_outage]:
                        drop(tmp_path / "queue" / "inbox", f"{item}.md",
                             {"id": item, "title": f"数据库中断演练{item}", "category": "updates"})

                    async def in_flight() -> bool:
                        return await asyncio.to_thread(lambda: states()["sending"] > 0)
                    await _until(in_flight, "a send in flight")
                    proxy.cut()
                    await _until(lambda: health(503), "/healthz to report the outage", 30)
                    body = (await web.get("/healthz")).json()
                    assert body["status"] == "error" and any("store" in p.lower() for p in body["problems"]), body
                    await asyncio.sleep(1.0)
                    proxy.restore()
                    await _until(lambda: health(200), "/healthz to recover", 60)
                faults(sandbox, "wordpress", write_latency_s=0)
                faults(sandbox, "portal", latency_s=0)

                async def delivered() -> bool:
                    now = await asyncio.to_thread(states)
                    return sum(now.values()) >= 3 * len(items) and set(now) <= {"sent", "live", "superseded"}
                await _until(delivered, "every delivery to go out after the outage", 90)
                assert all(not task.done() for task in daemon.dispatcher.workers.values())
                assert (await web.get("/healthz")).status_code == 200
            finally:
                stop.set()
                await running
                direct.dispose()
    events = Counter(e["event"] for e in logs)
    assert events["dispatch.worker_error"] + events["dispatch.store_error"] > 0, events
    assert sorted(_published(sandbox)) == sorted(f"item-{i}" for i in items)
    assert set(_published(sandbox).values()) == {1}
    articles = Counter(a["source_id"] for a in received(sandbox, "portal"))
    assert sorted(articles) == sorted(items) and set(articles.values()) == {1}
    print(f"\noutage suite: PostgreSQL cut {outages} time(s) under {len(items)} items; "
          f"{events['dispatch.worker_error']} worker errors, {events['dispatch.store_error']} lost outcomes, "
          f"{events['dispatch.lease_expired']} rows reconciled while running; duplicated 0, lost 0")
