"""Loopback stand-ins of the real channel protocols, for the first run and for the tests.

One port serves them all, each under its own prefix (see `SERVICES`). `/_sandbox/...` lets a test
or a user look at what each stand-in received and turn its fault knobs:

    GET  /_sandbox/                      every service with its knobs
    GET  /_sandbox/<service>/received    what the service holds (posts, statuses, articles ...)
    GET  /_sandbox/<service>/requests    the request log, secrets redacted
    PUT  /_sandbox/<service>/faults      JSON of Faults fields, e.g. {"burst_429": 3, "retry_after": "2"}
    PUT  /_sandbox/<service>/settings    the stand-in's own settings, e.g. weibo {"posts_per_hour": 1000}
    POST /_sandbox/reset                 forget everything, clear every knob
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
from collections.abc import Callable
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from publisher.sandbox.core import Faults, Recorded, Service

# prefix → "module:factory". A factory takes (service, public_base_url) and returns (asgi_app, fault_renderer).
SERVICES: dict[str, str] = {
    "wordpress": "publisher.sandbox.wordpress:make",
    "portal": "publisher.sandbox.portal:make",
    "hub": "publisher.sandbox.hub:make",
    "weibo": "publisher.sandbox.weibo:make",
    "mastodon": "publisher.sandbox.mastodon:make",
}

# Credentials the stand-ins accept by default; the shipped config.yaml uses the same values as the
# defaults of its ${ENV:-default} secrets, so a first run works with no environment set.
CREDENTIALS: dict[str, str] = {
    "wordpress_user": "publisher",
    "wordpress_app_password": "sand box0 sand box0 sand box0",
    "portal_token": "sandbox-portal-token",
    "portal_hmac_secret": "sandbox-portal-secret",
    "weibo_token": "sandbox-weibo-token",
    "mastodon_token": "sandbox-mastodon-token",
}


def build_app(public_base_url: str, services: list[str] | None = None) -> tuple[Starlette, dict[str, Service]]:
    """All stand-ins on one Starlette app; `public_base_url` is how clients reach it (for links)."""
    state: dict[str, Service] = {}
    routes: list[Any] = []
    for name in services or list(SERVICES):
        module, _, factory = SERVICES[name].partition(":")
        try:
            make: Callable[..., Any] = getattr(importlib.import_module(module), factory)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue  # a stand-in not written yet
            raise
        service = Service(name)
        app, render = make(service, f"{public_base_url.rstrip('/')}/{name}")
        state[name] = service
        routes.append(Mount(f"/{name}", app=Recorded(app, service, render)))

    def lookup(request: Request) -> Service:
        name = request.path_params["service"]
        if name not in state:
            raise KeyError(name)
        return state[name]

    async def index(request: Request) -> Response:
        return JSONResponse({name: s.snapshot() for name, s in state.items()})

    async def received(request: Request) -> Response:
        try:
            return JSONResponse(lookup(request).received())
        except KeyError:
            return JSONResponse({"error": "no such service"}, status_code=404)

    async def requests(request: Request) -> Response:
        try:
            return JSONResponse(lookup(request).requests)
        except KeyError:
            return JSONResponse({"error": "no such service"}, status_code=404)

    async def faults(request: Request) -> Response:
        try:
            service = lookup(request)
        except KeyError:
            return JSONResponse({"error": "no such service"}, status_code=404)
        try:
            service.faults.update(await request.json())
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(service.snapshot())

    async def settings(request: Request) -> Response:
        try:
            service = lookup(request)
        except KeyError:
            return JSONResponse({"error": "no such service"}, status_code=404)
        current = service.store.get("settings")
        if not isinstance(current, dict):
            return JSONResponse({"error": f"{service.name} has no settings"}, status_code=404)
        changes = await request.json()
        unknown = set(changes) - set(current)
        if unknown:
            return JSONResponse({"error": f"unknown settings: {sorted(unknown)}"}, status_code=400)
        current.update(changes)
        return JSONResponse(current)

    async def reset(request: Request) -> Response:
        for service in state.values():
            service.reset()
        return JSONResponse({"reset": list(state)})

    routes[:0] = [
        Route("/_sandbox/", index),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/{service}/received", received),
        Route("/_sandbox/{service}/requests", requests),
        Route("/_sandbox/{service}/faults", faults, methods=["PUT", "POST"]),
        Route("/_sandbox/{service}/settings", settings, methods=["PUT", "POST"]),
    ]
    return Starlette(routes=routes), state


class SandboxServer:
    """The stand-ins on a loopback port in a background thread (port 0 picks a free one).

    Used by tests and by the daemon when config.yaml says `sandbox: {enabled: true}`:

        with SandboxServer() as sb:
            sb.url("wordpress")   # http://127.0.0.1:PORT/wordpress
            sb.services["weibo"].faults.burst_429 = 2
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, services: list[str] | None = None) -> None:
        self.host = host
        self.port = port
        self._services = services
        self.services: dict[str, Service] = {}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, service: str) -> str:
        return f"{self.base_url}/{service}"

    def start(self) -> SandboxServer:
        import socket

        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        app, self.services = build_app(self.base_url, self._services)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            task = loop.create_task(self._server.serve(sockets=[sock]))  # type: ignore[union-attr]
            loop.call_soon(ready.set)
            loop.run_until_complete(task)
            loop.close()

        self._thread = threading.Thread(target=run, name="sandbox", daemon=True)
        self._thread.start()
        ready.wait(5)
        while not self._server.started:
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


def run(host: str, port: int, *, parent: int | None = None, log_level: str = "info") -> None:
    """`publisher sandbox`: serve the stand-ins in the foreground until interrupted (or, with
    `parent`, until that process is gone: a daemon killed with SIGKILL leaves no sandbox behind)."""
    app, _ = build_app(f"http://{host}:{port}")
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False))

    async def serve() -> None:
        async def orphaned() -> None:
            while os.getppid() == parent:  # noqa: ASYNC110  # polling is the only way to see a parent die
                await asyncio.sleep(0.5)
            server.should_exit = True

        watch = asyncio.create_task(orphaned()) if parent is not None else None
        await server.serve()
        if watch is not None:
            watch.cancel()

    asyncio.run(serve())


class SandboxProcess:
    """The stand-ins in a child process, on their own interpreter (and core), as remote services are.

    The daemon uses it when config.yaml says `sandbox: {enabled: true}`; the end-to-end tests use it
    so that the peers outlive a daemon killed with SIGKILL. When something already answers on the
    port as a sandbox (`publisher sandbox` started by hand), that one is used and kept.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or _free_port(host)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, service: str) -> str:
        return f"{self.base_url}/{service}"

    def _answers(self) -> bool:
        try:
            return httpx.get(self.base_url + "/_sandbox/", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, timeout: float = 30) -> SandboxProcess:
        if self._answers():
            return self
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "publisher.sandbox", self.host, str(self.port), "--parent", str(os.getpid())],
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


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


__all__ = ["CREDENTIALS", "SERVICES", "Faults", "SandboxProcess", "SandboxServer", "Service", "build_app", "run"]
