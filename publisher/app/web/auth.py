"""Who is signed in: login and logout, server-side sessions, and the session cookie.

A session is a random id the server keeps (hashed) with its expiry: logout and expiry end it on the
server, and a copied cookie is worthless afterwards. The cookie carries the id signed (security.Signer).
Two ways in: a reviewer account (name and password, checked by the accounts API, its sessions kept in
the store), or the admin token `web.token` (the dashboard only; its sessions are kept in this process).
Both pass the same throttle per address and per account.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from publisher import i18n
from publisher.app.web.security import Security, remote, same

if TYPE_CHECKING:
    from jinja2 import Environment

    from publisher.app.web.context import WebContext
    from publisher.clock import Clock

log = structlog.get_logger()
COOKIE = "publisher_session"
TOKEN_USER = "token"  # the name a token session goes by in logs and the audit


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: an account (`account` set: the desk acts as it) or the admin token."""

    name: str
    display_name: str
    roles: frozenset[str] = frozenset()
    account: Any = None  # publisher.review.accounts.Account when signed in with an account


class Sessions(Protocol):
    def open(self, principal: Principal, remote: str) -> str: ...
    def get(self, session_id: str) -> Principal | None: ...
    def close(self, session_id: str) -> None: ...


@dataclass
class MemorySessions:
    """Sessions held by this process (token logins): hashed ids with their expiry."""

    clock: Clock
    ttl: timedelta
    _open: dict[str, tuple[Principal, datetime]] = field(default_factory=dict)

    @staticmethod
    def _key(session_id: str) -> str:
        return hashlib.sha256(session_id.encode()).hexdigest()

    def open(self, principal: Principal, remote: str) -> str:
        now = self.clock.now()
        self._open = {k: v for k, v in self._open.items() if v[1] > now}  # forget the expired ones
        session_id = secrets.token_urlsafe(32)
        self._open[self._key(session_id)] = (principal, now + self.ttl)
        return session_id

    def get(self, session_id: str) -> Principal | None:
        found = self._open.get(self._key(session_id))
        if found is None or found[1] <= self.clock.now():
            return None
        return found[0]

    def close(self, session_id: str) -> None:
        self._open.pop(self._key(session_id), None)


class Auth:
    """Login, logout and the signed-in principal of a request, for every route of the web app."""

    def __init__(self, ctx: WebContext, security: Security, env: Environment) -> None:
        self.ctx = ctx
        self.security = security
        self.env = env
        self.token_sessions = MemorySessions(ctx.clock, ctx.config.review.session_ttl)
        secret = ctx.config.web.token
        self.secret = secret.get_secret_value() if secret is not None else ""

    # --- who is this -----------------------------------------------------------------------------

    def _session_id(self, request: Request) -> str | None:
        return self.security.signer.unsign("session", request.cookies.get(COOKIE))

    async def current(self, request: Request) -> Principal | None:
        """The principal of this request's session (cached on the request), or None."""
        if "principal" in request.scope:
            return request.scope["principal"]  # type: ignore[no-any-return]  # the scope is an untyped dict; we put it there
        found: Principal | None = None
        session_id = self._session_id(request)
        if session_id is not None:
            kind, _, sid = session_id.partition(":")
            if kind == "t":
                found = self.token_sessions.get(sid)
            elif kind == "a" and self.ctx.accounts is not None:
                account = await run_in_threadpool(self.ctx.accounts.session, sid)
                found = principal_of(account) if account is not None else None
        request.scope["principal"] = found
        return found

    def bearer_ok(self, request: Request) -> bool:
        bearer = request.headers.get("authorization", "")
        return bool(self.secret) and bearer.lower().startswith("bearer ") and same(bearer[7:].strip(), self.secret)

    def locale(self, request: Request) -> str:
        return i18n.normalize(request.query_params.get("lang") or request.cookies.get("lang"), self.ctx.config.locale)

    def to_login(self, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login" if target == "/" else f"/login?next={quote(target)}", status_code=303)

    # --- the pages ---------------------------------------------------------------------------------

    def _page(self, request: Request, *, error: str | None = None, status: int = 200, name: str = "",
              headers: dict[str, str] | None = None) -> Response:
        loc = self.locale(request)
        html = self.env.get_template("login.html").render(
            _=i18n.Translator(loc), locale=loc, error=error, name=name, next=_safe_next(request),
            csrf=self.security.csrf.token(request), accounts=self.ctx.accounts is not None, token=bool(self.secret))
        return self.security.csrf.remember(request, HTMLResponse(html, status_code=status, headers=headers))

    async def login(self, request: Request) -> Response:
        if request.method != "POST":
            return self._page(request)
        form = await self.security.csrf.form(request)
        name = str(form.get("name", "")).strip()[:200]
        password = str(form.get("password", ""))[:1000]
        _ = i18n.Translator(self.locale(request))
        address = remote(request)
        keys = [f"address:{address}", f"account:{name}" if name else "token"]
        wait = self.security.throttle.wait(*keys)
        if wait is not None:
            minutes = max(1, round(wait.total_seconds() / 60))
            log.warning("web.login_throttled", client=address, account=name or None)
            return self._page(request, error=_("login_throttled", m=minutes), status=429, name=name,
                              headers={"Retry-After": str(max(1, int(wait.total_seconds())))})
        principal, session_id = await self._check(name, password, address)
        if principal is None or session_id is None:
            self.security.throttle.failed(*keys)
            log.warning("web.login_refused", client=address, account=name or None)
            return self._page(request, error=_("bad_login") if name else _("bad_token"), status=401, name=name)
        self.security.throttle.succeeded(*keys)
        log.info("web.login", client=address, account=principal.name)
        response = RedirectResponse(_safe_next(request) or "/", status_code=303)
        self.security.cookies.set(response, COOKIE, self.security.signer.sign("session", session_id),
                                  max_age=int(self.ctx.config.review.session_ttl.total_seconds()))
        return response

    async def _check(self, name: str, password: str, address: str) -> tuple[Principal | None, str | None]:
        if not name:
            if not self.secret or not same(password, self.secret):
                return None, None
            principal = Principal(name=TOKEN_USER, display_name=TOKEN_USER)
            return principal, "t:" + self.token_sessions.open(principal, address)
        accounts = self.ctx.accounts
        if accounts is None:
            return None, None
        account = await run_in_threadpool(accounts.verify_password, name, password)
        if account is None:
            return None, None
        sid = await run_in_threadpool(accounts.open_session, account.name, address)
        return principal_of(account), "a:" + sid

    async def logout(self, request: Request) -> Response:
        await self.security.csrf.form(request)
        session_id = self._session_id(request)
        if session_id is not None:
            kind, _, sid = session_id.partition(":")
            if kind == "t":
                self.token_sessions.close(sid)
            elif kind == "a" and self.ctx.accounts is not None:
                await run_in_threadpool(self.ctx.accounts.close_session, sid)
            log.info("web.logout", client=remote(request))
        response = RedirectResponse("/login", status_code=303)
        self.security.cookies.clear(response, COOKIE)
        return response

    def routes(self) -> list[BaseRoute]:
        return [Route("/login", self.login, methods=["GET", "POST"]), Route("/logout", self.logout, methods=["POST"])]


def principal_of(account: Any) -> Principal:
    return Principal(name=account.name, display_name=account.display_name or account.name,
                     roles=frozenset(account.roles), account=account)


def _safe_next(request: Request) -> str:
    """Where to go after login: a path on this site only (never `//evil.example` or a full URL)."""
    target = request.query_params.get("next", "")
    if target.startswith("/") and not target.startswith("//") and "\\" not in target and target.isprintable():
        return target
    return ""
