"""Reviewer accounts: who may sign, as which roles, and how they prove who they are.

`Accounts` is made once at the edge (the daemon, a CLI command) with the store and the clock, and
injected. Passwords are hashed with argon2id (argon2-cffi); a name that has no account still costs one
verification against a dummy hash, so the time of a failed login does not say whether the name exists.
CLI tokens and web session ids are random (`secrets`), shown once, and stored only as their SHA-256:
a leaked store gives neither. A session ends at its expiry, at logout, when the account is disabled and
when its password changes. Nothing here logs a secret.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from publisher.clock import Clock
from publisher.errors import PublisherError
from publisher.store.db import Store

log = structlog.get_logger()
NAME = re.compile(r"^[\w.\-]{1,100}$")  # letters (Chinese too), digits, _ . -
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
TOKEN_PREFIX = "pub_"  # tells a publisher token apart from a password in a shell's history


class AccountError(PublisherError):
    """An account action that cannot be taken; the message says why and what would work."""


@dataclass(frozen=True)
class Account:
    name: str
    display_name: str
    roles: frozenset[str]
    enabled: bool
    email: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Account:
        return cls(name=row["name"], display_name=row["display_name"], roles=frozenset(row["roles"] or ()),
                   enabled=bool(row["enabled"]), email=row["email"])

    def label(self) -> str:
        """How the audit log and messages name the account: `name (display name)`."""
        return self.name if self.display_name == self.name else f"{self.name} ({self.display_name})"


def _sha256(secret: str) -> str:
    return hashlib.sha256(_bytes(secret)).hexdigest()


def _bytes(secret: str) -> bytes:
    """Any text a form or a terminal gives (lone surrogates too) as bytes, never an encoding error."""
    return secret.encode("utf-8", "surrogatepass")


class Accounts:
    def __init__(self, store: Store, clock: Clock, *, roles: Iterable[str] | None = None,
                 session_ttl: timedelta = timedelta(hours=8), hasher: PasswordHasher | None = None,
                 admin: str = "admin") -> None:
        self.store = store
        self.admin = admin  # who the audit log names for account changes (the CLI: admin:<login user>)
        self.clock = clock
        self.roles = None if roles is None else frozenset(roles)  # config.yaml's roles; None: any
        self.session_ttl = session_ttl
        self.hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None

    # --- managing ------------------------------------------------------------------------------

    def add(self, name: str, display_name: str, roles: Iterable[str], email: str | None,
            password: str | None) -> Account:
        if not NAME.match(name):
            raise AccountError(f"account name {name!r}: use 1-100 letters, digits, '_', '.' or '-' (no spaces)")
        now = self.clock.now()
        values = {"name": name, "display_name": display_name.strip() or name, "roles": self._roles(roles),
                  "enabled": True, "email": (email or "").strip() or None,
                  "password_hash": None if password is None else self._hash(password),
                  "token_hash": None, "created_at": now, "updated_at": now}
        with self.store.tx() as conn:
            if not self.store.insert_account(conn, values):
                raise AccountError(f"an account named {name!r} exists already; `publisher users list` shows them")
            self.store.audit(conn, now, self.admin, "account_added", account=name, roles=values["roles"])
        log.info("accounts.added", account=name, roles=values["roles"])
        account = self.get(name)
        assert account is not None
        return account

    def get(self, name: str) -> Account | None:
        row = self.store.account_row(name)
        return None if row is None else Account.from_row(row)

    def list(self) -> list[Account]:
        return [Account.from_row(r) for r in self.store.account_rows()]

    def set_password(self, name: str, password: str) -> None:
        self._update(name, "password_changed", password_hash=self._hash(password), close_sessions=True)

    def set_roles(self, name: str, roles: Iterable[str]) -> Account:
        chosen = self._roles(roles)
        self._update(name, "roles_changed", roles=chosen)
        account = self.get(name)
        assert account is not None
        return account

    def disable(self, name: str) -> None:
        self._update(name, "account_disabled", enabled=False, token_hash=None, close_sessions=True)

    def enable(self, name: str) -> None:
        self._update(name, "account_enabled", enabled=True)

    def _update(self, name: str, action: str, *, close_sessions: bool = False, **values: Any) -> None:
        now = self.clock.now()
        with self.store.tx() as conn:
            if not self.store.update_account(conn, name, updated_at=now, **values):
                raise AccountError(f"no account named {name!r}; `publisher users list` shows them")
            if close_sessions:
                self.store.close_sessions(conn, now, account=name)
            shown = {k: v for k, v in values.items() if k in ("roles", "enabled")}
            self.store.audit(conn, now, self.admin, action, account=name, **shown)
        log.info(f"accounts.{action}", account=name)

    def _roles(self, roles: Iterable[str]) -> builtins.list[str]:
        chosen = sorted({r.strip() for r in roles if r.strip()})
        unknown = [r for r in chosen if self.roles is not None and r not in self.roles]
        if unknown:
            raise AccountError(f"unknown role(s) {', '.join(unknown)}; config.yaml's roles are: "
                               f"{', '.join(sorted(self.roles or ()))}")
        return chosen

    def _hash(self, password: str) -> str:
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise AccountError(f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters")
        return self.hasher.hash(_bytes(password))

    # --- proving who one is --------------------------------------------------------------------

    @property
    def _dummy(self) -> str:
        """What an unknown name's password is checked against (made on first use: a command that checks
        no password pays nothing for it)."""
        if self._dummy_hash is None:
            self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    def verify_password(self, name: str, password: str) -> Account | None:
        """The account, when `password` is its password and it is enabled; else None (and the same work done)."""
        row = self.store.account_row(name) if NAME.match(name or "") else None
        stored = row["password_hash"] if row is not None and row["password_hash"] else self._dummy
        ok: bool
        try:
            ok = self.hasher.verify(stored, _bytes(password[:MAX_PASSWORD]))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if not ok or len(password) > MAX_PASSWORD or row is None or not row["password_hash"] or not row["enabled"]:
            return None
        if self.hasher.check_needs_rehash(stored):  # the hasher's parameters were raised since
            with self.store.tx() as conn:
                self.store.update_account(conn, name, password_hash=self.hasher.hash(_bytes(password)))
        return Account.from_row(row)

    def issue_token(self, name: str) -> str:
        """A new CLI token for the account (the previous one stops working); the clear token is returned
        once, only its hash is kept."""
        account = self.get(name)
        if account is None:
            raise AccountError(f"no account named {name!r}; `publisher users list` shows them")
        if not account.enabled:
            raise AccountError(f"account {name!r} is disabled; `publisher users enable {name}` first")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self._update(name, "token_issued", token_hash=_sha256(token))
        return token

    def by_token(self, token: str) -> Account | None:
        token = (token or "").strip()
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        digest = _sha256(token)
        row = self.store.account_by_token_hash(digest)
        if row is None or not hmac.compare_digest(str(row["token_hash"]), digest) or not row["enabled"]:
            return None
        return Account.from_row(row)

    # --- web sessions --------------------------------------------------------------------------

    def open_session(self, account_name: str, remote: str | None) -> str:
        account = self.get(account_name)
        if account is None or not account.enabled:
            raise AccountError(f"no enabled account named {account_name!r}")
        session_id = secrets.token_urlsafe(32)
        now = self.clock.now()
        with self.store.tx() as conn:
            self.store.purge_sessions(conn, now - timedelta(days=30))
            self.store.insert_session(conn, _sha256(session_id), account_name, remote, now, now + self.session_ttl)
            self.store.audit(conn, now, account_name, "login", remote=remote)
        return session_id

    def session(self, session_id: str) -> Account | None:
        if not session_id or len(session_id) > 200:
            return None
        digest = _sha256(session_id)
        row = self.store.session_row(digest)
        if (row is None or not hmac.compare_digest(str(row["id_hash"]), digest) or row["closed_at"] is not None
                or row["expires_at"] <= self.clock.now()):
            return None
        account = self.get(row["account"])
        return account if account is not None and account.enabled else None

    def close_session(self, session_id: str) -> None:
        if not session_id or len(session_id) > 200:
            return
        digest = _sha256(session_id)
        row = self.store.session_row(digest)
        now = self.clock.now()
        with self.store.tx() as conn:
            if self.store.close_sessions(conn, now, id_hash=digest) and row is not None:
                self.store.audit(conn, now, row["account"], "logout", remote=row["remote"])


DEMO_PASSWORD = "sandbox-demo"  # noqa: S105 (the demo reviewers' published password; sandbox mode only)
DEMO_MARK = "演示账号·仅限沙盒 / demo account, sandbox only"


def add_demo_reviewers(accounts: Accounts, roles: dict[str, str]) -> builtins.list[Account]:
    """One demo reviewer per role (`demo_<role>`, password DEMO_PASSWORD), for trying the desk and the CLI
    on the sandbox; the caller makes sure the config runs in sandbox mode. Existing accounts are kept."""
    made = []
    for key, label in roles.items():
        name = f"demo_{key}"
        if accounts.get(name) is None:
            made.append(accounts.add(name, f"{label}（{DEMO_MARK}）", [key], None, DEMO_PASSWORD))
    return made
