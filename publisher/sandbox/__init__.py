"""Loopback stand-ins of the real channel protocols, for the first run and for the tests.

One port serves them all, each under its own prefix (see `SERVICES`). `/_sandbox/...` lets a test
or a user look at what each stand-in received and turn its fault knobs:

    GET  /_sandbox/                      every service with its knobs
    GET  /_sandbox/<service>/received    what the service holds (posts, statuses, articles ...)
    GET  /_sandbox/<service>/requests    the request log, secrets redacted
    PUT  /_sandbox/<service>/faults      JSON of Faults fields, e.g. {"burst_429": 3, "retry_after": "2"}
    PUT  /_sandbox/<service>/settings    the stand-in's own settings, e.g. weibo {"posts_per_hour": 1000},
                                         wechat {"publish_outcome": 4, "quota_exhausted": true}
    POST /_sandbox/reset                 forget everything, clear every knob

The press relay speaks SMTP on a port of its own (`smtp_port`; config.yaml `sandbox.smtp`), and shows
what it accepted at `/_sandbox/press/received` like the others.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from publisher.sandbox.core import CREDENTIALS, Faults, Recorded, Service, StandIn

# prefix → "module:class", a StandIn made with (service, public_base_url).
SERVICES: dict[str, str] = {
    "wordpress": "publisher.sandbox.wordpress:Site",
    "portal": "publisher.sandbox.portal:Portal",
    "hub": "publisher.sandbox.hub:Hub",
    "weibo": "publisher.sandbox.weibo:Weibo",
    "mastodon": "publisher.sandbox.mastodon:Mastodon",
    "wechat": "publisher.sandbox.wechat:Wechat",
    "districts": "publisher.sandbox.districts:Districts",  # district bureaus' own feeds (district sources)
    "press": "publisher.sandbox.press:Press",  # the press desk's mail relay: SMTP on a port of its own
}


def build_app(public_base_url: str, services: list[str] | None = None) -> tuple[Starlette, dict[str, Service]]:
    """All stand-ins on one Starlette app; `public_base_url` is how clients reach it (for links)."""
    state: dict[str, Service] = {}
    mounts: list[BaseRoute] = []
    for name in services or list(SERVICES):
        module, _, attr = SERVICES[name].partition(":")
        try:
            kind: type[StandIn] = getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue  # a stand-in not written yet
            raise
        service = Service(name)
        stand_in = kind(service, f"{public_base_url.rstrip('/')}/{name}")
        state[name] = service
        mounts.append(Mount(f"/{name}", app=Recorded(stand_in.asgi(), service, stand_in.render_fault)))
    return Starlette(routes=[*Control(state).routes(), *mounts]), state


_NO_SUCH_SERVICE = {"error": "no such service"}


class Control:
    """The `/_sandbox/...` endpoints: what each stand-in holds and received, and its knobs."""

    def __init__(self, services: dict[str, Service]) -> None:
        self.services = services

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/_sandbox/", self.index),
            Route("/_sandbox/reset", self.reset, methods=["POST"]),
            Route("/_sandbox/{service}/received", self.received),
            Route("/_sandbox/{service}/requests", self.requests),
            Route("/_sandbox/{service}/faults", self.faults, methods=["PUT", "POST"]),
            Route("/_sandbox/{service}/settings", self.settings, methods=["PUT", "POST"]),
        ]

    def lookup(self, request: Request) -> Service | None:
        return self.services.get(request.path_params["service"])

    async def index(self, request: Request) -> Response:
        return JSONResponse({name: s.snapshot() for name, s in self.services.items()})

    async def received(self, request: Request) -> Response:
        service = self.lookup(request)
        if service is None:
            return JSONResponse(_NO_SUCH_SERVICE, status_code=404)
        return JSONResponse(service.received())

    async def requests(self, request: Request) -> Response:
        service = self.lookup(request)
        if service is None:
            return JSONResponse(_NO_SUCH_SERVICE, status_code=404)
        return JSONResponse(service.requests)

    async def faults(self, request: Request) -> Response:
        service = self.lookup(request)
        if service is None:
            return JSONResponse(_NO_SUCH_SERVICE, status_code=404)
        try:
            service.faults.update(await request.json())
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(service.snapshot())

    async def settings(self, request: Request) -> Response:
        service = self.lookup(request)
        if service is None:
            return JSONResponse(_NO_SUCH_SERVICE, status_code=404)
        current = service.store.get("settings")
        if not isinstance(current, dict):
            return JSONResponse({"error": f"{service.name} has no settings"}, status_code=404)
        changes = await request.json()
        unknown = set(changes) - set(current)
        if unknown:
            return JSONResponse({"error": f"unknown settings: {sorted(unknown)}"}, status_code=400)
        current.update(changes)
        return JSONResponse(current)

    async def reset(self, request: Request) -> Response:
        for service in self.services.values():
            service.reset()
        return JSONResponse({"reset": list(self.services)})


class _Address:
    """Where the stand-ins answer: one loopback address, each service under its own prefix."""

    host: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, service: str) -> str:
        return f"{self.base_url}/{service}"


class SandboxServer(_Address):
    """The stand-ins on a loopback port in a background thread (port 0 picks a free one).

    Used by tests and by the daemon when config.yaml says `sandbox: {enabled: true}`:

        with SandboxServer() as sb:
            sb.url("wordpress")   # http://127.0.0.1:PORT/wordpress
            sb.services["weibo"].faults.burst_429 = 2
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, services: list[str] | None = None,
                 smtp_port: int = 0) -> None:
        self.host = host
        self.port = port
        self.smtp_port = smtp_port
        self._services = services
        self.services: dict[str, Service] = {}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SandboxServer:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        app, self.services = build_app(self.base_url, self._services)
        smtp = _smtp_socket(self.host, self.smtp_port) if "press" in self.services else None
        self.smtp_port = smtp.getsockname()[1] if smtp is not None else 0
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = server = uvicorn.Server(config)
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            if smtp is not None:
                loop.run_until_complete(_serve_smtp(self.services["press"], smtp))
            task = loop.create_task(server.serve(sockets=[sock]))
            loop.call_soon(ready.set)
            loop.run_until_complete(task)
            loop.close()

        self._thread = threading.Thread(target=run, name="sandbox", daemon=True)
        self._thread.start()
        ready.wait(5)
        while not server.started:
            threading.Event().wait(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            # black-holed requests must not hold the exit; their cancellation is expected, not an error
            logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run(host: str, port: int, *, parent: int | None = None, log_level: str = "info", smtp_port: int | None = None) -> None:
    """`publisher sandbox`: serve the stand-ins in the foreground until interrupted (or, with
    `parent`, until that process is gone: a daemon killed with SIGKILL leaves no sandbox behind);
    the press relay on `smtp_port` when one is given."""
    app, services = build_app(f"http://{host}:{port}")
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False))

    async def serve() -> None:
        if smtp_port is not None and "press" in services:
            await _serve_smtp(services["press"], _smtp_socket(host, smtp_port))
        async def orphaned() -> None:
            while os.getppid() == parent:  # noqa: ASYNC110  # polling is the only way to see a parent die
                await asyncio.sleep(0.5)
            server.should_exit = True

        watch = asyncio.create_task(orphaned()) if parent is not None else None
        await server.serve()
        if watch is not None:
            watch.cancel()

    asyncio.run(serve())


class SandboxProcess(_Address):
    """The stand-ins in a child process, on their own interpreter (and core), as remote services are.

    The daemon uses it when config.yaml says `sandbox: {enabled: true}`; the end-to-end tests use it
    so that the peers outlive a daemon killed with SIGKILL. When something already answers on the
    port as a sandbox (`publisher sandbox` started by hand), that one is used and kept.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, smtp_port: int = 0) -> None:
        self.host = host
        self.port = port or _free_port(host)
        self.smtp_port = smtp_port or _free_port(host)
        self.proc: subprocess.Popen[bytes] | None = None

    def _answers(self) -> bool:
        try:
            return httpx.get(self.base_url + "/_sandbox/", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, timeout: float = 30) -> SandboxProcess:
        if self._answers():
            return self
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "publisher.sandbox", self.host, str(self.port), "--parent", str(os.getpid()),
             "--smtp-port", str(self.smtp_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._answers():
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the sandbox did not start on {self.host}:{self.port} (is the port taken?)")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _smtp_socket(host: str, port: int) -> socket.socket:
    from publisher.sandbox.press import bind

    return bind(host, port)


async def _serve_smtp(service: Service, sock: socket.socket) -> None:
    from publisher.sandbox.press import serve_smtp

    await serve_smtp(service, sock)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


__all__ = ["CREDENTIALS", "SERVICES", "Faults", "SandboxProcess", "SandboxServer", "Service", "build_app", "run"]
