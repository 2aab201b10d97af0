"""`publisher lag`: which channel is behind, as a table for people or JSON for scripts.

Imports are kept light (rich only for the table) because admins and monitors call this often;
docs/BENCHMARKS.md times it over a store of one million deliveries.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click


def _instant(value: str, now: datetime) -> datetime:
    """`24h`, `7d` (that long ago), or an ISO date / date-time (UTC unless it says otherwise)."""
    from publisher.units import parse_duration

    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a duration like 24h or 7d nor a date like 2015-03-01") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _open_store(url: str):  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    from publisher.store import Store

    store = Store.open(url, migrate=False)
    with store.read() as conn:  # a fresh store gets its tables; an existing one is read as it is
        fresh = not sa.inspect(conn).has_table("deliveries")
    if fresh:
        store.migrate()
    return store


@click.command("lag")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=Path("config.yaml"),
              show_default=True, envvar="PUBLISHER_CONFIG", help="config.yaml to use")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON (schema: docs/LAG_JSON.md)")
@click.option("--channel", help="only this channel (its role name in config.yaml)")
@click.option("--since", help="statistics over deliveries due since then (24h, 7d, or a date); "
                              "late items due since then only. Default: the last lag.window")
@click.option("--at", "at", help="report as of this instant (ISO date-time), e.g. to re-read a past incident")
@click.option("--limit", type=click.IntRange(min=0), help="late items listed per channel [default: 100 with --json, "
                                                         "else 5]; the counts always cover all")
def lag_command(config_path: Path, as_json: bool, channel: str | None, since: str | None, at: str | None,
                limit: int | None) -> None:
    """Lag per channel: SLA, late items (oldest first), p50/p95/max, freshness and legal deadlines."""
    from publisher.config import ConfigError, load_config
    from publisher.lag import build_report, to_json

    try:
        config = load_config(config_path, adapters=False)  # the report talks to no channel
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if channel is not None and channel not in config.channels:
        raise click.BadParameter(f"{channel!r} is not a channel in {config_path}; "
                                 f"these are: {', '.join(config.channels)}", param_hint="--channel")
    now = _instant(at, datetime.now(UTC)) if at else datetime.now(UTC)
    start = _instant(since, now) if since else None
    if limit is None:
        limit = 100 if as_json else 5
    store = _open_store(config.store_url)
    try:
        report = build_report(store, config, now, channel=channel, since=start, late_limit=limit)
    finally:
        store.close()
    if as_json:
        sys.stdout.write(json.dumps(to_json(report), ensure_ascii=False, indent=2) + "\n")
    else:
        _print_table(report)


def _print_table(report) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table

    from publisher.i18n import Translator, t

    config = report.config
    _ = Translator(config.locale)
    console = Console(highlight=False)
    stamp = report.generated_at.astimezone().strftime("%Y-%m-%d %H:%M")
    since = report.since.astimezone().strftime("%Y-%m-%d %H:%M")
    table = Table(title=f"{_('title')} · {_('generated')} {stamp} · {_('window')} {since} –", title_justify="left")
    table.add_column(_("channel"), overflow="ellipsis", max_width=24)
    for key in ("sla", "status"):
        table.add_column(_(key), no_wrap=True)
    table.add_column("/".join(_(k) for k in ("pending", "retrying", "failed", "manual")), justify="right")
    for key in ("p50", "p95", "max", "last_live"):
        table.add_column(_(key), justify="right", no_wrap=True)
    for ch in report.channels:
        status = f"[bold red]{_('late')} {ch.late_total}[/]" if ch.status == "late" else f"[green]{_('on_time')}[/]"
        pending = sum(ch.counts.get(s, 0) for s in ("waiting", "pending", "sending", "sent"))
        counts = "/".join(str(n) for n in (pending, ch.counts.get("retrying", 0), ch.counts.get("failed", 0),
                                           ch.counts.get("manual", 0)))
        last = ch.last_live_at.astimezone().strftime("%m-%d %H:%M") if ch.last_live_at else _("never")
        table.add_row(ch.display, _.d(ch.sla), status, counts, _.d(ch.p50), _.d(ch.p95), _.d(ch.max), last)
    console.print(table)

    late = [d for ch in report.channels for d in ch.late]
    names = {ch.name: ch.display for ch in report.channels}
    if late:
        lt = Table(title=_("late_items"), title_justify="left")
        for key in ("channel", "item", "state", "lag", "attempts", "last_error"):
            lt.add_column(_(key), overflow="ellipsis", max_width=60 if key == "last_error" else 24)
        for d in sorted(late, key=lambda d: d.due_at):
            state = t(f"state_{d.state}", config.locale) + (f" ({_('retract')})" if d.retract else "")
            lt.add_row(names[d.channel], f"{d.item_id} r{d.revision}", state, _.d(d.lag), str(d.attempts),
                       (d.last_error or "").splitlines()[0][:200] if d.last_error else "")
        console.print(lt)
        hidden = sum(ch.late_total - len(ch.late) for ch in report.channels)
        if hidden:
            console.print(f"[dim]… +{hidden} (--limit N, --json)[/]")
    else:
        console.print(f"[green]{_('no_late')}[/]")

    warnings = [f for f in report.freshness if f.status in ("warning", "breached")]
    if warnings:
        ft = Table(title=_("freshness"), title_justify="left")
        for key in ("channel", "category", "status", "age", "threshold"):
            ft.add_column(_(key))
        for f in warnings:
            colour = "red" if f.status == "breached" else "yellow"
            ft.add_row(names.get(f.channel, f.channel),
                       config.category_name(f.category) if f.category else _("whole_channel"),
                       f"[{colour}]{_('fresh_' + f.status)}[/]", _.d(f.age), _.d(f.threshold))
        console.print(ft)
    if report.deadlines:
        dt = Table(title=_("deadlines"), title_justify="left")
        for key in ("item", "category", "doc_date", "deadline", "workdays_left", "status"):
            dt.add_column(_(key))
        for d in report.deadlines:
            colour = "red" if d.status == "overdue" else "yellow"
            dt.add_row(f"{d.item_id} r{d.revision}\n[dim]{d.title[:40]}[/]", config.category_name(d.category),
                       d.start.isoformat(), d.last_day.isoformat(),
                       str(d.working_days_left), f"[{colour}]{_(d.status)}[/]"
                       + ("" if d.calendar_known else f" {_('calendar_guess')}"))
        console.print(dt)


if __name__ == "__main__":
    lag_command()
