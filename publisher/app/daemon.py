"""The daemon: makes the I/O objects once, wires intake → review → dispatch → web, handles signals."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
from pathlib import Path
from typing import Any

import httpx
import structlog
import uvicorn

from channels.base import Channel
from channels.registry import adapter_class
from channels.transport import channel_client
from publisher import __version__
from publisher.app.intake_process import RESTART_AFTER, IntakeProcess
from publisher.app.notify import ReviewNotifier
from publisher.app.reports import ReportProcess, Reports
from publisher.app.web.app import create_app
from publisher.app.web.context import WebContext
from publisher.clock import Clock, SystemClock
from publisher.config.settings import Config
from publisher.dispatch.dispatcher import Dispatcher
from publisher.dispatch.livecheck import LiveCheck
from publisher.dispatch.telemetry import Telemetry
from publisher.errors import PublisherError
from publisher.intake.queue import Intake
from publisher.intake.sources import SourcePoller
from publisher.intake.watch import watch_inbox
from publisher.lag.alerts import Alerter
from publisher.review.accounts import Accounts
from publisher.review.chain import Review
from publisher.review.links import LinkChecker
from publisher.store.changes import ChangeFeed
from publisher.store.db import Store

log = structlog.get_logger()
ANALYZE_EVERY = 6 * 3600  # seconds between refreshes of the store's planner statistics
# What it means for an admin when one of the daemon's parts has ended (/healthz says it)
STOPPED = {
    "watch": "the inbox watcher has stopped: new files wait for the next rescan",
    "intake": "the inbox's intake process is no longer kept running: new files wait until the daemon is restarted",
    "rescan": "the inbox rescan has stopped: files dropped while the watcher misses them stay in the inbox",
    "dispatch": "dispatch has stopped: nothing is sent or verified",
    "store-changes": "the daemon no longer hears other processes' approvals at once (they wait for the next poll)",
    "alerts": "the alerter has stopped: no alert goes out",
    "report": "the lag report's refresh has stopped: each page and scrape builds its own",
    "sources": "the district sources are no longer polled: their new entries wait until the daemon is restarted",
    "review-notify": "reviewers are no longer told what waits for them (digests and escalations)",
    "links": "the screen's link check has stopped: links in revisions under review are not checked",
    "livecheck": "live items are no longer read back: an article WeChat takes down stays counted as live",
}
INTAKE_DOWN = ("the inbox's intake process is not running: new files wait until it is started again (within "
               f"{RESTART_AFTER:g} s)")
REPORT_REFRESH = 2.0  # seconds between rebuilds of the default lag report the web doors serve
REPORT_MAX_AGE = 5.0  # the oldest copy of it a door may serve; older, it is built on the spot


def build_channels(config: Config, clock: Clock) -> dict[str, Channel]:
    """One adapter per enabled channel, each with its own HTTP client and connection pool (channels/transport.py)."""
    channels: dict[str, Channel] = {}
    for name, cfg in config.channels.items():
        if not cfg.enabled:
            continue
        cls = adapter_class(cfg.type)
        options = cfg.options
        updates = {k: config.path(v) for k, v in options if isinstance(v, Path) and not v.is_absolute()}
        if updates:
            options = options.model_copy(update=updates)
        http = channel_client(timeout=cfg.timeout.total_seconds(), concurrency=cfg.concurrency,
                              user_agent=f"publisher/{__version__}")
        channels[name] = cls(name=name, options=options, http=http, clock=clock, display_name=cfg.display(name))
    return channels


class Daemon:
    def __init__(self, config: Config, *, clock: Clock | None = None, store: Store | None = None,
                 intake_process: bool = False) -> None:
        """`intake_process`: while `run` runs, intake is a process of its own (publisher/app/intake_process.py;
        `publisher run` asks for it); else on this loop (`run_once`, the tests' in-process daemons)."""
        self.config = config
        self._intake_process: IntakeProcess | None = None
        if intake_process:
            self._intake_process = IntakeProcess(config, on_approved=lambda: self.dispatcher.wake(),
                                                 on_file=lambda outcome: self.telemetry.intake_file(outcome))
        self.clock = clock or SystemClock()
        self.store = store or Store.open(config.store_url)
        self.channels = build_channels(config, self.clock)
        self.review = Review(self.store, config, self.clock)
        self.accounts = Accounts(self.store, self.clock, roles=config.roles, session_ttl=config.review.session_ttl)
        self.telemetry = Telemetry(config.channels)  # the counters /metrics shows: dispatcher and intake feed them
        self.dispatcher = Dispatcher(store=self.store, config=config, channels=self.channels, clock=self.clock,
                                     telemetry=self.telemetry)
        self.intake = Intake(config, self.store, self.review, self.clock, on_approved=self.dispatcher.wake,
                             on_file=self.telemetry.intake_file)
        self.web = WebContext(config=config, store=self.store, clock=self.clock, channels=self.channels,
                              dispatcher=self.dispatcher, telemetry=self.telemetry, review=self.review,
                              accounts=self.accounts,
                              health={"version": __version__, "started_at": self.clock.now().isoformat()})
        self._sandbox: Any = None
        self._web: uvicorn.Server | None = None  # the server run_once starts, if any
        self._web_task: asyncio.Task[None] | None = None
        self._alert_http = httpx.AsyncClient(timeout=httpx.Timeout(10.0),
                                             headers={"User-Agent": f"publisher/{__version__}"})
        self._source_http = httpx.AsyncClient(timeout=httpx.Timeout(20.0),
                                              headers={"User-Agent": f"publisher/{__version__}"})
        self.sources = SourcePoller(config=config, store=self.store, review=self.review, clock=self.clock,
                                    http=self._source_http, on_approved=self.dispatcher.wake)
        # the screen's link check: its own client, so a slow site never waits behind an alert or a channel
        self._link_http = httpx.AsyncClient(timeout=httpx.Timeout(config.screen.links.timeout.total_seconds()),
                                            headers={"User-Agent": f"publisher/{__version__} (link check)"})
        self.links = LinkChecker(store=self.store, config=config.screen.links, clock=self.clock, http=self._link_http)

    def start_sandbox(self) -> None:
        if self.config.sandbox.enabled and self._sandbox is None:
            from publisher.sandbox import SandboxProcess

            host, _, port = self.config.sandbox.listen.rpartition(":")
            smtp_port = int(self.config.sandbox.smtp.rpartition(":")[2])
            self._sandbox = SandboxProcess(host, int(port), smtp_port=smtp_port).start()
            log.info("sandbox.started", url=self._sandbox.base_url)

    def _web_server(self) -> tuple[uvicorn.Server, socket.socket] | None:
        """The web server on its configured port, or None when the port is taken (say, by a running daemon)."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.config.web.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.config.web.host, self.config.web.port))
        except OSError as exc:
            sock.close()
            log.warning("web.port_taken", listen=self.config.web.listen, error=str(exc))
            return None
        server = uvicorn.Server(uvicorn.Config(create_app(self.web), log_level="warning", access_log=False,
                                               lifespan="off"))
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]  # the daemon handles SIGTERM
        return server, sock

    async def run_once(self) -> dict[str, int]:
        """Poll the district sources once, take every file in the inbox, send and verify everything due, then return.

        The web server runs meanwhile when its port is free, so that feed readers (the provincial
        collector after a WebSub ping) can fetch what this run wrote."""
        self.start_sandbox()
        await self._analyze()
        web = self._web_server() if self._web_task is None else None
        if web is not None:
            self._web_task = asyncio.create_task(web[0].serve(sockets=[web[1]]), name="web")
            self._web = web[0]
        await self.sources.poll_all()
        while True:
            handled = await self.intake.scan()
            await self.dispatcher.run_once()
            if not handled:
                return dict(self.intake.counts)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests)
                pass
        self.start_sandbox()
        web = self._web_server()
        if web is None:
            raise PublisherError(f"web.listen {self.config.web.listen} is taken: is another daemon running?")
        server, sock = web
        # the lag report is built in a process of its own while the daemon runs (publisher/app/reports.py)
        reports = self.web.reports = Reports(ReportProcess(self.config), self.clock, max_age=REPORT_MAX_AGE,
                                             refresh=REPORT_REFRESH)
        gc.freeze()  # what start-up made lives as long as the daemon: keep it out of every later GC pass
        log.info("daemon.started", version=__version__, web=self.config.web.base_url,
                 inbox=str(self.intake.inbox), channels=list(self.channels))
        intake = ([asyncio.create_task(self._intake_process.run(stop), name="intake")] if self._intake_process else
                  [asyncio.create_task(self._watch(stop), name="watch")])
        tasks = [
            asyncio.create_task(server.serve(sockets=[sock]), name="web"),
            *intake,
            asyncio.create_task(self._rescan(stop), name="rescan"),
            asyncio.create_task(self.dispatcher.run(stop), name="dispatch"),
            asyncio.create_task(self._follow_store(stop), name="store-changes"),
            asyncio.create_task(Alerter(store=self.store, config=self.config, clock=self.clock, http=self._alert_http,
                                        build=lambda now: reports.report(now, limit=None)).run(stop), name="alerts"),
            asyncio.create_task(reports.keep_fresh(stop), name="report"),
            asyncio.create_task(self.sources.run(stop), name="sources"),
            asyncio.create_task(LiveCheck(store=self.store, channels=self.channels, clock=self.clock).run(stop),
                                name="livecheck"),
        ]
        notifier = ReviewNotifier(store=self.store, config=self.config, clock=self.clock, review=self.review,
                                  accounts=self.accounts, http=self._alert_http)
        if notifier.enabled:
            tasks.append(asyncio.create_task(notifier.run(stop), name="review-notify"))
        if self.config.screen.links.check:
            tasks.append(asyncio.create_task(self.links.run(stop), name="links"))
        lasting = list(tasks)  # the parts that run as long as the daemon (not the one-off analyze below)
        self.web.checks.append(lambda: self.stopped_parts(lasting, stop))
        tasks.append(asyncio.create_task(self._analyze(), name="analyze"))  # in the background: slow on a deep store
        if self._intake_process is None:
            await self.intake.scan()
        self.dispatcher.wake()
        await stop.wait()
        log.info("daemon.stopping")
        await reports.aclose()  # a report being built is abandoned, not waited for
        server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.aclose()
        log.info("daemon.stopped")

    def stopped_parts(self, tasks: list[asyncio.Task[Any]], stop: asyncio.Event) -> list[str]:
        """The daemon's parts that ended while it runs (/healthz): each is work that no longer happens."""
        if stop.is_set():
            return []
        ended = {t.get_name() for t in tasks if t.done()} - ({"watch"} if not self.config.queue.watch else set())
        problems = [STOPPED.get(name, f"the daemon's {name} task has stopped") for name in sorted(ended)]
        if self._intake_process is not None and self._intake_process.started and not self._intake_process.alive:
            problems.append(INTAKE_DOWN)
        problems += [f"the dispatch worker of {name} ({self.config.channels[name].display(name)}) has stopped: "
                     "its deliveries wait until the daemon is restarted"
                     for name, task in self.dispatcher.workers.items() if task.done()]
        return problems

    async def _watch(self, stop: asyncio.Event) -> None:
        if self.config.queue.watch:  # inotify: a file is read once its writer has closed it (publisher/intake/watch.py)
            await watch_inbox(self.intake.inbox, self.intake.writes, self.intake.scan, stop)

    async def _rescan(self, stop: asyncio.Event) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        scheduler = AsyncIOScheduler()

        async def job() -> None:
            try:
                await self.intake.scan()
            except Exception:
                log.exception("intake.scan_failed")

        if self._intake_process is None:  # else the intake process rescans the inbox itself
            scheduler.add_job(job, "interval", seconds=self.config.queue.rescan.total_seconds(),
                              max_instances=1, coalesce=True, id="rescan")
        scheduler.add_job(self._analyze, "interval", seconds=ANALYZE_EVERY, max_instances=1, coalesce=True,
                          id="analyze")
        scheduler.start()
        try:
            await stop.wait()
        finally:
            scheduler.shutdown(wait=False)

    async def _follow_store(self, stop: asyncio.Event) -> None:
        """Approvals and retries made by other processes (`publisher approve`, a second node) reach the
        dispatcher within ~0.1 s instead of at its next poll."""
        feed = ChangeFeed(self.store)
        try:
            while not stop.is_set():
                try:
                    if await asyncio.to_thread(feed.wait, 1.0):
                        self.dispatcher.wake_due()
                        # SQLite's data_version moves with this daemon's own commits too: while it sends, a change is
                        # always there; look again after the feed's poll, not at once (that was a busy loop)
                        await asyncio.sleep(feed.poll)
                except Exception:  # the store went away for a moment: the workers' own polling goes on
                    log.exception("store.follow_failed")
                    await asyncio.sleep(1)
        finally:
            feed.close()

    async def _analyze(self) -> None:
        """The store's planner statistics (see Store.analyze), at start and then every few hours."""
        started = self.clock.now()
        try:
            await asyncio.to_thread(self.store.analyze)
        except Exception:
            log.exception("store.analyze_failed")
        else:
            log.info("store.analyzed", ms=round((self.clock.now() - started).total_seconds() * 1000, 1))

    async def aclose(self) -> None:
        await self.web.reports.aclose()
        await self._alert_http.aclose()
        await self._source_http.aclose()
        await self._link_http.aclose()
        if self._web is not None and self._web_task is not None:
            self._web.should_exit = True
            await asyncio.gather(self._web_task, return_exceptions=True)
            self._web = self._web_task = None
        for ch in self.channels.values():
            await ch.aclose()
            await ch.http.aclose()
        if self._sandbox is not None:
            self._sandbox.stop()
            self._sandbox = None
