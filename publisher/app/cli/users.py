"""`publisher users`: the reviewers' accounts (add, list, disable, enable, passwd, roles, token, demo).

Managing accounts is an admin's act on the store: whoever may open the store (the config file and its
database) may run these. Passwords are asked for with hidden, confirmed prompts and never echoed or
logged; a token is shown once (stdout holds only the token, so `export PUBLISHER_TOKEN=$(publisher users
token NAME)` works), and only its hash is kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from publisher.app.cli.common import CONFIG_OPTION, console, fail, load, open_store, safe, table
from publisher.clock import SystemClock
from publisher.errors import PublisherError

if TYPE_CHECKING:
    from publisher.config.settings import Config
    from publisher.review.accounts import Accounts


def _accounts(config_path: Path) -> tuple[Config, Accounts]:
    from publisher.review.accounts import Accounts

    config = load(config_path, sends=False)
    return config, Accounts(open_store(config), SystemClock(), roles=config.roles,
                            session_ttl=config.review.session_ttl, admin=f"admin:{_login()}")


def _login() -> str:
    """The operating-system user running the command, for the audit log of account changes."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return "unknown"


def _password() -> str:
    return str(click.prompt("New password / 新密码", hide_input=True, confirmation_prompt=True, err=True))


@click.group("users")
def users_command() -> None:
    """Reviewers' accounts: who may sign, as which roles."""


@users_command.command("add")
@click.argument("name")
@click.option("--display-name", default="", help="the name people know, e.g. 李科长 (default: NAME)")
@click.option("--role", "roles", multiple=True, help="a role the account may sign as (repeat for several)")
@click.option("--email", default=None, help="where review digests go")
@click.option("--no-password", is_flag=True, help="token only (no web desk login)")
@CONFIG_OPTION
def add(name: str, display_name: str, roles: tuple[str, ...], email: str | None, no_password: bool,
        config_path: Path) -> None:
    """Add an account (asks for its password)."""
    config, accounts = _accounts(config_path)
    password = None if no_password else _password()
    try:
        account = accounts.add(name, display_name or name, roles, email, password)
    except PublisherError as exc:
        fail(exc)
    console.print(f"added {safe(account.label())}: roles {safe(', '.join(sorted(account.roles))) or '-'}",
                  highlight=False)


@users_command.command("list")
@CONFIG_OPTION
def list_(config_path: Path) -> None:
    """Every account, its roles and whether it is enabled."""
    config, accounts = _accounts(config_path)
    out = table("name", "display name", "roles", "enabled", "e-mail")
    for a in accounts.list():
        out.add_row(safe(a.name), safe(a.display_name),
                    safe(", ".join(f"{r} ({config.role_name(r)})" for r in sorted(a.roles))),
                    "yes" if a.enabled else "[red]no[/]", safe(a.email))
    console.print(out)


@users_command.command()
@click.argument("name")
@CONFIG_OPTION
def disable(name: str, config_path: Path) -> None:
    """Disable an account: it signs nothing more, its token and web sessions end at once."""
    _config, accounts = _accounts(config_path)
    try:
        accounts.disable(name)
    except PublisherError as exc:
        fail(exc)
    console.print(f"{safe(name)}: disabled")


@users_command.command()
@click.argument("name")
@CONFIG_OPTION
def enable(name: str, config_path: Path) -> None:
    """Enable a disabled account again (it needs a new token)."""
    _config, accounts = _accounts(config_path)
    try:
        accounts.enable(name)
    except PublisherError as exc:
        fail(exc)
    console.print(f"{safe(name)}: enabled")


@users_command.command()
@click.argument("name")
@CONFIG_OPTION
def passwd(name: str, config_path: Path) -> None:
    """Set an account's password (its web sessions end)."""
    _config, accounts = _accounts(config_path)
    if accounts.get(name) is None:
        fail(PublisherError(f"no account named {name!r}; `publisher users list` shows them"))
    try:
        accounts.set_password(name, _password())
    except PublisherError as exc:
        fail(exc)
    console.print(f"{safe(name)}: password changed")


@users_command.command()
@click.argument("name")
@click.argument("roles", nargs=-1)
@CONFIG_OPTION
def roles(name: str, roles: tuple[str, ...], config_path: Path) -> None:
    """Set the roles an account may sign as (none: it signs nothing)."""
    _config, accounts = _accounts(config_path)
    try:
        account = accounts.set_roles(name, roles)
    except PublisherError as exc:
        fail(exc)
    console.print(f"{safe(name)}: roles {safe(', '.join(sorted(account.roles))) or '-'}")


@users_command.command()
@click.argument("name")
@CONFIG_OPTION
def token(name: str, config_path: Path) -> None:
    """Issue a CLI token for NAME (the previous one stops working); it is shown once."""
    _config, accounts = _accounts(config_path)
    try:
        issued = accounts.issue_token(name)
    except PublisherError as exc:
        fail(exc)
    click.echo(issued)
    click.echo("export PUBLISHER_TOKEN=<the token above> and the review commands act as this account; "
               "it is shown once", err=True)


@users_command.command()
@CONFIG_OPTION
def demo(config_path: Path) -> None:
    """Sandbox only: one demo reviewer per role (demo_<role>, password sandbox-demo), clearly marked."""
    from publisher.review.accounts import DEMO_PASSWORD, add_demo_reviewers

    config, accounts = _accounts(config_path)
    if not config.sandbox.enabled:
        fail(PublisherError("demo reviewers exist only for the sandbox (sandbox.enabled: true); "
                            "add real accounts with `publisher users add`"))
    made = add_demo_reviewers(accounts, config.roles)
    for a in made:
        console.print(f"added {safe(a.label())}", highlight=False)
    console.print(f"{len(made)} demo reviewer(s) added; password {DEMO_PASSWORD} (demo only), "
                  "or `publisher users token demo_<role>`", highlight=False)
