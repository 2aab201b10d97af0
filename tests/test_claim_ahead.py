"""Rows claimed ahead of their slot: a row whose call starts long after its claim renews its lease first, and one
whose lease another node has taken meanwhile is not sent (publisher/dispatch/dispatcher.py, `_started`); a slot
that found nothing to claim while rows were in flight takes what came due meanwhile (`_drain`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from publisher.app.daemon import Daemon
from publisher.clock import FrozenClock
from publisher.model import DeliveryState
from publisher.sandbox import SandboxServer
from tests.harness import drop_notice, faults, portal_daemon

T0 = datetime(2015, 3, 18, 9, 0, tzinfo=UTC)
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def daemon(tmp_path: Path, sandbox: SandboxServer, request: pytest.FixtureRequest) -> AsyncIterator[Daemon]:
    """One slot on the city portal, so that a claim takes two rows and the second waits for the first's call."""
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    daemon = await portal_daemon(tmp_path, sandbox, [f"note-{i}" for i in range(3)], concurrency=1,
                                 clock=FrozenClock(T0), store_url=url)
    try:
        yield daemon
    finally:
        await daemon.aclose()


async def _posted(sandbox: SandboxServer) -> list[str]:
    async with httpx.AsyncClient(timeout=10) as client:
        log = (await client.get(f"{sandbox.base_url}/_sandbox/portal/requests")).json()
    return sorted(r["body"]["source_id"] for r in log if r["method"] == "POST")


async def test_a_row_that_waited_past_its_lease_renews_it_before_its_call(daemon: Daemon,
                                                                         sandbox: SandboxServer) -> None:
    clock, d = daemon.clock, daemon.dispatcher
    assert isinstance(clock, FrozenClock)
    lease = d.deadlines("city_portal")
    seen: dict[str, tuple[datetime, datetime | None]] = {}  # item → (the clock, its row's lease) as its call went out

    async def on_request(req: httpx.Request) -> None:
        if req.method != "POST":
            return
        item = json.loads(req.content)["source_id"]
        (row,) = daemon.store.deliveries_of(item)
        seen[item] = (clock.now(), row.lease_until)
        clock.advance(lease.lease.total_seconds())  # each call "takes" a whole lease: the next row waited past its own

    daemon.channels["city_portal"].http.event_hooks["request"].append(on_request)
    await d.run_once()
    assert await _posted(sandbox) == ["note-0", "note-1", "note-2"]
    for item, (at, until) in seen.items():  # every call went out under a lease that outlasts it
        assert until is not None and until >= at + lease.call, item
        (row,) = daemon.store.deliveries_of(item)
        assert row.state in (DeliveryState.SENT, DeliveryState.LIVE) and row.attempts == 1


async def test_a_row_another_node_took_meanwhile_is_not_sent(daemon: Daemon, sandbox: SandboxServer) -> None:
    clock, d = daemon.clock, daemon.dispatcher
    assert isinstance(clock, FrozenClock)

    async def on_request(req: httpx.Request) -> None:
        if req.method == "POST" and json.loads(req.content)["source_id"] == "note-0":
            # the call runs long; note-1, claimed with it, outlives its lease and another node takes it
            clock.advance(d.deadlines("city_portal").lease.total_seconds() + 1)
            with daemon.store.tx() as conn:
                conn.execute(sa.text("UPDATE deliveries SET lease_owner = 'other:2', lease_until = :u "
                                     "WHERE item_id = 'note-1'"), {"u": clock.now() + timedelta(minutes=5)})

    daemon.channels["city_portal"].http.event_hooks["request"].append(on_request)
    await d.run_once()
    assert await _posted(sandbox) == ["note-0", "note-2"]
    (taken,) = daemon.store.deliveries_of("note-1")
    assert (taken.state, taken.lease_owner) == (DeliveryState.SENDING, "other:2")


async def test_slots_that_found_nothing_to_claim_take_the_rows_that_came_due_while_one_was_in_flight(
        tmp_path: Path, sandbox: SandboxServer) -> None:
    """Four slots, one row due: the three slots whose claims come back empty do not leave. Once the row in flight
    is done, the eight rows that came due meanwhile go out four at a time, not one after another."""
    daemon = await portal_daemon(tmp_path, sandbox, ["first"], concurrency=4, clock=FrozenClock(T0))
    try:
        faults(sandbox, "portal", latency_s=0.3)
        drain = asyncio.create_task(daemon.dispatcher._drain("city_portal"))
        await asyncio.sleep(0.1)  # the first row is in flight; the other slots found nothing to claim
        for i in range(8):
            drop_notice(tmp_path / "queue" / "inbox", f"later-{i}")
        await daemon.intake.scan()
        assert await drain == 9
        async with httpx.AsyncClient(timeout=10) as client:
            log = (await client.get(f"{sandbox.base_url}/_sandbox/portal/requests")).json()
        later = sorted(r["at"] for r in log if r["method"] == "POST" and r["body"]["source_id"] != "first")
        assert len(later) == 8
        assert later[3] - later[0] < 0.2  # one after another they would be 0.3 s apart, 0.9 s from first to fourth
    finally:
        await daemon.aclose()
