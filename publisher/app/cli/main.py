"""`publisher`: the command line for admins and reviewers (editors only drop files)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from publisher.app.cli.lag import lag_command
from publisher.app.cli.report import report_group
from publisher.app.cli.table import printable
from publisher.clock import SystemClock
from publisher.errors import PublisherError
from publisher.states import DeliveryState, RevisionState

if TYPE_CHECKING:
    from rich.table import Table

    from publisher.config.settings import Config
    from publisher.store.db import Store

# Heavy modules (SQLAlchemy, pydantic, rich, structlog) are imported by the commands that use them,
# so that `publisher lag` asking the running daemon starts in a fraction of a second.


# `items --state`: a current revision's review state, "retracted", or the state of one of its deliveries
ITEM_STATES = (*(s.value for s in RevisionState if s is not RevisionState.SUPERSEDED), "retracted",
               *(s.value for s in DeliveryState if s is not DeliveryState.SUPERSEDED))


class _Console:
    """rich's Console, made on first use."""

    _made: Any = None

    def __getattr__(self, name: str) -> Any:
        if _Console._made is None:
            from rich.console import Console

            _Console._made = Console(width=None if sys.stdout.isatty() else 240)  # piped output keeps whole lines
        return getattr(_Console._made, name)


console = _Console()


def _table(*headers: str) -> Table:
    from rich.table import Table

    return Table(*headers)
CONFIG_OPTION = click.option("--config", "config_path", type=click.Path(path_type=Path), default=Path("config.yaml"),
                             show_default=True, envvar="PUBLISHER_CONFIG", help="config.yaml to use")


def _config(path: Path, *, sends: bool) -> Config:
    """config.yaml for a command. Only `sends=True` (`run`, and `check-config`, which exists to find what
    `run` would refuse) needs the channels' secrets in the environment. Every other command is a reader: it
    reads or writes the store and talks to no channel (approve, reject, override, retract and retry only
    record what the running daemon then sends), so an admin's shell without the WordPress password can run it."""
    import logging

    from publisher.config.settings import ConfigError, load_config
    from publisher.logs import configure_logging

    configure_logging(json=False, level=logging.WARNING)  # `run` turns the daemon's own logging on
    try:
        return load_config(path, adapters=sends)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _store(config: Config) -> Store:
    from publisher.store.db import Store

    return Store.open(config.store_url)


def _fail(exc: Exception) -> NoReturn:
    raise click.ClickException(str(exc))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="publisher")
def main() -> None:
    """Publish every approved item to every channel exactly once, and show which channel is late."""


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
def init(directory: Path) -> None:
    """Make a working directory: config.yaml, queue/inbox, archive, rejected and var/."""
    from importlib import resources

    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "config.yaml"
    if target.exists():
        console.print(f"[yellow]{target} exists; left as it is[/]")
    else:
        template = resources.files("publisher.config").joinpath("default.yaml")
        target.write_text(template.read_text(encoding="utf-8"), encoding="utf-8")
    for sub in ("queue/inbox", "queue/archive", "queue/rejected", "var"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    console.print(f"Ready: {directory.resolve()}\n"
                  f"  run the daemon:   cd {directory} && publisher run\n"
                  f"  drop item files:  {directory / 'queue/inbox'}")


@main.command("check-config")
@CONFIG_OPTION
def check_config(config_path: Path) -> None:
    """Validate config.yaml and list every problem with its place in the file."""
    config = _config(config_path, sends=True)
    console.print(f"[green]{config_path}: OK[/] — {len(config.categories)} categories, "
                  f"{len(config.channels)} channels ({', '.join(config.channels)})")


@main.command()
@CONFIG_OPTION
@click.option("--once", is_flag=True, help="process everything due, then exit")
@click.option("--log-format", type=click.Choice(["json", "console"]), default="json", show_default=True)
def run(config_path: Path, once: bool, log_format: str) -> None:
    """Run the daemon in the foreground (for systemd), or once (--once)."""
    import asyncio

    from publisher.app.daemon import Daemon
    from publisher.logs import configure_logging

    config = _config(config_path, sends=True)
    configure_logging(json=log_format == "json")
    if not config.web.is_loopback and config.web.token is None:
        raise click.ClickException(f"web.listen {config.web.listen} is reachable from other machines: set web.token "
                                   "(e.g. token: \"${PUBLISHER_WEB_TOKEN}\") so the dashboard asks for it")

    async def go() -> None:
        daemon = Daemon(config)
        try:
            if once:
                counts = await daemon.run_once()
                console.print(json.dumps(counts), highlight=False)
            else:
                await daemon.run()
        finally:
            await daemon.aclose()

    asyncio.run(go())


@main.command()
@click.option("--listen", default="127.0.0.1:8701", show_default=True)
def sandbox(listen: str) -> None:
    """Serve the loopback stand-ins of the channel protocols (WordPress, portal, hub, Weibo, Mastodon)."""
    from publisher.sandbox import run as run_sandbox

    host, _, port = listen.rpartition(":")
    run_sandbox(host, int(port))


@main.command()
@CONFIG_OPTION
def review(config_path: Path) -> None:
    """List what waits for whose sign-off, and what the confidentiality screen blocked."""
    from publisher.review.chain import Review

    config = _config(config_path, sends=False)
    waiting = Review(_store(config), config, SystemClock()).waiting()
    if not waiting:
        console.print("Nothing waits for review.")
        return
    table = _table("item", "rev", "category", "title", "waits for", "findings")
    for w in waiting:
        nxt = f"{w.next_role} ({config.role_name(w.next_role)})" if w.next_role else "-"
        if w.state == RevisionState.BLOCKED:
            nxt = f"[red]override[/] · {nxt}" if w.next_role else "[red]override[/]"
        table.add_row(_s(w.item_id), str(w.revision), _s(config.category_name(w.category)), _s(w.title[:40]), nxt,
                      _s("; ".join(f["zh"] for f in w.findings)))
    console.print(table)


def _review_action(config_path: Path, action: str, item_id: str, **kw: Any) -> None:
    from publisher.review.chain import Review

    config = _config(config_path, sends=False)
    try:
        state = getattr(Review(_store(config), config, SystemClock()), action)(item_id, **kw)
    except PublisherError as exc:
        _fail(exc)
    console.print(f"{item_id}: {action} recorded" + (f"; now {state}" if state else ""))


@main.command()
@click.argument("item_id")
@click.option("--role", required=True, help="the role you sign as (a key of roles: in config.yaml)")
@click.option("--by", "by", required=True, help="your name, for the audit log")
@CONFIG_OPTION
def approve(item_id: str, role: str, by: str, config_path: Path) -> None:
    """Sign an item off as ROLE."""
    _review_action(config_path, "approve", item_id, role=role, by=by)


@main.command()
@click.argument("item_id")
@click.option("--reason", required=True)
@click.option("--by", "by", required=True)
@CONFIG_OPTION
def reject(item_id: str, reason: str, by: str, config_path: Path) -> None:
    """Send an item back; the reason is kept in the audit log."""
    _review_action(config_path, "reject", item_id, reason=reason, by=by)


@main.command()
@click.argument("item_id")
@click.option("--reason", required=True)
@click.option("--by", "by", required=True)
@CONFIG_OPTION
def override(item_id: str, reason: str, by: str, config_path: Path) -> None:
    """Release an item the confidentiality screen blocked (you take responsibility, with a reason)."""
    _review_action(config_path, "override", item_id, reason=reason, by=by)


@main.command()
@click.argument("item_id")
@click.option("--by", "by", default="admin", show_default=True)
@click.option("--reason", default="")
@CONFIG_OPTION
def retract(item_id: str, by: str, reason: str, config_path: Path) -> None:
    """Take an item down from every channel that holds it."""
    _review_action(config_path, "retract", item_id, by=by, reason=reason)


@main.command()
@click.argument("item_id")
@click.option("--channel", default=None, help="only this channel")
@click.option("--by", "by", default="admin", show_default=True)
@CONFIG_OPTION
def retry(item_id: str, channel: str | None, by: str, config_path: Path) -> None:
    """Put an item's failed deliveries back in the queue (the running daemon picks them up)."""
    from publisher.dispatch.outbox import requeue

    config = _config(config_path, sends=False)
    if channel is not None and channel not in config.channels:
        raise click.BadParameter(f"{channel!r} is not a channel in {config_path}; these are: "
                                 f"{', '.join(config.channels)}", param_hint="--channel")
    store = _store(config)
    if store.revision(item_id) is None:
        _fail(PublisherError(f"no item with id {item_id!r}; `publisher items` lists them"))
    n = requeue(store, config, SystemClock().now(), item_id, channel, by=by)
    if not n:
        _fail(PublisherError(f"{item_id}: nothing failed, retrying or unseen" + (f" on {channel}" if channel else "")
                             + "; `publisher show " + item_id + "` shows each channel's state"))
    console.print(f"{item_id}: {n} deliver{'y' if n == 1 else 'ies'} queued again")


@main.command()
@click.option("--state", default=None, type=click.Choice(ITEM_STATES), help="an item's review state, or a delivery state")
@click.option("--limit", default=100, show_default=True)
@CONFIG_OPTION
def items(state: str | None, limit: int, config_path: Path) -> None:
    """List items, newest first."""
    config = _config(config_path, sends=False)
    rows = _store(config).items(state, limit)
    table = _table("item", "rev", "category", "title", "review", "updated (UTC)")
    for r in rows:
        review = "retracted" if r.retracted else r.revision_state
        table.add_row(_s(r.id), str(r.current_revision), _s(config.category_name(r.category)), _s(r.title[:40]),
                      review, r.updated_at.strftime("%Y-%m-%d %H:%M"))
    console.print(table)
    console.print(f"{len(rows)} item(s)")


@main.command()
@click.argument("item_id")
@CONFIG_OPTION
def show(item_id: str, config_path: Path) -> None:
    """An item's revisions, sign-offs, findings and per-channel delivery history."""
    config = _config(config_path, sends=False)
    store = _store(config)
    latest = store.revision(item_id)
    if latest is None:
        _fail(PublisherError(f"no item with id {item_id!r}; `publisher items` lists them"))
    console.print(f"[bold]{_s(item_id)}[/] — {_s(latest.title)}  ({_s(config.category_name(latest.category))})")
    for n in range(1, latest.number + 1):
        rev = store.revision(item_id, n)
        if rev is None:
            continue
        console.print(f"  revision {n}: {rev.state}{' (retraction)' if rev.retract else ''}, "
                      f"file {_s(rev.file_name)}, {rev.created_at:%Y-%m-%d %H:%M:%S} UTC")
        for f in rev.findings:
            console.print(_finding_line(f))
        for a in store.approvals(rev.id):
            role = f" as {a.role} ({config.role_name(a.role)})" if a.role else ""
            console.print(f"    {a.action}{_s(role)} by {_s(a.by)} at {a.at:%Y-%m-%d %H:%M:%S}"
                          + (f": {_s(a.reason)}" if a.reason else ""))
    table = _table("rev", "channel", "state", "attempts", "due", "sent", "live", "url / last error")
    for d in store.deliveries_of(item_id):
        name = config.channels[d.channel].display(d.channel) if d.channel in config.channels else d.channel
        table.add_row(str(d.revision) + (" ✕" if d.retract else ""), _s(name), d.state.value, str(d.attempts),
                      _t(d.due_at), _t(d.sent_at), _t(d.live_at), _s(d.last_error or d.url or ""))
    console.print(table)


def _finding_line(f: dict[str, Any]) -> str:
    """One finding of the screen: its level, the field it is in, the text as written, and why (zh / en)."""
    blocking = f.get("level", "blocking") != "advisory"
    field = str(f.get("field") or f.get("where") or "")
    if f.get("index") is not None:
        field += f"[{f['index']}]"
    why = f"{f.get('reason_zh') or f['zh']} / {f.get('reason_en') or f['en']}"
    right = f" → \u201c{_s(str(f['suggest']))}\u201d" if f.get("suggest") else ""
    return (f"    {'[red]finding[/] (blocking)' if blocking else '[yellow]finding[/] (advisory)'} {_s(field)}: "
            f"\u201c{_s(str(f.get('text', '')))}\u201d{right} — {_s(why)}")


def _t(v: Any) -> str:
    return v.strftime("%m-%d %H:%M:%S") if v else ""


def _s(text: str | None) -> str:
    """Stored text (an editor's title, a remote's error) as rich prints it literally: no markup taken from
    it, and no character that a terminal would act on (see publisher/app/cli/table.py `printable`)."""
    from rich.markup import escape

    return escape(printable(text or ""))


@main.command()
@click.argument("item_id", required=False)
@click.option("--limit", default=50, show_default=True)
@CONFIG_OPTION
def audit(item_id: str | None, limit: int, config_path: Path) -> None:
    """The audit log (who did what, when), newest first."""
    config = _config(config_path, sends=False)
    for row in _store(config).audit_log(item_id, limit):
        detail = json.dumps(row.detail, ensure_ascii=False)
        console.print(f"{row.at:%Y-%m-%d %H:%M:%S} {_s(row.actor):<12} {row.action:<12} "
                      f"{_s(row.item_id)} {_s(row.channel)} {_s(detail)}", highlight=False)


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--scale", default=1.0, show_default=True, help="10 = a ten-year backfill")
@click.option("--seed", default=2015, show_default=True)
@click.option("--sensitive", default=12, show_default=True, help="items with planted confidential content")
@click.option("--broken", is_flag=True, help="also write files intake must reject (and two odd encodings)")
def corpus(out: Path, scale: float, seed: int, sensitive: int, broken: bool) -> None:
    """Write a realistic corpus of item files (one bureau-year) for trying the daemon out."""
    from publisher.sandbox.corpus import make_corpus

    manifest = make_corpus(out, scale=scale, seed=seed, sensitive=sensitive, broken=broken)
    console.print(f"{len(manifest['items'])} items, {len(manifest['sensitive'])} with planted confidential "
                  f"content, {len(manifest['broken'])} broken/encoded files → {out}")


main.add_command(lag_command)
main.add_command(report_group)


if __name__ == "__main__":
    main()
