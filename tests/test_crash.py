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


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess() as sb:
        yield sb


def _start(config: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "publisher.cli", "run", "--config", str(config), *args],
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
    for service in ("wordpress", "portal", "weibo"):  # slow peers keep many sends in flight at the kill
        faults(sandbox, service, latency_s=0.03)
    inbox = tmp_path / "queue" / "inbox"
    for n in range(ITEMS):
        channels = ["bureau_site", "city_portal", "provincial_feed"] + (["microblog"] if n < MICROBLOG else [])
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
    finish = _start(config, "--once")
    assert finish.wait(180) == 0

    posts = Counter(p["slug"] for p in received(sandbox, "wordpress")["posts"])
    articles = Counter(a["source_id"] for a in received(sandbox, "portal"))
    statuses = received(sandbox, "weibo")["statuses"]
    entries = received(sandbox, "hub")["entries"]
    assert len(posts) == ITEMS and set(posts.values()) == {1}, posts.most_common(3)
    assert len(articles) == ITEMS and set(articles.values()) == {1}, articles.most_common(3)
    assert len(statuses) == MICROBLOG
    feed = (tmp_path / "var" / "feeds" / "provincial.xml").read_text(encoding="utf-8")
    assert feed.count("<entry") == ITEMS
    assert len(entries) <= ITEMS
    assert sum(in_flight_at_kill) > 0, "the kills never caught a send in flight; the test proved nothing"
