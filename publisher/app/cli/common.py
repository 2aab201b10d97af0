"""What every command module of the command line shares: the console, the --config option, config.yaml
and the store as a reader opens them, and stored text made safe to print. Heavy modules (SQLAlchemy,
pydantic, rich) are imported on first use, so that a quick command starts quickly."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from publisher.app.cli.table import printable

if TYPE_CHECKING:
    from rich.table import Table

    from publisher.config.settings import Config
    from publisher.store.db import Store


class _Console:
    """rich's Console, made on first use."""

    _made: Any = None

    def __getattr__(self, name: str) -> Any:
        if _Console._made is None:
            from rich.console import Console

            _Console._made = Console(width=None if sys.stdout.isatty() else 240)  # piped output keeps whole lines
        return getattr(_Console._made, name)


console = _Console()


def table(*headers: str) -> Table:
    from rich.table import Table

    return Table(*headers)


CONFIG_OPTION = click.option("--config", "config_path", type=click.Path(path_type=Path), default=Path("config.yaml"),
                             show_default=True, envvar="PUBLISHER_CONFIG", help="config.yaml to use")


def load(path: Path, *, sends: bool) -> Config:
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


def open_store(config: Config) -> Store:
    from publisher.store.db import Store

    return Store.open(config.store_url)


def fail(exc: Exception) -> NoReturn:
    raise click.ClickException(str(exc))


def safe(text: str | None) -> str:
    """Stored text (an editor's title, a remote's error) as rich prints it literally: no markup taken from
    it, and no character that a terminal would act on (see publisher/app/cli/table.py `printable`)."""
    from rich.markup import escape

    return escape(printable(text or ""))
