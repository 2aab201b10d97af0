"""The dispatcher's hardening: an adapter's defect fails the row at once, and a call that outlives its
deadline is cancelled and retried before the claim's lease runs out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from channels.base import Receipt
from channels.http_push import HttpPush
from publisher.app.daemon import Daemon
from publisher.clock import FrozenClock
from publisher.dispatch.dispatcher import Dispatcher
from publisher.model import DeliveryState, Revision
from publisher.sandbox import SandboxServer
from tests.harness import drop, faults, load, write_config


class BrokenPortal(HttpPush):
    """The portal adapter with a bug in publish: it reads a key the response never had."""

    async def publish(self, rev: Revision) -> Receipt:
        answer: dict[str, str] = {}
        return Receipt(remote_id=answer["article_id"])


async def _daemon(root: Path, sandbox: SandboxServer, **overrides: object) -> Daemon:
    cfg = load(write_config(root, sandbox, **overrides))
    daemon = Daemon(cfg, clock=FrozenClock(datetime(2015, 3, 18, 9, 0, tzinfo=UTC)))
    drop(root / "queue" / "inbox", "n.md", {"id": "note-1", "title": "关于开展安全检查的通知", "category": "updates",
                                            "channels": ["city_portal"]})
    await daemon.intake.scan()
    return daemon


async def test_an_adapter_defect_fails_the_row_at_once_with_a_summary(tmp_path: Path, sandbox: SandboxServer) -> None:
    """A KeyError inside publish fails the delivery after one attempt, names the exception and where it was
    raised in last_error and the audit log, and is logged as an error with its traceback."""
    daemon = await _daemon(tmp_path, sandbox)
    real = daemon.channels["city_portal"]
    broken = BrokenPortal(name="city_portal", options=real.options, http=real.http, clock=daemon.clock)
    dispatcher = Dispatcher(store=daemon.store, config=daemon.config, channels={"city_portal": broken},
                            clock=daemon.clock)
    try:
        with capture_logs() as logs:
            await dispatcher.run_once()
        (row,) = daemon.store.deliveries_of("note-1")
        assert (row.state, row.attempts) == (DeliveryState.FAILED, 1)
        assert row.last_error is not None and "KeyError: 'article_id'" in row.last_error
        assert "test_dispatch.py:" in row.last_error
        assert daemon.store.audit_log("note-1")[0].detail["error"] == row.last_error
        bug = [e for e in logs if e["event"] == "dispatch.adapter_bug"]
        assert len(bug) == 1 and bug[0]["log_level"] == "error" and isinstance(bug[0]["exc_info"], KeyError)
    finally:
        await daemon.aclose()


@pytest.fixture
async def dripping_peer() -> AsyncIterator[str]:
    """A loopback HTTP peer that answers 200 and then sends its body one byte every 50 ms, forever:
    no single read ever waits as long as the channel's timeout, yet the call never ends."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
            while True:
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.05)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/api/articles"
    server.close()


async def test_a_call_that_outlives_its_deadline_is_cancelled_and_retried_before_the_lease_ends(
        tmp_path: Path, sandbox: SandboxServer, dripping_peer: str) -> None:
    """A publish to a peer that never finishes is cancelled at the call's deadline, below the lease, and the
    row goes to retrying with a message saying how long it took; its next attempt asks `find` first."""
    daemon = await _daemon(tmp_path, sandbox, **{"channels.city_portal.url": dripping_peer,
                                                 "channels.city_portal.timeout": "300ms"})
    dispatcher = Dispatcher(store=daemon.store, config=daemon.config, channels=daemon.channels,
                            clock=daemon.clock, lease_slack=timedelta(seconds=1))
    deadlines = dispatcher.deadlines("city_portal")
    assert deadlines.call < deadlines.lease
    try:
        started = time.monotonic()
        await dispatcher.run_once()
        took = time.monotonic() - started
        (row,) = daemon.store.deliveries_of("note-1")
        assert row.state == DeliveryState.RETRYING and row.attempts == 1
        assert row.last_error == "the call to city_portal took longer than 1.4 s and was cancelled"
        assert deadlines.call.total_seconds() <= took < deadlines.lease.total_seconds()
        assert row.lease_owner is None
    finally:
        await daemon.aclose()


async def test_a_read_back_that_never_ends_is_cancelled_at_the_deadline(
        tmp_path: Path, sandbox: SandboxServer, dripping_peer: str) -> None:
    """A verification whose feed never finishes downloading is cancelled at the call's deadline: the row stays
    sent, with a message saying so, and is read back again later instead of holding its worker."""
    daemon = await _daemon(tmp_path, sandbox, **{"channels.city_portal.verify_feed": dripping_peer,
                                                 "channels.city_portal.timeout": "300ms"})
    dispatcher = Dispatcher(store=daemon.store, config=daemon.config, channels=daemon.channels,
                            clock=daemon.clock, lease_slack=timedelta(seconds=1))
    try:
        await dispatcher.run_once()
        (row,) = daemon.store.deliveries_of("note-1")
        assert row.state == DeliveryState.SENT
        assert isinstance(daemon.clock, FrozenClock)
        daemon.clock.advance(daemon.config.channels["city_portal"].verify_after)
        started = time.monotonic()
        await dispatcher.run_once()
        took = time.monotonic() - started
        (row,) = daemon.store.deliveries_of("note-1")
        assert row.state == DeliveryState.SENT and row.verify_attempts == 1
        assert row.last_error == ("verification failed: the read-back on city_portal took longer than 1.4 s "
                                  "and was cancelled")
        assert took < dispatcher.deadlines("city_portal").lease.total_seconds()
        assert row.next_attempt_at > daemon.clock.now()
    finally:
        await daemon.aclose()


@pytest.fixture
async def black_hole() -> AsyncIterator[str]:
    """A loopback peer that takes the connection and the request and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()  # until the client goes away

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/articles"
    for writer in held:
        writer.close()
    server.close()


async def test_a_stopping_daemon_does_not_wait_for_a_peer_that_never_answers(
        tmp_path: Path, sandbox: SandboxServer, black_hole: str) -> None:
    """Told to stop while a send to a black-holed peer is in flight (its timeout 30 s), the dispatcher returns
    within a couple of seconds; the row stays `sending` under this node's name, so that the next start
    reconciles it through `find` instead of sending blindly, as after a crash."""
    daemon = await _daemon(tmp_path, sandbox, **{"channels.city_portal.url": black_hole,
                                                 "channels.city_portal.timeout": "30s"})
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.dispatcher.run(stop))
    try:
        for _ in range(200):
            (row,) = daemon.store.deliveries_of("note-1")
            if row.state == DeliveryState.SENDING:
                break
            await asyncio.sleep(0.05)
        assert row.state == DeliveryState.SENDING
        started = time.monotonic()
        stop.set()
        await asyncio.wait_for(running, 10)
        assert time.monotonic() - started < 3
        (row,) = daemon.store.deliveries_of("note-1")
        assert row.state == DeliveryState.SENDING and row.lease_owner == daemon.dispatcher.owner
        assert [d.id for d in daemon.store.stale_sending(daemon.clock.now(), owner=daemon.dispatcher.owner)] == [row.id]
    finally:
        running.cancel()
        await daemon.aclose()


async def test_requests_answered_429_count_against_the_client_side_limit(tmp_path: Path,
                                                                        sandbox: SandboxServer) -> None:
    """Under a limit of 3 an hour, five items to a portal that answers 429 make three requests, not five: a
    refused request went over the wire and counts, even though nothing was sent."""
    daemon = await _daemon(tmp_path, sandbox, **{"channels.city_portal.rate_limit": "3/h"})
    for n in range(2, 6):
        drop(tmp_path / "queue" / "inbox", f"n{n}.md", {"id": f"note-{n}", "title": f"关于开展安全检查的通知（{n}）",
                                                       "category": "updates", "channels": ["city_portal"]})
    await daemon.intake.scan()
    faults(sandbox, "portal", burst_429=10, retry_after="600")
    try:
        await daemon.dispatcher.run_once()
        async with httpx.AsyncClient(timeout=10) as client:
            log = (await client.get(f"{sandbox.base_url}/_sandbox/portal/requests")).json()
        posts = [r for r in log if r["method"] == "POST"]
        assert len(posts) == 3
        states = sorted(d.state for n in range(1, 6) for d in daemon.store.deliveries_of(f"note-{n}"))
        assert states == [DeliveryState.PENDING] * 2 + [DeliveryState.RETRYING] * 3
    finally:
        faults(sandbox, "portal", burst_429=0)
        await daemon.aclose()
