"""The lag report for the doors that serve it while the daemon dispatches: `/api/lag`, the dashboard,
`/metrics` and the alerter.

Building a report reads many rows and works through them in Python, which holds the interpreter's
lock: in the daemon's own process the dispatcher would wait meanwhile. So the running daemon builds
reports in a process of its own (`ReportProcess`), keeps the default report (now, the default
window, every channel) no older than `max_age` by refreshing it in the background, and answers a
request with its own instant, window, channel or limit there too, on demand. Tests and `run --once`
use `InProcess`: the same requests, always fresh, in a worker thread. Both sit behind `Reports`,
the one thing the doors ask.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Literal, Protocol

import structlog

from publisher.errors import PublisherError

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from publisher.clock import Clock
    from publisher.config.settings import Config
    from publisher.lag.report import Bucket, LagReport
    from publisher.store.db import Store

log = structlog.get_logger()
DEFAULT_LIMIT = 100  # late rows per channel in the default report (the API's default `limit`)


class ReportUnavailable(PublisherError):
    """The report process did not answer in time, or is gone; it is started again on the next request."""


@dataclass(frozen=True)
class Ask:
    """One report to build: the lag report at `now`, or the plot's history over `span`."""

    kind: Literal["report", "history"]
    now: datetime
    channel: str | None = None
    since: datetime | None = None
    limit: int | None = DEFAULT_LIMIT
    span: str = "24h"


def answer(store: Store, config: Config, ask: Ask) -> Any:
    """Build what `ask` asks for (in whichever process runs it)."""
    from publisher.lag import report as lag

    if ask.kind == "history":
        return lag.history(store, config, ask.now, ask.span)
    return lag.build_report(store, config, ask.now, channel=ask.channel, since=ask.since, late_limit=ask.limit)


class Runner(Protocol):
    async def run(self, ask: Ask) -> Any: ...

    async def aclose(self) -> None: ...


class InProcess:
    """Builds in a worker thread of this process (tests, `run --once`)."""

    def __init__(self, store: Store, config: Config) -> None:
        self.store, self.config = store, config

    async def run(self, ask: Ask) -> Any:
        return await asyncio.to_thread(answer, self.store, self.config, ask)

    async def aclose(self) -> None:
        return None


def _serve(conn: Connection, config_blob: bytes, store_url: str) -> None:
    """The report process: answer each Ask that arrives on `conn` until the daemon closes it."""
    import signal

    from publisher.store.db import Store

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the daemon decides
    config = pickle.loads(config_blob)  # our own daemon's config, over our own pipe
    store = Store.open(store_url, migrate=False)
    try:
        while True:
            try:
                ask = conn.recv()
            except EOFError:
                return
            try:
                conn.send(("ok", answer(store, config, ask)))
            except Exception as exc:  # a report that cannot be built is the daemon's to log
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        store.close()


class ReportProcess:
    """Builds in a child process (spawned, so that it shares no lock or connection with the daemon).
    One Ask at a time; an answer later than `timeout` kills the child, and the next Ask starts another."""

    def __init__(self, config: Config, *, timeout: float = 60.0) -> None:
        self.config, self.timeout = config, timeout
        self._blob = pickle.dumps(config)
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    def _start(self) -> Connection:
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(theirs, self._blob, self.config.store_url), name="publisher-report",
                           daemon=True)
        proc.start()
        theirs.close()
        self._proc, self._conn = proc, ours
        log.info("report.process_started", pid=proc.pid)
        return ours

    def _roundtrip(self, conn: Connection, ask: Ask) -> tuple[str, Any]:
        conn.send(ask)
        if not conn.poll(self.timeout):
            raise TimeoutError
        reply: tuple[str, Any] = conn.recv()
        return reply

    async def run(self, ask: Ask) -> Any:
        if self._closed:
            raise ReportUnavailable("the daemon is stopping")
        async with self._lock:
            if self._closed:  # closed while this request waited for its turn
                raise ReportUnavailable("the daemon is stopping")
            conn = self._conn or self._start()
            try:
                status, value = await asyncio.to_thread(self._roundtrip, conn, ask)
            except (TimeoutError, EOFError, OSError) as exc:
                self._stop()
                raise ReportUnavailable(f"the report process did not answer ({type(exc).__name__})") from None
        if status != "ok":
            raise ReportUnavailable(f"the report could not be built: {value}")
        return value

    def _stop(self) -> None:
        conn, proc, self._conn, self._proc = self._conn, self._proc, None, None
        if conn is not None:
            conn.close()
        if proc is not None and proc.is_alive():
            proc.terminate()  # mid-report too: a report is only ever read, never half written
            proc.join(1.0)
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)

    async def aclose(self) -> None:
        self._closed = True
        await asyncio.to_thread(self._stop)


class Reports:
    """What the doors ask for a report. `current()` is the default report, served from the copy the
    background refresh keeps while it is younger than `max_age` seconds (0: always built anew)."""

    def __init__(self, runner: Runner, clock: Clock, *, max_age: float = 0.0, refresh: float = 2.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.runner, self.clock, self.max_age, self.refresh = runner, clock, max_age, refresh
        self._monotonic = monotonic
        self._latest: tuple[LagReport, float] | None = None  # the report and when it was built (monotonic)
        self._encoded: dict[tuple[str, int], bytes] = {}  # answers made from the kept report, until the next rebuild

    async def current(self, limit: int = DEFAULT_LIMIT) -> tuple[LagReport, float]:
        """The default report with at most `limit` (≤ DEFAULT_LIMIT) late rows per channel, and its age in
        seconds. The late rows are each channel's oldest, so fewer of them are a prefix of the kept list."""
        if limit > DEFAULT_LIMIT:
            raise ValueError(f"the kept report lists at most {DEFAULT_LIMIT} late rows per channel")
        report, age = None, 0.0
        if self._latest is not None and self.max_age > 0:
            report, built = self._latest
            age = self._monotonic() - built
        if report is None or age > self.max_age:
            report, age = await self._rebuild(), 0.0
        if limit < DEFAULT_LIMIT:
            report = replace(report, channels=[replace(ch, late=ch.late[:limit]) for ch in report.channels])
        return report, age

    async def current_encoded(self, kind: str, limit: int, encode: Callable[[LagReport], bytes]) -> tuple[bytes, float]:
        """`encode(current(limit))` and the report's age. The bytes are kept with the kept report: until it is
        rebuilt, every ask of the same `kind` and `limit` gets them again (the JSON of a years-deep store's report
        is ~200 KB, a few milliseconds of the event loop to make)."""
        report, age = await self.current(limit)
        key = (kind, limit)
        if (body := self._encoded.get(key)) is None:
            body = encode(report)
            if self.max_age > 0:  # the kept report (with max_age 0 each ask builds its own)
                self._encoded[key] = body
        return body, age

    async def _rebuild(self) -> LagReport:
        report: LagReport = await self.runner.run(Ask("report", self.clock.now()))
        self._latest, self._encoded = (report, self._monotonic()), {}
        return report

    async def report(self, now: datetime, *, channel: str | None = None, since: datetime | None = None,
                     limit: int | None = DEFAULT_LIMIT) -> LagReport:
        """A report with its own instant, window, channel or limit, built now."""
        built: LagReport = await self.runner.run(Ask("report", now, channel=channel, since=since, limit=limit))
        return built

    async def history(self, now: datetime, span: str) -> dict[str, list[Bucket]]:
        built: dict[str, list[Bucket]] = await self.runner.run(Ask("history", now, span=span))
        return built

    async def keep_fresh(self, stop: asyncio.Event) -> None:
        """Rebuild the default report every `refresh` seconds until `stop`."""
        while not stop.is_set():
            try:
                await self._rebuild()
            except ReportUnavailable as exc:
                if not stop.is_set():  # a stopping daemon abandons the build on purpose
                    log.warning("report.refresh_failed", error=str(exc))
            try:
                await asyncio.wait_for(stop.wait(), self.refresh)
            except TimeoutError:
                pass

    async def aclose(self) -> None:
        await self.runner.aclose()
