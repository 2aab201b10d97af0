"""The reviewers' commands: `review` (what waits), and `approve`, `reject`, `override`, `retract`, each
made by an authenticated account under the rules of publisher/review/rules.py (the web desk obeys the same).

Who acts: the account whose token is in PUBLISHER_TOKEN (`publisher users token NAME` issues one), or,
without it, the account whose name (`--user` or PUBLISHER_USER, else a prompt) and password (a hidden
prompt) are given. One authentication covers every ID of a batch `publisher approve ID ID ...`. The old
`--by NAME` is refused with a message that says what to do instead: a typed name proves nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from publisher.app.cli.common import CONFIG_OPTION, console, fail, load, open_store, safe, table
from publisher.clock import SystemClock
from publisher.errors import PublisherError
from publisher.states import RevisionState

if TYPE_CHECKING:
    from publisher.config.settings import Config
    from publisher.review.accounts import Account
    from publisher.store.db import Store

TOKEN_ENV = "PUBLISHER_TOKEN"
BY_GONE = ("--by is gone: a sign-off is made by an account, not a typed name. Set PUBLISHER_TOKEN to your token "
           "(`publisher users token NAME` issues one), or run the command without it and answer the name and "
           "password prompts (--user NAME skips the name).")


def _refuse_by(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        raise click.UsageError(BY_GONE, ctx)


def identity(command: Callable[..., Any]) -> Callable[..., Any]:
    """--user (name for the password prompt) and the refused --by, on every command that acts."""
    command = click.option("--by", hidden=True, expose_value=False, callback=_refuse_by, is_eager=True)(command)
    return click.option("--user", default=None, envvar="PUBLISHER_USER",
                        help="your account name (then a password prompt); default: PUBLISHER_TOKEN")(command)


def authenticate(config: Config, store: Store, user: str | None) -> Account:
    """The acting account: from PUBLISHER_TOKEN, else name and password prompts. Never echoes a secret."""
    from publisher.review.accounts import Accounts

    accounts = Accounts(store, SystemClock(), roles=config.roles)
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token and user is None:
        account = accounts.by_token(token)
        if account is None:
            raise click.ClickException(f"{TOKEN_ENV} is not the token of an enabled account (tokens end when a new "
                                       "one is issued or the account is disabled); `publisher users token NAME` "
                                       "issues a new one, or unset it to log in with a password")
        return account
    name = user or click.prompt("Account name / 账号", err=True)
    password = click.prompt("Password / 密码", hide_input=True, err=True)
    account = accounts.verify_password(name.strip(), password)
    if account is None:
        raise click.ClickException("wrong account name or password, or the account is disabled "
                                   "(账号或密码错误，或账号已停用)")
    return account


def _act(config_path: Path, user: str | None, act: Callable[[Any, Account], Any]) -> Any:
    from publisher.review.chain import Review

    config = load(config_path, sends=False)
    store = open_store(config)
    actor = authenticate(config, store, user)
    try:
        return act(Review(store, config, SystemClock()), actor)
    except PublisherError as exc:
        fail(exc)


@click.command()
@click.option("--mine", is_flag=True, help="only what my account may sign now (authenticates)")
@identity
@CONFIG_OPTION
def review(mine: bool, user: str | None, config_path: Path) -> None:
    """List what waits for whose sign-off, and what the confidentiality screen blocked."""
    from publisher.review.chain import Review

    config = load(config_path, sends=False)
    store = open_store(config)
    account = authenticate(config, store, user) if mine else None
    waiting = Review(store, config, SystemClock()).waiting(account)
    if not waiting:
        console.print("Nothing waits for review." if account is None else f"Nothing waits for {account.label()}.")
        return
    out = table("item", "rev", "category", "title", "waits for", "signed by", "findings")
    for w in waiting:
        nxt = " / ".join(f"{r} ({config.role_name(r)})" for r in w.may_sign) or "-"
        if w.retract:
            nxt = f"[red]retraction[/] · {nxt}"
        if w.state == RevisionState.BLOCKED:
            nxt = f"[red]override[/] · {nxt}" if w.next_role else "[red]override[/]"
        out.add_row(safe(w.item_id), str(w.revision), safe(config.category_name(w.category)), safe(w.title[:40]),
                    nxt, safe(", ".join(w.signed_by)), safe("; ".join(f["zh"] for f in w.findings)))
    console.print(out)


@click.command()
@click.argument("item_ids", nargs=-1, required=True)
@click.option("--role", default=None, help="the role you sign as (default: the step each item waits for)")
@identity
@CONFIG_OPTION
def approve(item_ids: tuple[str, ...], role: str | None, user: str | None, config_path: Path) -> None:
    """Sign one or more items off (one authentication for all of them)."""
    outcomes = _act(config_path, user, lambda review, actor: review.approve_many(item_ids, actor, role))
    for o in outcomes:
        if o.ok:
            console.print(f"{safe(o.item_id)}: approve recorded; now {o.state}", highlight=False)
        else:
            console.print(f"[red]{safe(o.item_id)}: refused[/]: {safe(o.reason)}", highlight=False)
    refused = [o for o in outcomes if not o.ok]
    if refused:
        raise click.ClickException(f"{len(refused)} of {len(outcomes)} not signed (reasons above)")


@click.command()
@click.argument("item_id")
@click.option("--reason", required=True, help="what the editor must change (goes into queue/returned/)")
@identity
@CONFIG_OPTION
def reject(item_id: str, reason: str, user: str | None, config_path: Path) -> None:
    """Send an item back; the editor finds the reason in queue/returned/ID.r<N>.txt."""
    _act(config_path, user, lambda review, actor: review.reject(item_id, actor, reason))
    console.print(f"{safe(item_id)}: reject recorded; the editor's note is in queue/returned/", highlight=False)


@click.command()
@click.argument("item_id")
@click.option("--reason", required=True)
@identity
@CONFIG_OPTION
def override(item_id: str, reason: str, user: str | None, config_path: Path) -> None:
    """Release an item the confidentiality screen blocked (review.override_roles; you answer for it)."""
    state = _act(config_path, user, lambda review, actor: review.override(item_id, actor, reason))
    console.print(f"{safe(item_id)}: override recorded; now {state}", highlight=False)


@click.command()
@click.argument("item_id")
@click.option("--reason", default="")
@identity
@CONFIG_OPTION
def retract(item_id: str, reason: str, user: str | None, config_path: Path) -> None:
    """Take an item down from every channel that holds it (review.retract_roles)."""
    state = _act(config_path, user, lambda review, actor: review.retract(item_id, actor, reason))
    console.print(f"{safe(item_id)}: retract recorded; now {state}", highlight=False)


review_commands = [review, approve, reject, override, retract]
