"""The daemon's web server: /healthz, the served feeds, and the dashboard with its APIs."""

from __future__ import annotations

import email.utils
import hashlib
import os
from pathlib import Path

import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from channels.http import parse_http_date
from publisher.app.web import dashboard
from publisher.app.web.auth import Auth
from publisher.app.web.context import WebContext
from publisher.app.web.desk import Desk
from publisher.app.web.security import Security

log = structlog.get_logger()


def create_app(ctx: WebContext) -> Starlette:
    async def healthz(request: Request) -> Response:
        problems = await run_in_threadpool(ctx.problems)
        if problems:
            return JSONResponse({"status": "error", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ok", **{k: str(v) for k, v in ctx.health.items()}})

    async def feed(request: Request) -> Response:
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
    security = Security.of(ctx.config.web, ctx.clock)
    auth = Auth(ctx, security, dashboard.ENV)
    routes += auth.routes()
    routes += dashboard.routes(ctx, auth)
    routes += Desk(ctx, auth, dashboard.ENV).routes()
    # a Host outside the allow-list (DNS rebinding: a page on evil.example aimed at 127.0.0.1) gets 400
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=ctx.config.web.hosts, www_redirect=False)]
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={UnicodeError: _unreadable, ValueError: _unreadable})
    app.state.ctx = ctx
    app.state.auth = auth
    return app


async def _unreadable(request: Request, exc: Exception) -> Response:
    """Input that cannot be read as text (a bad encoding, a malformed value) is the sender's error: 400, not 500."""
    log.warning("web.unreadable_request", path=request.url.path, error=str(exc)[:200])
    return PlainTextResponse(f"this request could not be read: {str(exc)[:200]}", status_code=400)


def feed_response(path: Path, request: Request) -> Response:
    """Serve a feed file with a strong ETag and Last-Modified, answering 304 when the reader is current."""
    try:
        with path.open("rb") as fh:
            stat = os.fstat(fh.fileno())  # of the very file we read, even if a rewrite renames a new one in
            data = fh.read()
    except FileNotFoundError:
        return PlainTextResponse("This feed has no entries yet: nothing has been published to it.", status_code=404)
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Last-Modified": email.utils.formatdate(stat.st_mtime, usegmt=True),
               "Cache-Control": "no-cache"}
    if _not_modified(request, etag, int(stat.st_mtime)):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="application/atom+xml; charset=utf-8", headers=headers)


def _not_modified(request: Request, etag: str, mtime: int) -> bool:
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:  # RFC 9110 §13.1.3: If-None-Match wins over If-Modified-Since
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or etag in tags
    when = parse_http_date(request.headers.get("if-modified-since"))
    return when is not None and mtime <= when.timestamp()
