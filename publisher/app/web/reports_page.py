"""`/reports`: the annual disclosure statistics on the dashboard, with a bar chart per category and month
(inline SVG, readable without JavaScript) and the same report to download (`?format=xlsx|csv|md|json`).

The route is mounted by publisher/app/web/dashboard.py, under the dashboard's own access rules; this module
builds the page (in a worker thread: it reads the store) and the chart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from publisher import i18n
from publisher.stats import forms
from publisher.stats.annual import AnnualReport, annual_report, districts_report
from publisher.store.stats_reads import dated_years

if TYPE_CHECKING:
    from publisher.app.web.context import WebContext

_env = Environment(loader=PackageLoader("publisher.app.web", "templates"), autoescape=select_autoescape(["html"]))
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
DOWNLOADS = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
             "csv": "text/csv; charset=utf-8", "md": "text/markdown; charset=utf-8",
             "json": "application/json"}


@dataclass(frozen=True)
class Download:
    body: bytes
    media_type: str
    filename: str


def years(ctx: WebContext) -> tuple[list[int], int]:
    """The years the store holds documents of (with this year), and the one shown by default: the newest."""
    now = ctx.clock.now().year
    span = dated_years(ctx.store)
    first, last = span if span else (now, now)
    return list(range(max(first, last - 30), max(last, now) + 1)), last


def period(raw_from: str | None, raw_to: str | None, year: int) -> tuple[date, date]:
    """The districts' period from the page's form (`from`, `to`: ISO dates), else the whole year."""
    try:
        first = date.fromisoformat(raw_from) if raw_from else date(year, 1, 1)
        last = date.fromisoformat(raw_to) if raw_to else date(year, 12, 31)
    except ValueError:
        return date(year, 1, 1), date(year, 12, 31)
    return (first, last) if first <= last else (last, first)


def page(ctx: WebContext, locale: str, year: int | None, raw_from: str | None = None,
         raw_to: str | None = None) -> str:
    _ = i18n.Translator(locale)
    known, newest = years(ctx)
    year = year or newest
    report = annual_report(ctx.store, ctx.config, year)
    first, last = period(raw_from, raw_to, year)
    districts = districts_report(ctx.store, ctx.config, first, last)
    sections = forms.annual_sections(report, _)
    return _env.get_template("reports.html").render(
        _=_, locale=locale, year=year, years=known, r=report, chart=bars_svg(report, _),
        sections=sections, districts=forms.districts_sections(districts, _), formats=list(DOWNLOADS),
        other="en" if locale == "zh-CN" else "zh-CN", shown=lambda c: forms.shown(c, _), first=first, last=last)


def download(ctx: WebContext, locale: str, year: int, form: str) -> Download:
    _ = i18n.Translator(locale)
    report = annual_report(ctx.store, ctx.config, year)
    title, sections = _("rpt_annual", year=year), forms.annual_sections(report, _)
    if form == "xlsx":
        body = forms.xlsx_bytes(title, sections, _)
    elif form == "csv":
        body = forms.csv_text(title, sections).encode("utf-8-sig")  # Excel reads UTF-8 only after a BOM
    elif form == "md":
        body = forms.markdown(title, sections, _).encode()
    else:
        body = json.dumps(forms.annual_json(report), ensure_ascii=False, indent=2, default=str).encode()
    return Download(body, DOWNLOADS[form], f"disclosure-{year}.{form}")


W, H, LEFT, RIGHT, TOP, BOTTOM = 900, 300, 48, 16, 16, 30


def bars_svg(r: AnnualReport, _: i18n.Translator) -> Markup:
    """Items disclosed in each month, one bar a month, stacked by category in the legend's colours; each
    segment's tooltip and the table beside the chart give the numbers."""
    months = forms.month_names(_)
    names = {k: name for k, name, _n in r.categories}
    totals: list[int] = [sum(col) for col in zip(*r.months.values(), strict=True)] if r.months else [0] * 12
    top = max([*totals, 1])
    step = 10 ** max(0, len(str(top)) - 1)
    ceiling: int = -(-top // step) * step
    plot_h, slot = H - TOP - BOTTOM, (W - LEFT - RIGHT) / 12

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / ceiling)

    title = escape(_("rpt_chart"))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" class="plot" id="bars" '
           f'aria-label="{title}"><title>{title}</title>',
           f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>']
    for k in range(5):
        v = ceiling * k / 4
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e4e4e4"/>'
                   f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11">{v:g}</text>')
    for m in range(12):
        x, base = LEFT + slot * m + slot * 0.15, 0
        for k, (key, counts) in enumerate(r.months.items()):
            n = counts[m]
            if not n:
                continue
            out.append(f'<rect class="bar" data-category="{escape(key)}" data-month="{m + 1}" data-n="{n}" '
                       f'x="{x:.1f}" y="{y(base + n):.1f}" width="{slot * 0.7:.1f}" height="{y(base) - y(base + n):.1f}" '
                       f'fill="{COLOURS[k % len(COLOURS)]}"><title>{escape(names[key])} {escape(months[m])}: {n}'
                       f'</title></rect>')
            base += n
        if totals[m]:
            out.append(f'<text x="{x + slot * 0.35:.1f}" y="{y(totals[m]) - 4:.1f}" text-anchor="middle" '
                       f'font-size="11">{totals[m]}</text>')
        out.append(f'<text x="{x + slot * 0.35:.1f}" y="{H - 10}" text-anchor="middle" font-size="12">'
                   f'{escape(months[m])}</text>')
    out.append("</svg>")
    legend = "".join(f'<span class="key"><span class="swatch" style="background:{COLOURS[k % len(COLOURS)]}"></span>'
                     f'{escape(names[key])}</span>' for k, key in enumerate(r.months))
    return Markup("".join(out) + f'<div class="legend">{legend}</div>')  # noqa: S704 (every value escaped above)
