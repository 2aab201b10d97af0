"""`publisher`: the command line for admins and reviewers (editors only drop files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from publisher.app.cli import common
from publisher.app.cli.lag import lag_command
from publisher.app.cli.report import report_group
from publisher.app.cli.review import review_commands
from publisher.app.cli.users import users_command
from publisher.clock import SystemClock
from publisher.errors import PublisherError
from publisher.states import DeliveryState, RevisionState

# Heavy modules (SQLAlchemy, pydantic, rich, structlog) are imported by the commands that use them,
# so that `publisher lag` asking the running daemon starts in a fraction of a second.


# `items --state`: a current revision's review state, "retracted", or the state of one of its deliveries
ITEM_STATES = (*(s.value for s in RevisionState if s is not RevisionState.SUPERSEDED), "retracted",
               *(s.value for s in DeliveryState if s is not DeliveryState.SUPERSEDED))


console = common.console
_table = common.table
CONFIG_OPTION = common.CONFIG_OPTION
_config = common.load
_store = common.open_store
_fail = common.fail
_s = common.safe


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="publisher")
def main() -> None:
    """Publish every approved item to every channel exactly once, and show which channel is late."""


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--demo", is_flag=True, help="the sandbox demo (stand-ins on loopback, their secrets as defaults)")
def init(directory: Path, demo: bool) -> None:
    """Make a working directory: config.yaml, queue/inbox, archive, rejected and var/. The config is for
    production (sandbox off, every secret from the environment, no defaults) unless --demo is given."""
    from importlib import resources

    from publisher.app.cli.workdir import production_config

    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "config.yaml"
    if target.exists():
        console.print(f"[yellow]{target} exists; left as it is[/]")
    else:
        template = resources.files("publisher.config").joinpath("default.yaml").read_text(encoding="utf-8")
        target.write_text(template if demo else production_config(template), encoding="utf-8")
        if not demo:
            console.print("config.yaml is for production: set each channel's URL, and its secrets in the environment "
                          "(`publisher check-config` names what is missing); `--demo` writes the sandbox demo")
    for sub in ("queue/inbox", "queue/archive", "queue/rejected", "var"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    console.print(f"Ready: {directory.resolve()}\n"
                  f"  run the daemon:   cd {directory} && publisher run\n"
                  f"  drop item files:  {directory / 'queue/inbox'}")


@main.command("check-config")
@CONFIG_OPTION
def check_config(config_path: Path) -> None:
    """Validate config.yaml and list every problem with its place in the file."""
    from publisher.app.cli.workdir import fallback_problems
    from publisher.config.file import read_config_file
    from publisher.config.settings import ConfigError

    config = _config(config_path, sends=True)
    if problems := fallback_problems(read_config_file(config_path)[0]):
        raise click.ClickException(str(ConfigError(config_path, problems)))
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
        daemon = Daemon(config, intake_process=not once)  # while it runs, intake is a process of its own
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
@click.option("--smtp", default="127.0.0.1:8725", show_default=True, help="the press relay's SMTP address")
def sandbox(listen: str, smtp: str) -> None:
    """Serve the loopback stand-ins of the channel protocols (WordPress, portal, hub, Weibo, Mastodon, the
    press relay) and the district feeds."""
    from publisher.sandbox import run as run_sandbox

    host, _, port = listen.rpartition(":")
    run_sandbox(host, int(port), smtp_port=int(smtp.rpartition(":")[2]))


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
        link = None if rev.file_name else store.entry_link(item_id)  # an entry of a district feed
        origin = f"file {_s(rev.file_name)}" if rev.file_name else f"feed entry {_s(link)}" if link else "no file"
        console.print(f"  revision {n}: {rev.state}{' (retraction)' if rev.retract else ''}, "
                      f"{origin}, {rev.created_at:%Y-%m-%d %H:%M:%S} UTC")
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
main.add_command(users_command)
for _command in review_commands:
    main.add_command(_command)


if __name__ == "__main__":
    main()
