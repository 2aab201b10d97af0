"""Group commit: sends whose calls return in the same turn of the event loop are recorded in one transaction,
and a row that moved on meanwhile is reported stale while the rest of its batch is kept."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from channels.base import Receipt
from publisher.app.daemon import Daemon
from publisher.clock import FrozenClock
from publisher.model import DeliveryState, IllegalTransition
from publisher.sandbox import SandboxServer
from tests.harness import portal_daemon

T0 = datetime(2015, 3, 18, 9, 0, tzinfo=UTC)


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


async def _daemon(root: Path, sandbox: SandboxServer, n: int, store_url: str | None = None) -> Daemon:
    return await portal_daemon(root, sandbox, [f"note-{i}" for i in range(n)], concurrency=8, clock=FrozenClock(T0),
                               store_url=store_url)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_sends_returning_together_commit_together(tmp_path: Path, sandbox: SandboxServer, backend: str,
                                                       request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    daemon = await _daemon(tmp_path, sandbox, 5, url)
    try:
        d = daemon.dispatcher
        rows = daemon.store.claim("city_portal", d.owner, T0, 10, timedelta(minutes=1))
        assert len(rows) == 5 and all(r.state == DeliveryState.SENDING for r in rows)
        revs = [d.books.revision(r) for r in rows]
        daemon.clock.advance(1)  # type: ignore[attr-defined]
        await asyncio.gather(*(d.batch.sent(r, Receipt(remote_id=f"r{r.id}", url=f"https://portal.example/a/{r.id}"), rev)
                               for r, rev in zip(rows, revs, strict=True) if rev is not None))
        for r in rows:
            (now,) = daemon.store.deliveries_of(r.item_id)
            assert (now.state, now.remote_id, now.url) == (DeliveryState.SENT, f"r{r.id}", f"https://portal.example/a/{r.id}")
            assert now.lease_owner is None and now.next_attempt_at > T0
            with daemon.store.read() as conn:
                placed = daemon.store.placement(conn, r.item_id, "city_portal")
            assert placed is not None and placed.remote_id == f"r{r.id}" and not placed.retracted
            (sent,) = [a for a in daemon.store.audit_log(r.item_id) if a.action == "send"]
            assert sent.detail["outcome"] == "sent" and sent.detail["remote_id"] == f"r{r.id}"
    finally:
        await daemon.aclose()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_row_that_moved_on_is_stale_and_the_rest_of_its_batch_is_kept(tmp_path: Path, sandbox: SandboxServer,
                                                                              backend: str,
                                                                             request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    daemon = await _daemon(tmp_path, sandbox, 3, url)
    try:
        d = daemon.dispatcher
        rows = daemon.store.claim("city_portal", d.owner, T0, 10, timedelta(minutes=1))
        revs = [d.books.revision(r) for r in rows]
        with daemon.store.tx() as conn:  # another node reconciled the first row meanwhile
            daemon.store.back_to_pending(conn, rows[0].id, T0)
        outcomes = await asyncio.gather(
            *(d.batch.sent(r, Receipt(remote_id=f"r{r.id}", url=None), rev) for r, rev in zip(rows, revs, strict=True)
              if rev is not None), return_exceptions=True)
        assert isinstance(outcomes[0], IllegalTransition) and outcomes[1:] == [None, None]
        states = [daemon.store.deliveries_of(r.item_id)[0].state for r in rows]
        assert states == [DeliveryState.PENDING, DeliveryState.SENT, DeliveryState.SENT]
    finally:
        await daemon.aclose()


@pytest.mark.parametrize("n", [24])
async def test_a_burst_through_eight_slots_reaches_the_portal_once_each(tmp_path: Path, sandbox: SandboxServer,
                                                                        n: int) -> None:
    daemon = await _daemon(tmp_path, sandbox, n)
    try:
        await daemon.dispatcher.run_once()
        async with httpx.AsyncClient(timeout=10) as client:
            log = (await client.get(f"{sandbox.base_url}/_sandbox/portal/requests")).json()
        posted = sorted(r["body"]["source_id"] for r in log if r["method"] == "POST")
        assert posted == sorted(f"note-{i}" for i in range(n))
        for i in range(n):
            (row,) = daemon.store.deliveries_of(f"note-{i}")
            assert row.state in (DeliveryState.SENT, DeliveryState.LIVE) and row.attempts == 1
    finally:
        await daemon.aclose()
