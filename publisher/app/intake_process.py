"""Intake in a process of its own while the daemon runs: the inbox's files are read, screened and recorded there.

Reading an item file, screening it and recording its revision is Python work that holds the interpreter's lock:
in the daemon's own process the dispatcher's sends waited while a drop of thousands of files went through (a
ten-year backfill's intake took half the run's event loop, docs/BENCHMARKS.md). So `publisher run` starts this
child (spawned: it shares no lock, connection or file descriptor with the daemon but its end of a pipe), which
watches the inbox (inotify), rescans it every `queue.rescan`, and records each item in the store exactly as the
daemon's own intake did: the same `Intake`, the same transactions, so a crash at any point loses nothing (a file
claimed and not filed is taken again at the next start). Over the pipe it says what the daemon must know at once:

- `approved`: a revision became due on its channels: the dispatcher wakes now (not at its next poll), so a drop
  reaches its first channel as fast as before;
- `file <outcome>`: a file was accepted, rejected or a duplicate (`/metrics`' intake counter).

The daemon stops the child when it stops (the child finishes the file in hand and exits; one that does not
within `STOP_WAIT` is terminated, which intake survives as it survives a crash), restarts it after a pause if
it dies, and the child stops by itself when the daemon is gone (its end of the pipe closes). `run --once` and
the tests' in-process daemons keep intake on the daemon's loop.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from publisher.config.settings import Config

log = structlog.get_logger()
STOP_WAIT = 2.0  # seconds a stopping child gets to finish the file in hand
RESTART_AFTER = 5.0  # seconds before a child that died is started again


def _serve(conn: Connection, config_blob: bytes, logging: dict[str, Any]) -> None:
    """The child: intake until the daemon says stop or goes away."""
    import signal

    from publisher.logs import configure_logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the daemon decides
    configure_logging(**logging)
    config = pickle.loads(config_blob)  # our own daemon's config, over our own pipe
    asyncio.run(_intake(conn, config))


async def _intake(conn: Connection, config: Config) -> None:
    from publisher.clock import SystemClock
    from publisher.intake.queue import Intake
    from publisher.intake.watch import watch_inbox
    from publisher.review.chain import Review
    from publisher.store.db import Store

    def tell(*message: str) -> None:
        try:
            conn.send(message)
        except (BrokenPipeError, OSError):  # the daemon is gone: stop below
            stop.set()

    clock, stop = SystemClock(), asyncio.Event()
    store = Store.open(config.store_url, migrate=False)  # the daemon migrated it before starting this process
    intake = Intake(config, store, Review(store, config, clock), clock, on_approved=lambda: tell("approved"),
                    on_file=lambda outcome: tell("file", outcome))
    loop = asyncio.get_running_loop()
    loop.add_reader(conn.fileno(), stop.set)  # "stop", or the end of the pipe: the daemon is gone

    async def rescan() -> None:
        while not stop.is_set():
            try:
                await intake.scan()
            except Exception:
                log.exception("intake.scan_failed")
            try:
                await asyncio.wait_for(stop.wait(), config.queue.rescan.total_seconds())
            except TimeoutError:
                pass

    parts = [asyncio.create_task(rescan(), name="rescan")]
    if config.queue.watch:
        parts.append(asyncio.create_task(watch_inbox(intake.inbox, intake.writes, intake.scan, stop), name="watch"))
    log.info("intake.process_started", inbox=str(intake.inbox))
    try:
        await stop.wait()
    finally:  # a scan in hand stops at its next file (Intake lets go of what it claimed)
        loop.remove_reader(conn.fileno())
        for task in parts:
            task.cancel()
        await asyncio.gather(*parts, return_exceptions=True)
        store.close()


class IntakeProcess:
    """The daemon's side: starts the child, hands its news to `on_approved` and `on_file`, restarts it if it dies."""

    def __init__(self, config: Config, *, on_approved: Callable[[], None], on_file: Callable[[str], None],
                 logging: dict[str, Any] | None = None, restart_after: float = RESTART_AFTER) -> None:
        from publisher.logs import current_logging

        self.config, self.on_approved, self.on_file = config, on_approved, on_file
        self.restart_after = restart_after
        self._blob = pickle.dumps(config)
        self._logging = logging or current_logging()
        self._proc: BaseProcess | None = None
        self.started = 0  # children started so far

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    async def run(self, stop: asyncio.Event) -> None:
        """Keep a child running until `stop`; then stop it."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            ctx = multiprocessing.get_context("spawn")
            ours, theirs = ctx.Pipe()
            proc = self._proc = ctx.Process(target=_serve, args=(theirs, self._blob, self._logging),
                                            name="publisher-intake", daemon=True)
            proc.start()
            theirs.close()
            self.started += 1
            log.info("intake.process_spawned", pid=proc.pid)
            ended = asyncio.Event()
            loop.add_reader(ours.fileno(), self._read, ours, ended)
            waits = [asyncio.create_task(stop.wait()), asyncio.create_task(ended.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waits:
                    task.cancel()
                loop.remove_reader(ours.fileno())
                await asyncio.to_thread(self._end, ours, proc)
            if not stop.is_set():
                log.error("intake.process_died", pid=proc.pid, exitcode=proc.exitcode, restart_in_s=self.restart_after)
                try:
                    await asyncio.wait_for(stop.wait(), self.restart_after)
                except TimeoutError:
                    pass

    def _read(self, conn: Connection, ended: asyncio.Event) -> None:
        try:
            while conn.poll():
                message = conn.recv()
                if message[0] == "approved":
                    self.on_approved()
                elif message[0] == "file":
                    self.on_file(message[1])
        except (EOFError, OSError):
            ended.set()

    @staticmethod
    def _end(conn: Connection, proc: BaseProcess) -> None:
        try:
            conn.send(("stop",))
        except (BrokenPipeError, OSError):
            pass
        proc.join(STOP_WAIT)
        if proc.is_alive():  # a file mid-way is taken again at the next start, as after a crash
            proc.terminate()
            proc.join(1.0)
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)
        conn.close()


__all__ = ["IntakeProcess"]
