"""The daemon's web server: /healthz, the served feeds, and the dashboard with its APIs."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

if TYPE_CHECKING:
    from channels.base import Channel
    from publisher.clock import Clock
    from publisher.config import Config
    from publisher.dispatch import Dispatcher
    from publisher.store import Store


@dataclass
class WebContext:
    """What the web handlers may use; made once by the daemon and shared."""

    config: Config
    store: Store
    clock: Clock
    channels: dict[str, Channel] = field(default_factory=dict)
    dispatcher: Dispatcher | None = None
    health: dict[str, Any] = field(default_factory=dict)  # filled by the daemon: started_at, intake state ...


def create_app(ctx: WebContext) -> Starlette:
    async def healthz(request: Request) -> Response:
        try:
            with ctx.store.read() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception as exc:  # any store failure means unhealthy; say which
            return JSONResponse({"status": "error", "store": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok", **{k: str(v) for k, v in ctx.health.items()}})

    async def feed(request: Request) -> Response:
        from channels.atom_feed import feed_response

        name = request.path_params["name"]
        channel = ctx.channels.get(name)
        path = getattr(getattr(channel, "options", None), "path", None)
        if channel is None or path is None:
            return PlainTextResponse("no such feed", status_code=404)
        return feed_response(ctx.config.path(path), request)

    routes: list[BaseRoute] = [
        Route("/healthz", healthz),
        Route("/feeds/{name}.xml", feed, methods=["GET", "HEAD"]),
    ]
    try:
        dashboard = importlib.import_module("publisher.dashboard")
    except ModuleNotFoundError as exc:  # the dashboard is optional until its module exists
        if exc.name != "publisher.dashboard":
            raise
    else:
        routes += dashboard.routes(ctx)
    app = Starlette(routes=routes)
    app.state.ctx = ctx
    return app
