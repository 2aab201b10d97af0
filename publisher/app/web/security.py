"""The web server's defences: which Host it answers to, signed cookies, CSRF tokens, and the login throttle.

- Host allow-list (starlette's TrustedHostMiddleware, fed from `web.listen`, `web.public_url` and
  `web.allowed_hosts`): a page on `evil.example` that rebinds its name to 127.0.0.1 reaches the server
  with `Host: evil.example` and is refused, so it can neither read the dashboard nor post to it.
- Cookies are HttpOnly, SameSite=Strict, Secure when `web.public_url` is https, and what they carry is
  signed (HMAC-SHA256 with `web.session_key`, or a key made at start): a forged or altered value is
  simply not recognised.
- Every form carries a CSRF token: the HMAC of a random value kept in its own cookie (double submit,
  the token signed so that a cookie planted from a sibling host cannot be paired with a token of its
  choosing). A POST without the right token, or with an `Origin` of another site, is refused with 403.
- Logins are throttled per address and per account: after `web.login_attempts` failures within
  `web.login_pause` that key pauses until the pause has passed since its last failure; meanwhile no
  password is even checked. The counts live in this process (each node of a cluster keeps its own).
- Every comparison of a secret is constant-time and on bytes (a non-ASCII token compares; `str`
  arguments to `hmac.compare_digest` must be ASCII and would raise).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import structlog
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from publisher.clock import Clock
    from publisher.config.settings import WebConfig

log = structlog.get_logger()
CSRF_COOKIE = "publisher_csrf"
CSRF_FIELD = "csrf_token"
CROSS_SITE = "跨站提交的表单已拒绝，请在本站页面上操作。cross-site form refused: post it from this site's own page"
STALE_FORM = ("表单已过期或并非来自本站，请刷新页面后重试。"
              "this form has expired or did not come from this site: reload the page and try again")
MAX_THROTTLE_KEYS = 10_000  # the oldest keys are forgotten past this many (a flood of addresses costs bounded memory)


def same(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time equality of two secrets, whatever characters they hold."""
    return hmac.compare_digest(a.encode() if isinstance(a, str) else a, b.encode() if isinstance(b, str) else b)


class Signer:
    """Signs short values for cookies: `value.signature`; unsign gives None for anything forged or altered."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def mac(self, purpose: str, value: str) -> str:
        return hmac.new(self._key, f"{purpose}\x00{value}".encode(), hashlib.sha256).hexdigest()

    def sign(self, purpose: str, value: str) -> str:
        return f"{value}.{self.mac(purpose, value)}"

    def unsign(self, purpose: str, signed: str | None) -> str | None:
        if not signed or "." not in signed:
            return None
        value, _, mac = signed.rpartition(".")
        return value if same(mac, self.mac(purpose, value)) else None


@dataclass(frozen=True)
class CookiePolicy:
    secure: bool

    def set(self, response: Response, name: str, value: str, max_age: int | None = None) -> None:
        response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict", secure=self.secure,
                            path="/")

    def clear(self, response: Response, name: str) -> None:
        response.delete_cookie(name, httponly=True, samesite="strict", secure=self.secure, path="/")


class Csrf:
    """The CSRF token of a browser (`token`, for templates) and the check of a posted form (`form`)."""

    def __init__(self, signer: Signer, cookies: CookiePolicy) -> None:
        self.signer = signer
        self.cookies = cookies

    def nonce(self, request: Request) -> str:
        """This browser's CSRF value: from its cookie, or a new one (`remember` puts it in the cookie)."""
        if "csrf_nonce" not in request.scope:
            cookie = request.cookies.get(CSRF_COOKIE, "")
            request.scope["csrf_nonce"] = cookie if 16 <= len(cookie) <= 64 and cookie.isalnum() else None
        if request.scope["csrf_nonce"] is None:
            request.scope["csrf_nonce"] = secrets.token_hex(16)
            request.scope["csrf_new"] = True
        return str(request.scope["csrf_nonce"])

    def token(self, request: Request) -> str:
        return self.signer.mac("csrf", self.nonce(request))

    def remember(self, request: Request, response: Response) -> Response:
        """Set the CSRF cookie on a page that showed a new token."""
        if request.scope.get("csrf_new"):
            self.cookies.set(response, CSRF_COOKIE, str(request.scope["csrf_nonce"]))
        return response

    async def form(self, request: Request) -> FormData:
        """The posted form, once its origin and CSRF token are checked (403 otherwise, 400 when unreadable)."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower():
            log.warning("web.csrf_refused", why="origin", origin=origin[:200], path=request.url.path)
            raise HTTPException(403, CROSS_SITE)
        if origin == "null":
            raise HTTPException(403, CROSS_SITE)
        try:
            form = await request.form(max_files=0, max_fields=2000)
        except HTTPException:
            raise
        except (ValueError, UnicodeError) as exc:  # a body that is not a form at all
            raise HTTPException(400, f"表单无法读取。the form could not be read: {exc}") from None
        cookie = request.cookies.get(CSRF_COOKIE, "")
        given = form.get(CSRF_FIELD)
        if not cookie or not isinstance(given, str) or not same(given, self.signer.mac("csrf", cookie)):
            log.warning("web.csrf_refused", why="token", path=request.url.path)
            raise HTTPException(403, STALE_FORM)
        return form


class Throttle:
    """Failed logins per key (an address, an account); a key with too many recent failures pauses."""

    def __init__(self, clock: Clock, *, attempts: int, pause: timedelta) -> None:
        self.clock = clock
        self.attempts = attempts
        self.pause = pause
        self._failures: OrderedDict[str, list[datetime]] = OrderedDict()

    def _recent(self, key: str, now: datetime) -> list[datetime]:
        kept = [t for t in self._failures.get(key, []) if now - t < self.pause]
        if kept:
            self._failures[key] = kept
        else:
            self._failures.pop(key, None)
        return kept

    def wait(self, *keys: str) -> timedelta | None:
        """How long these keys must still wait before another try, or None when they may try now."""
        now = self.clock.now()
        waits = [recent[-1] + self.pause - now for key in keys
                 if len(recent := self._recent(key, now)) >= self.attempts]
        return max(waits) if waits else None

    def failed(self, *keys: str) -> None:
        now = self.clock.now()
        for key in keys:
            self._failures.setdefault(key, []).append(now)
            self._failures.move_to_end(key)
        while len(self._failures) > MAX_THROTTLE_KEYS:
            self._failures.popitem(last=False)

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)


@dataclass
class Security:
    """The defences one web app uses, made once from `web:` in config.yaml."""

    signer: Signer
    cookies: CookiePolicy
    csrf: Csrf
    throttle: Throttle

    @classmethod
    def of(cls, web: WebConfig, clock: Clock) -> Security:
        key = web.session_key.get_secret_value().encode() if web.session_key else secrets.token_bytes(32)
        signer = Signer(key)
        cookies = CookiePolicy(secure=(web.public_url or "").lower().startswith("https:"))
        return cls(signer=signer, cookies=cookies, csrf=Csrf(signer, cookies),
                   throttle=Throttle(clock, attempts=web.login_attempts, pause=web.login_pause))


def remote(request: Request) -> str:
    return request.client.host if request.client else "?"
