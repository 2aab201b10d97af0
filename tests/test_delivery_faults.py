"""Delivery under faults, on the running daemon's own parts and the sandbox's peers: a retraction follows a send
in flight, a person's retry waits for the link, and a row whose outcome the store refused is reconciled
without a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from publisher.app.daemon import Daemon
from publisher.clock import FrozenClock
from publisher.model import DeliveryState
from publisher.review.accounts import Account, Accounts
from publisher.sandbox import SandboxServer
from tests.harness import drop, faults, load, received, write_config


@pytest.fixture
async def daemon(tmp_path: Path, sandbox: SandboxServer) -> AsyncIterator[Daemon]:
    cfg = load(write_config(tmp_path, sandbox))
    d = Daemon(cfg, clock=FrozenClock(datetime.now(UTC)))
    yield d
    await d.aclose()


def _director(daemon: Daemon) -> Account:
    """An account of the role config.yaml lets take an item down (`retract_roles`)."""
    return Accounts(daemon.store, daemon.clock).add("director_li", "李局长", ["director"], None, None)


def _posts(sandbox: SandboxServer, item_id: str) -> list[dict[str, object]]:
    return [p for p in received(sandbox, "wordpress")["posts"] if item_id in str(p["slug"])]


def _newest(daemon: Daemon, item_id: str, channel: str) -> DeliveryState:
    return [d for d in daemon.store.deliveries_of(item_id) if d.channel == channel][-1].state


async def _until(predicate: object, within_s: float = 20) -> None:
    for _ in range(int(within_s / 0.02)):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def test_a_retraction_made_while_the_create_is_in_flight_takes_the_post_down(
        tmp_path: Path, daemon: Daemon, sandbox: SandboxServer) -> None:
    """The item is retracted while WordPress is still answering its create: once the create lands, the
    retraction follows it there, and no copy of the item stays public."""
    director = _director(daemon)
    faults(sandbox, "wordpress", write_latency_s=0.4)
    drop(tmp_path / "queue" / "inbox", "r.md", {"id": "inflight-1", "title": "撤回测试", "category": "updates",
                                                 "channels": ["bureau_site"]})
    await daemon.intake.scan()
    sending = asyncio.create_task(daemon.dispatcher.run_once())
    await _until(lambda: _newest(daemon, "inflight-1", "bureau_site") == DeliveryState.SENDING)
    daemon.review.retract("inflight-1", director, reason="内容有误")
    await sending
    faults(sandbox, "wordpress", write_latency_s=0)
    await daemon.dispatcher.run_once()
    posts = _posts(sandbox, "inflight-1")
    assert len(posts) == 1 and posts[0]["status"] == "trash"
    rows = daemon.store.deliveries_of("inflight-1")
    assert [(r.retract, r.state) for r in rows] == [(False, DeliveryState.SUPERSEDED), (True, DeliveryState.LIVE)]
    assert rows[0].sent_at is not None  # it was sent: the rate limit counts it
    with daemon.store.read() as conn:
        (placed,) = daemon.store.placements_of(conn, "inflight-1")
    assert placed.retracted and placed.remote_id == str(posts[0]["id"])


async def test_a_transient_failure_after_a_retraction_is_not_retried(
        tmp_path: Path, daemon: Daemon, sandbox: SandboxServer) -> None:
    """A create in flight at the retraction that then fails with a 503 is superseded, not retried later:
    nothing reaches the site after the retraction."""
    director = _director(daemon)
    faults(sandbox, "wordpress", latency_s=0.3, error_rate=1.0, error_status=503)
    drop(tmp_path / "queue" / "inbox", "r.md", {"id": "inflight-2", "title": "撤回测试二", "category": "updates",
                                                 "channels": ["bureau_site"]})
    await daemon.intake.scan()
    sending = asyncio.create_task(daemon.dispatcher.run_once())
    await _until(lambda: _newest(daemon, "inflight-2", "bureau_site") == DeliveryState.SENDING)
    daemon.review.retract("inflight-2", director)
    await sending
    faults(sandbox, "wordpress", latency_s=0, error_rate=0.0)
    daemon.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]
    await daemon.dispatcher.run_once()
    assert _posts(sandbox, "inflight-2") == []
    states = {(r.retract, r.state) for r in daemon.store.deliveries_of("inflight-2")}
    assert states == {(False, DeliveryState.SUPERSEDED), (True, DeliveryState.LIVE)}
    assert daemon.dispatcher.retry("inflight-2", by="管理员") == 0  # nothing of the retracted item is re-queued


async def test_retry_of_a_failed_site_and_microblog_waits_for_the_site(
        tmp_path: Path, daemon: Daemon, sandbox: SandboxServer) -> None:
    """Both the site (401) and the microblog (no link) failed; `retry` of the item sends the site first and
    then the microblog with the site's link, instead of failing the microblog again at once."""
    faults(sandbox, "wordpress", unauthorized=True)
    drop(tmp_path / "queue" / "inbox", "m.md", {"id": "both-1", "title": "重试测试", "category": "updates",
                                                 "channels": ["bureau_site", "microblog"]})
    await daemon.intake.scan()
    await daemon.dispatcher.run_once()
    assert {d.channel: d.state for d in daemon.store.deliveries_of("both-1")} == {
        "bureau_site": DeliveryState.FAILED, "microblog": DeliveryState.FAILED}
    faults(sandbox, "wordpress", unauthorized=False)
    assert daemon.dispatcher.retry("both-1", by="管理员") == 2
    assert _newest(daemon, "both-1", "microblog") == DeliveryState.WAITING
    await daemon.dispatcher.run_once()
    rows = {d.channel: d for d in daemon.store.deliveries_of("both-1")}
    assert rows["bureau_site"].state in (DeliveryState.SENT, DeliveryState.LIVE)
    assert rows["microblog"].state in (DeliveryState.SENT, DeliveryState.LIVE), rows["microblog"].last_error
    (status,) = received(sandbox, "weibo")["statuses"]
    assert str(rows["bureau_site"].url) in str(status)


async def test_a_running_daemon_reconciles_a_row_whose_outcome_the_store_refused(
        tmp_path: Path, daemon: Daemon, sandbox: SandboxServer) -> None:
    """The store refuses the write of a send's outcome (the row stays `sending`); once its lease has run out,
    the running daemon reconciles it through `find` with no restart: one post, and the row goes on to live."""
    with daemon.store.tx() as conn:
        conn.exec_driver_sql("CREATE TRIGGER refuse_sent BEFORE UPDATE OF state ON deliveries "
                             "WHEN NEW.state = 'sent' BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")
    drop(tmp_path / "queue" / "inbox", "s.md", {"id": "lease-1", "title": "租约测试", "category": "updates",
                                                 "channels": ["bureau_site"]})
    await daemon.intake.scan()
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.dispatcher.run(stop))
    try:
        await _until(lambda: len(_posts(sandbox, "lease-1")) == 1)
        await asyncio.sleep(0.3)  # the outcome's write was refused
        assert _newest(daemon, "lease-1", "bureau_site") == DeliveryState.SENDING
        with daemon.store.tx() as conn:
            conn.exec_driver_sql("DROP TRIGGER refuse_sent")
        daemon.clock.advance(daemon.dispatcher.deadlines("bureau_site").lease * 2)  # type: ignore[attr-defined]
        daemon.dispatcher.wake("bureau_site")
        await _until(lambda: _newest(daemon, "lease-1", "bureau_site") == DeliveryState.SENT)
    finally:
        stop.set()
        await running
    assert len(_posts(sandbox, "lease-1")) == 1
    assert any(a.action == "reconcile" for a in daemon.store.audit_log("lease-1"))
