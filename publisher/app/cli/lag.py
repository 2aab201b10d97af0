"""`publisher lag`: which channel is behind, as a table for people or JSON for scripts.

The running daemon is asked first (`/api/lag` at `web.listen`): it holds the store open and the
config validated, so the answer costs one query plus this process's start. Only when no daemon
answers for this very config file (its digest, see publisher/config/file.py) is the store read here,
which costs SQLAlchemy's and pydantic's imports on top. Both paths give the same JSON
(docs/LAG_JSON.md, with `source` saying which) and print it the same way. This module therefore
imports only click, PyYAML and the standard library before it knows which path it takes;
docs/BENCHMARKS.md times both over a store of one million deliveries.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from publisher.states import ON_THEIR_WAY, TAKEN_DOWN
from publisher.states import DeliveryState as S

ASK_TIMEOUT = 10.0  # seconds: a daemon that is up answers over a million rows in ~0.1 s


def _loopback(host: str) -> str:
    """Where to reach a server that listens on `host` from this machine."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104 (a lookup, not a bind)


def ask_daemon(config_path: Path, params: dict[str, str]) -> tuple[dict[str, Any] | None, str, str]:
    """(the report, or None; where it was asked; why not) from the daemon that runs on this config file."""
    from urllib.parse import urlencode

    from publisher.config.file import DEFAULT_LISTEN, ConfigError, read_config_file, substitute_env

    try:
        data, digest = read_config_file(config_path)
    except ConfigError:
        return None, "", "config"  # the store path reports the problem in full
    web = data.get("web") if isinstance(data, dict) else None
    web = substitute_env(web, "web", [], _environ()) if isinstance(web, dict) else {}
    listen = str(web.get("listen") or DEFAULT_LISTEN)
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        return None, listen, "config"
    headers = {"Accept": "application/json"}
    if web.get("token"):
        headers["Authorization"] = f"Bearer {str(web['token']).strip()}"
    try:
        status, got, body = http_get(_loopback(host.strip("[]")), int(port), "/api/lag?" + urlencode(params),
                                     headers, ASK_TIMEOUT)
    except UnicodeEncodeError:
        return None, listen, "config"  # a token HTTP cannot carry; the store path still answers
    except TimeoutError:
        return None, listen, "slow"
    except (OSError, ValueError):
        return None, listen, "down"
    if status != 200:
        return None, listen, f"http {status}"
    if got.get("x-publisher-config") != digest:
        return None, listen, "other_config"
    try:
        return json.loads(body), listen, ""
    except ValueError:
        return None, listen, "http 200"


def http_get(host: str, port: int, target: str, headers: dict[str, str],
             timeout: float) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of one HTTP/1.0 GET: the server sends one response
    and closes, so the body is whatever follows the head. Only for asking our own daemon on this machine:
    http.client's imports (email.parser, ssl) would cost a noticeable part of this command's start-up budget.
    Raises OSError (TimeoutError included) when nobody answers, ValueError when the answer is not HTTP."""
    import socket

    request = "\r\n".join([f"GET {target} HTTP/1.0", f"Host: [{host}]:{port}" if ":" in host else f"Host: {host}:{port}",
                            *(f"{k}: {v}" for k, v in headers.items()), "", ""])
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request.encode("latin-1"))  # what http.client sends too; a token outside it is not valid
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
    head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    if not sep or not version.startswith("HTTP/") or not rest[:3].isdigit():
        raise ValueError(f"not an HTTP response: {status_line[:80]!r}")
    fields = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    length = fields.get("content-length", "")
    if length.isdigit() and len(body) != int(length):
        raise ValueError(f"the response ended after {len(body)} of {length} bytes")
    return int(rest[:3]), fields, body


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def read_store(config_path: Path, channel: str | None, since: str | None, at: str | None,
               limit: int) -> dict[str, Any]:
    """The report read from the store by this process (no daemon answered)."""
    from publisher.config.settings import ConfigError, load_config
    from publisher.lag.json_form import to_json
    from publisher.lag.report import build_report
    from publisher.units import parse_instant  # nothing on this path logs: structlog is not even imported
    try:
        config = load_config(config_path, adapters=False)  # a reader: no channel, so none of their secrets
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if channel is not None and channel not in config.channels:
        raise click.BadParameter(f"{channel!r} is not a channel in {config_path}; "
                                 f"these are: {', '.join(config.channels)}", param_hint="--channel")
    now = datetime.now(UTC)
    for hint, value in (("--at", at), ("--since", since)):
        try:
            instant = parse_instant(value, now) if value else None
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=hint) from None
        now, start = (instant or now, None) if hint == "--at" else (now, instant)
    from publisher.store.db import Store

    store = Store.open(config.store_url, migrate="if-new")
    try:
        report = build_report(store, config, now, channel=channel, since=start, late_limit=limit)
    finally:
        store.close()
    return to_json(report, source="store", limit=limit)


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
@click.option("--store", "direct", is_flag=True, help="read the store directly, even when the daemon is running")
def lag_command(config_path: Path, as_json: bool, channel: str | None, since: str | None, at: str | None,
                limit: int | None, direct: bool) -> None:
    """Lag per channel: SLA, late items (oldest first), p50/p95/max, freshness and legal deadlines."""
    if limit is None:
        limit = 100 if as_json else 5
    params = {k: v for k, v in (("channel", channel), ("since", since), ("at", at)) if v is not None}
    doc, listen, why = (None, "", "asked_not") if direct else ask_daemon(config_path, {**params, "limit": str(limit)})
    if doc is None:
        doc = read_store(config_path, channel, since, at, limit)
    if as_json:
        sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
    else:
        print_table(doc, listen, why, rows=limit)


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _at(value: str | None) -> datetime | None:
    return None if value is None else _instant(value)


def _td(seconds: float | None) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=seconds)


def _kind(kind: str, locale: str) -> str:
    """A finding's kind in the report's language (a kind this version does not know: as stored)."""
    from publisher.i18n import t

    try:
        return t(f"finding_{kind}", locale)
    except KeyError:
        return kind


def print_table(doc: dict[str, Any], listen: str = "", why: str = "", rows: int = 5) -> None:
    """The JSON report (either source) as tables, in the config's locale; `rows` legal-deadline rows at most
    (the late items are limited where the report is made). Drawn by publisher/app/cli/table.py, not rich: see there."""
    from publisher.app.cli.table import Column, Table, paint, terminal
    from publisher.i18n import Translator, t

    locale = doc.get("locale", "zh-CN")
    _ = Translator(locale)
    room, color = terminal()
    out: list[str] = []

    def note(text: str, style: str) -> None:
        out.append(paint(text, style, color))

    now = _instant(doc["generated_at"]).astimezone()
    since = _instant(doc["window"]["since"]).astimezone().strftime("%Y-%m-%d %H:%M")

    def channels(stats: tuple[str, ...]) -> Table:
        table = Table(f"{_('title')} · {_('generated')} {now:%Y-%m-%d %H:%M} · {_('window')} {since} –", [
            Column(_("channel")), Column(_("sla")), Column(_("status")),
            Column("/".join(_(k) for k in (S.PENDING, S.RETRYING, S.FAILED, S.MANUAL)), right=True),
            *(Column(_(key), right=True) for key in stats), Column(_("last_live"), right=True)])
        for ch in doc["channels"]:
            counts, window = ch["counts"], ch["window"]
            status = ((f"{_('late')} {ch['late_total']}", "bold red") if ch["status"] == "late"
                      else (_("on_time"), "green"))
            pending = sum(counts.get(s, 0) for s in ON_THEIR_WAY)
            shown = "/".join(str(n) for n in (pending, *(counts.get(s, 0) for s in (S.RETRYING, S.FAILED, S.MANUAL))))
            last = _at(ch["last_live_at"])
            last = last.astimezone() if last else None
            table.add_row(ch["display_name"], _.d(_td(ch["sla_s"])), status, shown,
                          *(_.d(_td(window[f"{key}_s"])) for key in stats),
                          _("never") if last is None else f"{last:%H:%M}" if last.date() == now.date()
                          else f"{last:%m-%d %H:%M}")
        return table

    # An 80-column terminal at 3 a.m. must still show whole channel names, states and counts: those are
    # never cut; p50 and p95 are left out when they do not fit (--json has them all).
    table = channels(("p50", "p95", "max"))
    out.append((table if table.fits(room) else channels(("max",))).render(room, color))

    names = {ch["name"]: ch["display_name"] for ch in doc["channels"]}
    late = sorted(({**d, "channel": ch["name"]} for ch in doc["channels"] for d in ch["late"]),
                  key=lambda d: d["due_at"])
    if late:
        # whole channel names and ids (`publisher retry ID`); the error's first line takes what is left
        # and is cut to it (`publisher show ID` has it whole)
        lt = Table(_("late_items"), [Column(_("channel")), Column(_("item")), Column(_("state"), shrink=6),
                                     Column(_("lag"), right=True), Column(_("attempts"), right=True),
                                     Column(_("last_error"), shrink=8)])
        for d in late:
            state = t(f"state_{d['state']}", locale) + (f" ({_('retract')})" if d["retract"] else "")
            error = d["last_error"].splitlines()[0] if d["last_error"] else ""
            lt.add_row(names[d["channel"]], f"{d['item_id']} r{d['revision']}", state, _.d(_td(d["lag_s"])),
                       str(d["attempts"]), error)
        out.append(lt.render(room, color))
        hidden = sum(ch["late_total"] - len(ch["late"]) for ch in doc["channels"])
        if hidden:
            note(f"… +{hidden} (--limit N, --json)", "dim")
    else:
        note(_("no_late"), "green")

    lost = sorted(({**d, "channel": ch["name"]} for ch in doc["channels"] for d in ch.get("lost", [])),
                  key=lambda d: d["lost_at"])
    if lost:  # a live item the channel took down (a WeChat article deleted or banned): `publisher retry` it
        lo = Table(_("lost_items"), [Column(_("channel")), Column(_("item")), Column(_("state"), shrink=6),
                                     Column(_("lost_at")), Column(_("last_error"), shrink=8)])
        for d in lost:
            error = d["last_error"].splitlines()[0].removeprefix(TAKEN_DOWN) if d["last_error"] else ""
            lo.add_row(names[d["channel"]], f"{d['item_id']} r{d['revision']}", t(f"state_{d['state']}", locale),
                       f"{_instant(d['lost_at']).astimezone():%m-%d %H:%M}", error)
        out.append(lo.render(room, color))

    warnings = [f for f in doc["freshness"] if f["status"] in ("warning", "breached")]
    if warnings:
        ft = Table(_("freshness"), [Column(_(key), right=key in ("age", "threshold"))
                                    for key in ("channel", "category", "status", "age", "threshold")])
        for f in warnings:
            ft.add_row(names.get(f["channel"], f["channel"]), f["category_name"] or _("whole_channel"),
                       (_("fresh_" + f["status"]), "red" if f["status"] == "breached" else "yellow"),
                       _.d(_td(f["age_s"])), _.d(_td(f["threshold_s"])))
        out.append(ft.render(room, color))
    if doc["deadlines"]:
        shown_rows = doc["deadlines"][:rows]
        ids = max(len(f"{d['item_id']} r{d['revision']}") for d in shown_rows)
        dt = Table(_("deadlines"), [Column(_("item"), cap=ids), Column(_("category"), shrink=4),  # titles cut to ids
                                    Column(_("doc_date")), Column(_("deadline")),
                                    Column(_("workdays_left"), right=True), Column(_("status"))])
        for d in shown_rows:
            status = _(d["status"]) + ("" if d["calendar_known"] else f" {_('calendar_guess')}")
            dt.add_row([f"{d['item_id']} r{d['revision']}", (d["title"], "dim")], d["category_name"],
                       d["start"], d["last_day"], str(d["working_days_left"]),
                       (status, "red" if d["status"] == "overdue" else "yellow"))
        out.append(dt.render(room, color))
        total = doc.get("deadlines_total", len(doc["deadlines"]))  # a daemon of an older release sends no total
        if total > len(shown_rows):
            note(f"… +{total - len(shown_rows)} (--limit N, --json)", "dim")
    review = doc.get("review")  # absent from a daemon of an earlier version
    if review and review["waiting"]:
        note(_("review_line", waiting=review["waiting"], blocked=review["blocked"],
               blocking=review["findings"]["blocking"], advisory=review["findings"]["advisory"]),
             "yellow" if review["blocked"] else "dim")
        if review["kinds"]:
            comma = ", " if locale == "en" else "，"
            note(_("review_kinds", kinds=comma.join(f"{_kind(k, locale)} {n}" for k, n in review["kinds"].items())), "dim")
    if doc.get("sources"):
        out.append(_sources_table(doc["sources"], now, _, Table, Column).render(room, color))
    if doc.get("source") == "daemon":
        note(_("source_daemon", listen=listen), "dim")
    elif why in ("down", "slow", "other_config"):
        note(_("source_store_" + why, listen=listen), "yellow")
    elif why.startswith("http"):
        note(_("source_store_refused", listen=listen, why=why), "yellow")
    sys.stdout.write("\n".join(out) + "\n")


def _sources_table(sources: list[dict[str, Any]], now: datetime, _: Any, table: Any, column: Any) -> Any:
    """The district sources: last good poll, entries, items made, and the last error's first line."""
    styles = {"ok": "green", "error": "red", "silent": "bold red", "never": "yellow"}
    st = table(_("sources"), [column(_("district")), column(_("status")), column(_("last_success"), right=True),
                              column(_("entries"), right=True), column(_("imported"), right=True),
                              column(_("last_error"), shrink=8)])
    for src in sources:
        last = _at(src["last_success_at"])
        when = _("never") if last is None else f"{last.astimezone():%m-%d %H:%M}"
        error = src["last_error"].splitlines()[0] if src["last_error"] else ""
        st.add_row(src["district"], (_("src_" + src["status"]), styles.get(src["status"], "dim")), when,
                   str(src["entries"]), str(src["imported"]), error)
    return st


if __name__ == "__main__":
    lag_command()
