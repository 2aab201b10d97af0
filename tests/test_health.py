"""/healthz tells the truth: the store must take writes, and every part of the running daemon must be
alive; otherwise 503 with what is wrong, in words an admin acts on."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import sqlalchemy as sa

from publisher.app.daemon import Daemon
from publisher.app.web.app import create_app
from publisher.clock import FrozenClock
from publisher.sandbox import SandboxServer
from tests.harness import load, write_config


async def _health(daemon: Daemon) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(daemon.web))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:  # a Host the allow-list knows
        return await client.get("/healthz")


async def test_a_dead_dispatch_worker_makes_the_daemon_unhealthy(tmp_path: Path, sandbox: SandboxServer) -> None:
    """While the dispatcher runs, /healthz is ok; when one channel's worker has died it answers 503 and names
    that channel, because its deliveries wait until the daemon is restarted."""
    daemon = Daemon(load(write_config(tmp_path, sandbox)), clock=FrozenClock(datetime(2015, 3, 18, tzinfo=UTC)))
    stop = asyncio.Event()
    daemon.web.checks.append(lambda: daemon.stopped_parts([], stop))
    running = asyncio.create_task(daemon.dispatcher.run(stop))
    try:
        for _ in range(500):  # the workers start with the dispatcher's first step
            if daemon.dispatcher.workers:
                break
            await asyncio.sleep(0.01)
        ok = await _health(daemon)
        assert ok.status_code == 200 and ok.json()["status"] == "ok"
        worker = daemon.dispatcher.workers["city_portal"]
        worker.cancel()  # the fault: a worker that ended while the daemon runs
        await asyncio.gather(worker, return_exceptions=True)
        sick = await _health(daemon)
        assert sick.status_code == 503
        assert sick.json()["problems"] == ["the dispatch worker of city_portal (市政府门户网站) has stopped: "
                                           "its deliveries wait until the daemon is restarted"]
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
        await daemon.aclose()


async def test_a_read_only_store_makes_the_daemon_unhealthy(tmp_path: Path, sandbox: SandboxServer,
                                                            pg_url: str) -> None:
    """A PostgreSQL store that has turned read-only (a standby, or default_transaction_read_only) still answers
    reads, yet /healthz says 503 and why: nothing could be taken in or recorded."""
    daemon = Daemon(load(write_config(tmp_path, sandbox, store_url=pg_url)))
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    database = sa.engine.make_url(pg_url).database
    try:
        assert (await _health(daemon)).status_code == 200
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
        daemon.store.engine.dispose()  # new sessions take the database's new default
        sick = await _health(daemon)
        assert sick.status_code == 503
        (problem,) = sick.json()["problems"]
        assert problem.startswith("the store cannot be written:") and "read-only transaction" in problem
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
        admin.dispose()
        daemon.store.engine.dispose()
        await daemon.aclose()
