"""The review rules every door obeys (the CLI and the web desk call the same `Review`): which chain a
revision needs, who may sign which step, who may override and retract. Pure functions of the config,
the revision, its sign-offs and the acting account; each refusal is a sentence the reviewer can act on.

- The chain: the revision's category's, or, when an earlier revision of the same item was in a category
  with a longer chain, that one: an edit never lowers the review an item needs (an accident report
  re-dropped as `category: updates` still needs its four sign-offs).
- Separation of duties (`review.separation_of_duties`, on by default): one account signs at most one
  step of a revision's chain.
- The author (the `author` front-matter field, matched against the account's name and display name)
  neither signs nor overrides the item (`review.author_may_sign`, off by default).
- An override needs one of `review.override_roles`; a retraction, and the sign-off of one dropped in the
  queue (`retract: true`), one of `review.retract_roles`.
"""

from __future__ import annotations

from collections.abc import Iterable

from publisher.config.settings import Config
from publisher.model import Approval, StoredRevision
from publisher.review.accounts import Account


def category_chain(config: Config, category: str) -> list[str]:
    return list(config.categories[category].review) if category in config.categories else []


def chain_for(config: Config, category: str, earlier: Iterable[str] = ()) -> list[str]:
    """The chain a revision in `category` needs, given the categories of the item's earlier revisions."""
    best = category_chain(config, category)
    for other in earlier:
        chain = category_chain(config, other)
        if len(chain) > len(best):
            best = chain
    return best


def next_step(chain: list[str], approvals: list[Approval]) -> str | None:
    signed = {a.role for a in approvals if a.action == "approve"}
    return next((role for role in chain if role not in signed), None)


def _roles(config: Config, roles: Iterable[str]) -> str:
    return ", ".join(f"{r} ({config.role_name(r)})" for r in roles) or "none"


def is_author(rev: StoredRevision, account: Account) -> bool:
    author = (rev.author or "").strip()
    return bool(author) and author in {account.name, account.display_name}


def author_refusal(config: Config, rev: StoredRevision, account: Account, what: str) -> str | None:
    if config.review.author_may_sign or not is_author(rev, account):
        return None
    return (f"{account.label()} is the author of {rev.item_id} and cannot {what} it; "
            "another reviewer must (review.author_may_sign in config.yaml)")


def sign_refusal(config: Config, rev: StoredRevision, approvals: list[Approval], account: Account,
                 role: str, expected: str) -> str | None:
    """Why `account` may not sign `role` on a revision whose next step is `expected`; None when it may."""
    if role not in config.roles:
        return f"unknown role {role!r}; roles: {', '.join(config.roles)}"
    if role != expected:
        return (f"{rev.item_id} waits for {expected} ({config.role_name(expected)}) before {role} "
                f"({config.role_name(role)}) can sign")
    if role not in account.roles:
        return (f"{account.label()} may not sign as {role} ({config.role_name(role)}); "
                f"the account's roles: {_roles(config, sorted(account.roles))}")
    if config.review.separation_of_duties:
        mine = [a.role for a in approvals if a.action == "approve" and a.by == account.name and a.role]
        if mine:
            return (f"{account.label()} already signed {rev.item_id} as {_roles(config, mine)}; separation of "
                    f"duties: another account must sign {role} ({config.role_name(role)})")
    return author_refusal(config, rev, account, "sign")


def special_refusal(config: Config, account: Account, key: str, what: str) -> str | None:
    """Why `account` may not override / retract (`key`: override_roles / retract_roles); None when it may."""
    allowed: list[str] = getattr(config.review, key)
    if not allowed:
        return f"no role may {what}: name the roles under review.{key} in config.yaml"
    if not set(allowed) & account.roles:
        return (f"to {what} needs one of the roles {_roles(config, allowed)} (review.{key}); "
                f"{account.label()} holds {_roles(config, sorted(account.roles))}")
    return None


def held(config: Config, account: Account, key: str) -> str:
    """The first of `review.<key>` roles the account holds (call after special_refusal said it may)."""
    allowed: list[str] = getattr(config.review, key)
    return next(r for r in allowed if r in account.roles)
