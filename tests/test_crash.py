"""Kill -9 in the middle of a fan-out, start again, and count on the peers' side: nothing twice, nothing missing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from publisher.sandbox import SandboxProcess
from tests.harness import drop, faults, received, settings, write_config

pytestmark = pytest.mark.slow
ITEMS = 120
MICROBLOG = 20
WECHAT = 8


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess() as sb:
        yield sb


def _start(config: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "publisher", "run", "--config", str(config), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=config.parent)


def _wait_for(predicate: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for the fan-out to get going")


def _sending(config: Path) -> int:
    engine = sa.create_engine(f"sqlite:///{config.parent / 'var' / 'publisher.db'}")
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM deliveries WHERE state = 'sending'").scalar() or 0)
    finally:
        engine.dispose()


def test_sigkill_mid_fanout_loses_nothing_and_posts_nothing_twice(tmp_path: Path, sandbox: SandboxProcess) -> None:
    """Two SIGKILLs during a fan-out of 120 items; after a restart every peer holds each item exactly once."""
    config = write_config(tmp_path, sandbox, **{
        "channels.microblog.rate_limit": "10000/h", "channels.provincial_feed.max_entries": 1000})
    settings(sandbox, "weibo", posts_per_hour=10_000, calls_per_day=100_000)
    settings(sandbox, "wechat", publish_seconds=0.2)  # a publish in progress at a kill is resumed from its checkpoint
    for service in ("wordpress", "portal", "weibo", "wechat"):  # slow peers keep many sends in flight at the kill
        faults(sandbox, service, latency_s=0.03)
    inbox = tmp_path / "queue" / "inbox"
    for n in range(ITEMS):
        channels = ["bureau_site", "city_portal", "provincial_feed"] + (["microblog"] if n < MICROBLOG else []) + (
            ["wechat"] if MICROBLOG <= n < MICROBLOG + WECHAT else [])
        drop(inbox, f"k{n:03d}.md", {"id": f"kill-{n:03d}", "title": f"安全生产动态第{n}期", "category": "updates",
                                     "channels": channels}, f"第{n}期正文。")

    in_flight_at_kill = []
    for threshold in (25, 70):
        daemon = _start(config, "--log-format", "json")
        try:
            _wait_for(lambda t=threshold: len(received(sandbox, "wordpress")["posts"]) >= t)
        finally:
            os.kill(daemon.pid, signal.SIGKILL)
            daemon.wait(10)
        in_flight_at_kill.append(_sending(config))

    faults(sandbox, "wordpress", latency_s=0)
    faults(sandbox, "portal", latency_s=0)
    faults(sandbox, "weibo", latency_s=0)
    faults(sandbox, "wechat", latency_s=0)
    finish = _start(config, "--once")
    assert finish.wait(180) == 0

    # public posts: a create cut short by a kill leaves a draft, which the next create of the item trashes
    posts = Counter(p["slug"] for p in received(sandbox, "wordpress")["posts"] if p["status"] == "publish")
    articles = Counter(a["source_id"] for a in received(sandbox, "portal"))
    statuses = received(sandbox, "weibo")["statuses"]
    entries = received(sandbox, "hub")["entries"]
    assert len(posts) == ITEMS and set(posts.values()) == {1}, posts.most_common(3)
    assert len(articles) == ITEMS and set(articles.values()) == {1}, articles.most_common(3)
    assert len(statuses) == MICROBLOG
    jobs = Counter(j["news_item"][0]["content_source_url"] for j in received(sandbox, "wechat")["jobs"])
    assert len(jobs) == WECHAT and set(jobs.values()) == {1}, jobs.most_common(3)
    assert len(received(sandbox, "wechat")["articles"]) == WECHAT
    feed = (tmp_path / "var" / "feeds" / "provincial.xml").read_text(encoding="utf-8")
    assert feed.count("<entry") == ITEMS
    assert len(entries) <= ITEMS
    assert sum(in_flight_at_kill) > 0, "the kills never caught a send in flight; the test proved nothing"


@pytest.mark.postgres
def test_sigkill_between_archiving_and_the_commit_loses_no_file(tmp_path: Path, sandbox: SandboxProcess,
                                                                pg_url: str) -> None:
    """The daemon is killed while intake's commit waits on a lock, after the file has a place in the archive.
    The file and its attachment are still held (.claimed, the inbox) until the commit, so the next run stores
    the item, and the archive holds each file exactly once."""
    config = write_config(tmp_path, sandbox, store_url=pg_url)
    subprocess.run([sys.executable, "-m", "publisher", "run", "--config", str(config), "--once"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)  # makes the tables
    inbox, root = tmp_path / "queue" / "inbox", tmp_path / "queue"
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        conn.exec_driver_sql("LOCK TABLE revisions IN SHARE MODE")  # reads go on; the insert waits
        daemon = _start(config)
        (inbox / "表格.xlsx").write_bytes(b"PK\x03\x04 table")
        drop(inbox, "held.md", {"id": "held-1", "title": "关于开展安全检查的通知", "category": "updates",
                                "attachments": ["表格.xlsx"]})
        _wait_for(lambda: (root / "archive" / "held.md").exists())
        time.sleep(0.3)  # the intake now waits inside its commit
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(30)
        conn.rollback()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM revisions").scalar() == 0  # the kill came before the commit
    subprocess.run([sys.executable, "-m", "publisher", "run", "--config", str(config), "--once"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT item_id FROM revisions").scalars().all() == ["held-1"]
    engine.dispose()
    assert sorted(p.name for p in (root / "archive").iterdir()) == ["held.md", "held.md.files"]
    assert (root / "archive" / "held.md.files" / "表格.xlsx").read_bytes() == b"PK\x03\x04 table"
    assert list(inbox.iterdir()) == [] and list((root / ".claimed").iterdir()) == []
