"""`publisher report`: the annual disclosure statistics and the districts' count, for the office.

A reader: it reads the store and talks to no channel, so it needs none of the channels' secrets
(`load_config(adapters=False)`, as `publisher lag` does). The figures and their rules are in
publisher/stats/; this module only chooses the format and where it goes.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from publisher.config.settings import Config
    from publisher.i18n import Translator
    from publisher.stats.forms import Section
    from publisher.store.db import Store

FORMATS = ("table", "md", "csv", "xlsx", "json")
CONFIG_OPTION = click.option("--config", "config_path", type=click.Path(path_type=Path), default=Path("config.yaml"),
                             show_default=True, envvar="PUBLISHER_CONFIG", help="config.yaml to use")
FORMAT_OPTION = click.option("--format", "form", type=click.Choice(FORMATS), default="table", show_default=True,
                             help="table for the terminal; md, csv, xlsx (Excel/WPS) or json for the office and scripts")
OUTPUT_OPTION = click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False),
                             help="write to this file instead of the terminal (required for xlsx)")
LANG_OPTION = click.option("--lang", type=click.Choice(["zh-CN", "en"]), help="language of the labels [default: config's locale]")


@click.group("report")
def report_group() -> None:
    """Disclosure statistics from the store: the annual report and the districts' count."""


def _open(config_path: Path) -> tuple[Config, Store]:
    import logging

    from publisher.config.settings import ConfigError, load_config
    from publisher.logs import configure_logging
    from publisher.store.db import Store

    configure_logging(json=False, level=logging.WARNING)
    try:
        config = load_config(config_path, adapters=False)  # a reader: no channel, so none of their secrets
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return config, Store.open(config.store_url, migrate="if-new")


def _emit(form: str, output: Path | None, title: str, sections: list[Section], doc: dict[str, object],
          _: Translator) -> None:
    from publisher.stats import forms

    if form == "xlsx":
        if output is None:
            raise click.UsageError("xlsx is a file: add --output FILE.xlsx")
        output.write_bytes(forms.xlsx_bytes(title, sections, _))
    else:
        if form == "json":
            text = json.dumps(doc, ensure_ascii=False, indent=2, default=str) + "\n"
        elif form == "md":
            text = forms.markdown(title, sections, _)
        elif form == "csv":
            text = forms.csv_text(title, sections)
        else:
            text = _table_text(title, sections, _, to_terminal=output is None)
        if output is None:
            sys.stdout.write(text)
            return
        # Excel opens a CSV as UTF-8 only when it starts with a byte order mark
        output.write_text(text, encoding="utf-8-sig" if form == "csv" else "utf-8", newline="")
    click.echo(f"{output}: {form}", err=True)


def _table_text(title: str, sections: list[Section], _: Translator, *, to_terminal: bool) -> str:
    from publisher.app.cli.table import Column, Table, terminal
    from publisher.stats.forms import shown

    room, color = terminal() if to_terminal else (240, False)
    out = [] if len(sections) == 1 and sections[0].title == title else [title, ""]
    for s in sections:
        table = Table(s.title, [Column(h, right=i > 0) for i, h in enumerate(s.headers)])
        for row in s.rows:
            table.add_row(*(shown(c, _) if c is not None else (shown(c, _), "yellow") for c in row))
        out.append(table.render(room, color))
        if s.note:
            out.append(s.note)
        out.append("")
    return "\n".join(out)


@report_group.command("annual")
@click.option("--year", type=click.IntRange(1990, 2200), required=True, help="the calendar year, e.g. 2015")
@FORMAT_OPTION
@OUTPUT_OPTION
@LANG_OPTION
@CONFIG_OPTION
def annual(year: int, form: str, output: Path | None, lang: str | None, config_path: Path) -> None:
    """Items disclosed in YEAR per category, month and channel; edits, retractions, blocked and rejected
    items; the legal-deadline record; and the national format's table 主动公开政府信息情况."""
    from publisher.i18n import Translator
    from publisher.stats import forms
    from publisher.stats.annual import annual_report

    config, store = _open(config_path)
    try:
        report = annual_report(store, config, year)
    finally:
        store.close()
    _ = Translator(lang or config.locale)
    _emit(form, output, _("rpt_annual", year=year), forms.annual_sections(report, _), forms.annual_json(report), _)


def _day(ctx: click.Context, param: click.Parameter, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2015-03-01") from None


@report_group.command("districts")
@click.option("--from", "first", required=True, callback=_day, help="first day, e.g. 2015-01-01")
@click.option("--to", "last", required=True, callback=_day, help="last day (included), e.g. 2015-02-28")
@FORMAT_OPTION
@OUTPUT_OPTION
@LANG_OPTION
@CONFIG_OPTION
def districts(first: date, last: date, form: str, output: Path | None, lang: str | None, config_path: Path) -> None:
    """Items per district bureau (an item's `source`, from its file or a district feed) dated in the period:
    received and disclosed, per category. For the bimonthly assessment."""
    from publisher.i18n import Translator
    from publisher.stats import forms
    from publisher.stats.annual import districts_report

    if last < first:
        raise click.BadParameter(f"the period ends ({last}) before it starts ({first})", param_hint="--to")
    config, store = _open(config_path)
    try:
        report = districts_report(store, config, first, last)
    finally:
        store.close()
    _ = Translator(lang or config.locale)
    title = _("rpt_districts", first=first.isoformat(), last=last.isoformat())
    _emit(form, output, title, forms.districts_sections(report, _), forms.districts_json(report), _)
