"""The crash suite, beyond tests/test_crash.py's kills mid-fan-out: SIGKILLs while edits and retractions are in
flight, and a WordPress slower than the channel's timeout. Counted on the peers' side: nothing shown twice,
nothing missing, every retraction taken down, every edit's newest revision shown.

Short form in CI; `PUBLISHER_LONG=1` runs the long form (more items, more kills) that docs/RELIABILITY.md cites.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from publisher.app.daemon import Daemon
from publisher.clock import FrozenClock, SystemClock
from publisher.model import DeliveryState
from publisher.review.accounts import Accounts
from publisher.review.chain import Review
from publisher.sandbox import SandboxProcess, SandboxServer
from publisher.store.db import Store
from tests.harness import drop, faults, load, received, settings, write_config

LONG = os.environ.get("PUBLISHER_LONG") == "1"


def _wp(sandbox: SandboxServer | SandboxProcess, part: str) -> list[dict[str, object]]:
    return [p for p in received(sandbox, "wordpress")["posts"] if part in str(p["slug"])]


async def test_a_wordpress_slower_than_the_timeout_never_shows_the_item_twice(
        tmp_path: Path, sandbox: SandboxServer) -> None:
    """The site takes 2 s to store a create while the channel gives up after 0.5 s: the retry runs before the
    first create has landed, and that late create stays a draft. One public post; the retraction takes it down."""
    clock = FrozenClock(datetime.now(UTC))
    daemon = Daemon(load(write_config(tmp_path, sandbox, **{"channels.bureau_site.timeout": "1s"})), clock=clock)
    inbox = tmp_path / "queue" / "inbox"
    try:
        drop(inbox, "w.md", {"id": "warm-1", "title": "栏目预热", "category": "updates", "channels": ["bureau_site"]})
        await daemon.intake.scan()
        await daemon.dispatcher.run_once()  # the category exists now: the slow write below is the post's create
        faults(sandbox, "wordpress", write_latency_s=2.0)
        drop(inbox, "s.md", {"id": "slow-1", "title": "关于开展安全生产大检查的通知", "category": "updates",
                             "channels": ["bureau_site"]})
        await daemon.intake.scan()
        await daemon.dispatcher.run_once()
        (row,) = daemon.store.deliveries_of("slow-1")
        assert row.state == DeliveryState.RETRYING, row.last_error  # the create timed out
        faults(sandbox, "wordpress", write_latency_s=0)
        clock.advance(timedelta(hours=1))
        await daemon.dispatcher.run_once()  # the retry, while the first create is still on its way in
        assert [p["status"] for p in _wp(sandbox, "slow-1")] == ["publish"]
        for _ in range(200):  # the first create lands 2 s after it was sent
            if len(_wp(sandbox, "slow-1")) == 2:
                break
            await asyncio.sleep(0.05)
        statuses = Counter(str(p["status"]) for p in _wp(sandbox, "slow-1"))
        assert statuses == {"publish": 1, "draft": 1}, statuses  # the late create landed, as a draft
        director = Accounts(daemon.store, clock).add("director_li", "李局长", ["director"], None, None)
        daemon.review.retract("slow-1", director)
        await daemon.dispatcher.run_once()
        assert "publish" not in {p["status"] for p in _wp(sandbox, "slow-1")}
    finally:
        await daemon.aclose()


# --- kills while edits and retractions are in flight -----------------------------------------------

ITEMS = 120 if LONG else 8
KILLS = 10 if LONG else 1


@pytest.fixture
def sandbox_process() -> Iterator[SandboxProcess]:
    with SandboxProcess() as sb:
        yield sb


def _start(config: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "publisher", "run", "--config", str(config), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=config.parent)


def _count(config: Path, sql: str) -> int:
    engine = sa.create_engine(f"sqlite:///{config.parent / 'var' / 'publisher.db'}")
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(sql).scalar() or 0)
    except sa.exc.OperationalError:  # the daemon has not made its tables yet
        return 0
    finally:
        engine.dispose()


@pytest.mark.slow
def test_sigkill_while_edits_and_retractions_are_in_flight(tmp_path: Path, sandbox_process: SandboxProcess) -> None:
    """Items go out, then every second one is edited and every fourth retracted while the daemon is killed
    (SIGKILL) again and again; after a last run each item is on the site and the portal once, an edited
    item shows its newest revision, and a retracted one is shown nowhere."""
    sb = sandbox_process
    config = write_config(tmp_path, sb, **{"channels.provincial_feed.max_entries": 1000})
    for service in ("wordpress", "portal"):  # slow peers keep sends in flight at each kill
        faults(sb, service, latency_s=0.05)
    settings(sb, "weibo", posts_per_hour=10_000, calls_per_day=100_000)
    inbox = tmp_path / "queue" / "inbox"
    channels = ["bureau_site", "city_portal", "provincial_feed"]

    def item(n: int, rev: int, **extra: object) -> None:
        drop(inbox, f"e{n:03d}-{rev}.md", {"id": f"edit-{n:03d}", "title": f"安全生产动态第{n}期（第{rev}稿）",
                                           "category": "updates", "channels": channels, **extra}, f"第{n}期第{rev}稿。")

    for n in range(ITEMS):
        item(n, 1)
    edited = [n for n in range(ITEMS) if n % 2 == 0]
    retracted = [n for n in range(ITEMS) if n % 4 == 1]
    in_flight = 0
    store: Store | None = None
    for kill in range(KILLS):  # each life gets its share of the edits and retractions, then a SIGKILL
        daemon = _start(config)
        try:
            deadline = time.monotonic() + 60
            while len(received(sb, "wordpress")["posts"]) < ITEMS // 4 and time.monotonic() < deadline:
                time.sleep(0.02)  # the first revisions are going out
            if store is None:  # the daemon has made the store by now
                cfg = load(config)
                store = Store.open(cfg.store_url)
                review = Review(store, cfg, SystemClock())
                director = Accounts(store, SystemClock()).add("director_li", "李局长", ["director"], None, None)
            for n in edited[kill::KILLS]:
                item(n, 2)
            for n in retracted[kill::KILLS]:  # as `publisher retract` does, from another process
                review.retract(f"edit-{n:03d}", director, reason="撤回演练")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and _count(config, "SELECT count(*) FROM deliveries "
                                                                  "WHERE state = 'sending'") == 0:
                time.sleep(0.01)
            time.sleep(0.05 * (kill % 4))
        finally:
            in_flight += _count(config, "SELECT count(*) FROM deliveries WHERE state = 'sending'")
            os.kill(daemon.pid, signal.SIGKILL)
            daemon.wait(10)
    for service in ("wordpress", "portal"):
        faults(sb, service, latency_s=0)
    if store is not None:
        store.close()
    assert _start(config, "--once").wait(180) == 0

    posts = received(sb, "wordpress")["posts"]
    shown = Counter(str(p["slug"]) for p in posts if p["status"] == "publish")
    assert set(shown.values()) == {1}, [(p["id"], p["slug"], p["status"]) for p in posts]
    assert sorted(shown) == sorted(f"item-edit-{n:03d}" for n in range(ITEMS) if n not in retracted), \
        [(p["id"], p["slug"], p["status"]) for p in posts]
    public = {str(p["slug"]): p for p in posts if p["status"] == "publish"}
    for n in edited:
        if n not in retracted:
            assert "第2稿" in str(public[f"item-edit-{n:03d}"]["title"])
    articles = Counter(a["source_id"] for a in received(sb, "portal"))  # a retraction deletes the article
    assert sorted(articles) == sorted(f"edit-{n:03d}" for n in range(ITEMS) if n not in retracted)
    assert set(articles.values()) == {1}, articles.most_common(3)
    feed = (tmp_path / "var" / "feeds" / "provincial.xml").read_text(encoding="utf-8")
    assert feed.count("<entry") == ITEMS - len(retracted) and feed.count("deleted-entry") == len(retracted)
    assert in_flight > 0, "no kill caught a send in flight; the test proved nothing"
    print(f"\ncrash suite: {ITEMS} items, {len(edited)} edits, {len(retracted)} retractions, {KILLS} SIGKILLs, "
          f"{in_flight} sends in flight at the kills; duplicated 0, lost 0")
