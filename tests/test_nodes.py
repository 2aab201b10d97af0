"""Several daemons on one host and one store: a starting daemon reconciles only the `sending` rows of a
process that is gone, never those a live sibling has in flight (which it would send a second time)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from publisher.app.daemon import Daemon
from publisher.model import DeliveryState
from publisher.sandbox import SandboxServer
from publisher.store.schema import deliveries
from tests.harness import drop, load, write_config


async def _claimed(root: Path, sandbox: SandboxServer) -> tuple[Path, Daemon, int]:
    """A daemon of this process (real clock) whose one city_portal row is claimed under its name, as
    while its send is in flight."""
    config = write_config(root, sandbox)
    daemon = Daemon(load(config))
    drop(root / "queue" / "inbox", "n.md", {"id": "note-1", "title": "关于开展安全检查的通知", "category": "updates",
                                            "channels": ["city_portal"]})
    await daemon.intake.scan()
    (row,) = daemon.store.claim("city_portal", daemon.dispatcher.owner, daemon.clock.now(), 1, timedelta(minutes=10))
    assert row.state == DeliveryState.SENDING
    return config, daemon, row.id


def _portal_posts(sandbox: SandboxServer) -> int:
    log = httpx.get(f"{sandbox.base_url}/_sandbox/portal/requests", timeout=10).json()
    return sum(1 for r in log if r["method"] == "POST")


async def test_a_second_daemon_on_this_host_leaves_a_live_siblings_sends_alone(
        tmp_path: Path, sandbox: SandboxServer) -> None:
    """`publisher run --once` started beside a live daemon of the same host and store (its row leased and in
    flight) neither reconciles nor sends that row: the portal gets no request, the row stays the
    sibling's. (When leases named the host alone, the newcomer took the row for its own previous life,
    found nothing on the portal yet and posted it again: a duplicate once the sibling's send landed.)"""
    config, daemon, row_id = await _claimed(tmp_path, sandbox)
    try:
        await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "publisher", "run", "--config", str(config), "--once"], check=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path, timeout=120)
        row = daemon.store.delivery(row_id)
        assert row is not None
        assert (row.state, row.lease_owner, row.attempts) == (DeliveryState.SENDING, daemon.dispatcher.owner, 1)
        assert _portal_posts(sandbox) == 0
    finally:
        await daemon.aclose()


def _ended(*, reaped: bool) -> subprocess.Popen[bytes]:
    """A process of this host that was killed: reaped (its pid free), or a zombie (its pid still taken)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    proc.kill()
    if reaped:
        proc.wait(10)
    else:
        while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.01)
    return proc


@pytest.mark.parametrize("owner", ["gone", "zombie", "host alone"])
async def test_rows_of_a_process_of_this_host_that_is_gone_are_reconciled_at_once(
        tmp_path: Path, sandbox: SandboxServer, owner: str) -> None:
    """A row leased (lease still running) by a process of this host that has ended, by one killed and
    not yet reaped, or under the host's name alone (as leases were named before) is reconciled at start:
    nothing on the portal, so it is due again at once."""
    _config, daemon, row_id = await _claimed(tmp_path, sandbox)
    proc = _ended(reaped=owner == "gone")
    try:
        host = socket.gethostname()[:50]
        with daemon.store.tx() as conn:
            conn.execute(deliveries.update().where(deliveries.c.id == row_id)
                         .values(lease_owner=host if owner == "host alone" else f"{host}:{proc.pid}"))
        leased = daemon.store.delivery(row_id)
        assert leased is not None and leased.lease_until is not None and leased.lease_until > daemon.clock.now()
        assert await daemon.dispatcher.recover() == 1
        row = daemon.store.delivery(row_id)
        assert row is not None and row.state == DeliveryState.PENDING
    finally:
        proc.wait(10)
        await daemon.aclose()
