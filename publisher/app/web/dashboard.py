"""The dashboard: one server-rendered page, `/api/lag` (JSON), `/metrics` (Prometheus, drawn by
publisher/app/web/metrics.py) and the retry action.

Mounted by publisher/app/web/app.py (`routes(ctx, auth)`). No JavaScript and no build step: the page is jinja2,
the lag plot inline SVG, the retry button a form. Store reads run in a worker thread so that the
daemon's event loop (which also dispatches) never waits on a query. Off loopback every route here
needs a signed-in session (publisher/app/web/auth.py: an account or `web.token`) or `Authorization: Bearer`
with the token; the retry form carries a CSRF token everywhere (publisher/app/web/security.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import structlog
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from publisher import i18n
from publisher.app.reports import DEFAULT_LIMIT
from publisher.app.web import reports_page
from publisher.app.web.metrics import LagMetrics
from publisher.app.web.security import remote
from publisher.clock import CHINA
from publisher.dispatch import outbox
from publisher.lag import report as lag
from publisher.lag.json_form import to_json
from publisher.states import ON_THEIR_WAY, DeliveryState
from publisher.units import parse_instant

if TYPE_CHECKING:
    from publisher.app.web.auth import Auth
    from publisher.app.web.context import WebContext

log = structlog.get_logger()
ENV = Environment(loader=PackageLoader("publisher.app.web", "templates"), autoescape=select_autoescape(["html"]))
CONFIG_HEADER = "X-Publisher-Config"  # the digest of the config the daemon runs on (publisher lag compares)
# The channel table's "pending" column: rows on their way that need nobody yet (waiting for a link, queued,
# sending, sent and not yet seen live); retrying, failed and manual have columns of their own.
PAGE_LATE = 50  # late rows per channel on the page (the JSON has more)
RETRYABLE = frozenset({DeliveryState.FAILED, DeliveryState.RETRYING})  # late rows shown with a retry button
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def routes(ctx: WebContext, auth: Auth) -> list[BaseRoute]:
    metrics = LagMetrics(ctx)
    web = ctx.config.web

    async def allowed(request: Request) -> bool:
        if web.is_loopback or auth.bearer_ok(request):
            return True
        return await auth.current(request) is not None

    def locale(request: Request) -> str:
        return auth.locale(request)

    def refused(request: Request, api: bool) -> Response:
        loc = locale(request)
        if not auth.secret and ctx.accounts is None:
            return Response(i18n.t("no_token", loc), status_code=403, media_type="text/plain; charset=utf-8")
        if api:
            return JSONResponse({"error": "unauthorized: send Authorization: Bearer <web.token>"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        return auth.to_login(request)

    async def page(request: Request) -> Response:
        if not await allowed(request):
            return refused(request, api=False)
        loc = locale(request)
        span = request.query_params.get("range", "24h")
        span = span if span in lag.SPANS else "24h"
        report, age = await ctx.reports.current(PAGE_LATE)
        hist = await ctx.reports.history(report.generated_at, span)
        _ = i18n.Translator(loc)
        html = ENV.get_template("dashboard.html").render(
            _=_, r=report, config=ctx.config, locale=loc, span=span, spans=list(lag.SPANS),
            local=lambda at: at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M") if at else _("never"),
            plot=plot_svg(hist, report, _),
            warnings=[f for f in report.freshness if f.status in ("warning", "breached")],
            retried=request.query_params.get("retried"), other=("en" if loc == "zh-CN" else "zh-CN"),
            states=DeliveryState, retryable=RETRYABLE,
            on_their_way=lambda ch: sum(ch.counts.get(state, 0) for state in ON_THEIR_WAY), age=round(age),
            csrf=auth.security.csrf.token(request), user=await auth.current(request),
        )
        response = auth.security.csrf.remember(request, HTMLResponse(html, headers={"Age": str(round(age))}))
        if "lang" in request.query_params:
            response.set_cookie("lang", loc, max_age=365 * 86400, samesite="strict")
        return response

    async def api(request: Request) -> Response:
        if not await allowed(request):
            return refused(request, api=True)
        channel = request.query_params.get("channel")
        if channel is not None and channel not in ctx.config.channels:
            return JSONResponse({"error": f"no channel {channel!r}", "channels": list(ctx.config.channels)},
                                status_code=404)
        now = ctx.clock.now()
        try:  # the same words as `publisher lag --at/--since` when it reads the store itself
            if "at" in request.query_params:
                now = parse_instant(request.query_params["at"], now)
            since = parse_instant(request.query_params["since"], now) if "since" in request.query_params else None
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        limit = request.query_params.get("limit", "")
        late_limit = int(limit) if limit.isdigit() else DEFAULT_LIMIT
        headers = {"Cache-Control": "no-store", CONFIG_HEADER: ctx.config.digest}
        if {"at", "since", "channel"}.isdisjoint(request.query_params) and late_limit <= DEFAULT_LIMIT:
            body, age = await ctx.reports.current_encoded(  # the copy the daemon keeps fresh, and its JSON
                "api", late_limit, lambda report: bytes(JSONResponse(to_json(report, source="daemon", limit=late_limit)).body))
            return Response(body, media_type="application/json", headers={**headers, "Age": str(round(age))})
        report = await ctx.reports.report(now, channel=channel, since=since, limit=late_limit)
        return JSONResponse(to_json(report, source="daemon", limit=late_limit), headers={**headers, "Age": "0"})

    async def metrics_route(request: Request) -> Response:
        if not await allowed(request):
            return refused(request, api=True)
        report, _age = await ctx.reports.current()
        body = await run_in_threadpool(metrics.render, report)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def retry(request: Request) -> Response:
        if not await allowed(request):
            return refused(request, api=False)
        form = await auth.security.csrf.form(request)
        item_id = str(form.get("item_id", ""))
        channel = str(form.get("channel", "")) or None
        if not item_id or (channel is not None and channel not in ctx.config.channels):
            return Response("item_id and a known channel are required", status_code=400)
        who = await auth.current(request)
        by = f"{who.name if who else 'dashboard'}@{remote(request)}"
        n = await run_in_threadpool(outbox.requeue, ctx.store, ctx.config, ctx.clock.now(), item_id, channel, by=by)
        if ctx.dispatcher is not None:
            ctx.dispatcher.wake(channel)  # in the event loop's thread: asyncio events are not thread-safe
        log.info("dashboard.retry", item_id=item_id, channel=channel, requeued=n, by=by)
        return RedirectResponse(f"/?retried={n}", status_code=303)

    async def reports(request: Request) -> Response:
        """The annual disclosure statistics (publisher/app/web/reports_page.py), or a download of them."""
        if not await allowed(request):
            return refused(request, api=False)
        loc = locale(request)
        raw = request.query_params.get("year", "")
        year = int(raw) if raw.isdigit() and 1990 <= int(raw) <= 2200 else None
        form = request.query_params.get("format")
        if form is not None:
            if form not in reports_page.DOWNLOADS or year is None:
                return Response(f"format is one of {', '.join(reports_page.DOWNLOADS)}, with year=YYYY",
                                status_code=400, media_type="text/plain; charset=utf-8")
            got = await run_in_threadpool(reports_page.download, ctx, loc, year, form)
            return Response(got.body, media_type=got.media_type,
                            headers={"Content-Disposition": f'attachment; filename="{got.filename}"'})
        html = await run_in_threadpool(reports_page.page, ctx, loc, year, request.query_params.get("from"),
                                       request.query_params.get("to"))
        response = HTMLResponse(html)
        if "lang" in request.query_params:
            response.set_cookie("lang", loc, max_age=365 * 86400, samesite="strict")
        return response

    return [
        Route("/", page),
        Route("/api/lag", api),
        Route("/metrics", metrics_route),
        Route("/reports", reports),
        Route("/retry", retry, methods=["POST"]),
    ]


# --- the lag-over-time plot (inline SVG) ------------------------------------------------------------

W, H, LEFT, RIGHT, TOP, BOTTOM = 900, 280, 64, 16, 12, 34
TICKS = ((1, "1s"), (10, "10s"), (60, "1m"), (600, "10m"), (3600, "1h"), (6 * 3600, "6h"), (86400, "1d"),
         (7 * 86400, "7d"), (30 * 86400, "30d"))


def plot_svg(hist: dict[str, list[lag.Bucket]], report: lag.LagReport, _: i18n.Translator) -> Markup:
    """Per channel the p95 lag of each interval on a log scale, the SLA dashed in the same colour."""
    channels = {ch.name: ch for ch in report.channels}
    values = [b.p95 for buckets in hist.values() for b in buckets if b.p95] + [ch.sla.total_seconds()
                                                                              for ch in report.channels]
    lo = max(0.5, min([10.0, *(v for v in values if v > 0)]) / 1.5)
    hi = max([3600.0, *values]) * 1.5
    n = max((len(b) for b in hist.values()), default=1)

    def x(i: float) -> float:
        return LEFT + (W - LEFT - RIGHT) * (i + 0.5) / n

    def y(v: float) -> float:
        from math import log10

        v = min(max(v, lo), hi)
        return TOP + (H - TOP - BOTTOM) * (1 - (log10(v) - log10(lo)) / (log10(hi) - log10(lo)))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" class="plot" '
           f'aria-label="{escape(_("history"))}"><title>{escape(_("history"))}</title>',
           f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" fill="#fafafa" '
           f'stroke="#ccc"/>']
    for secs, label in TICKS:
        if lo <= secs <= hi:
            out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(secs):.1f}" y2="{y(secs):.1f}" stroke="#e4e4e4"/>'
                       f'<text x="{LEFT - 6}" y="{y(secs) + 4:.1f}" text-anchor="end" font-size="11">{label}</text>')
    first = next(iter(hist.values()), [])
    for i in range(0, len(first), max(1, len(first) // 6)):
        stamp = first[i].start.astimezone(CHINA).strftime("%m-%d %H:%M")
        out.append(f'<text x="{x(i):.1f}" y="{H - 12}" text-anchor="middle" font-size="11">{stamp}</text>')
    for k, (name, buckets) in enumerate(hist.items()):
        colour = COLOURS[k % len(COLOURS)]
        sla = channels[name].sla.total_seconds() if name in channels else None
        if sla:
            out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(sla):.1f}" y2="{y(sla):.1f}" stroke="{colour}" '
                       f'stroke-dasharray="6 4" stroke-width="1"/>')
        run: list[str] = []
        for i, b in enumerate([*buckets, None]):
            if b is not None and b.p95 is not None:
                run.append(f"{x(i):.1f},{y(b.p95):.1f}")
                out.append(f'<circle cx="{x(i):.1f}" cy="{y(b.p95):.1f}" r="2.5" fill="{colour}">'
                           f'<title>{escape(channels[name].display if name in channels else name)} '
                           f'{escape(_.d(timedelta(seconds=b.p95)))} ({b.count})</title></circle>')
            elif run:
                out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(run)}"/>')
                run = []
    out.append("</svg>")
    legend = "".join(
        f'<span class="key"><span class="swatch" style="background:{COLOURS[k % len(COLOURS)]}"></span>'
        f'{escape(channels[name].display if name in channels else name)}</span>' for k, name in enumerate(hist))
    return Markup("".join(out) + f'<div class="legend">{legend}</div>')  # noqa: S704 (every value escaped above)
