"""What every loopback stand-in shares: a record of what it received, fault knobs, and the shape
of a stand-in.

Each stand-in (one module per protocol in this package) is a `StandIn`: a class holding its state,
one method per endpoint and a short `routes()` table, speaking the real service's wire protocol as
its documents describe it. `Recorded` wraps its app: every request is logged (secrets redacted) and
the fault knobs are applied before the stand-in sees the request. Faults are rendered by the
stand-in itself (`render_fault`), because each service reports errors in its own format.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

FaultKind = Literal["unauthorized", "rate_limited", "error"]
# (kind, retry_after header value or None) -> the service's own error response
FaultRenderer = Callable[[FaultKind, "str | None"], Response]

_SECRET_HEADERS = {"authorization", "x-signature", "cookie"}

# Credentials the stand-ins accept by default; the shipped config.yaml uses the same values as the
# defaults of its ${ENV:-default} secrets, so a first run works with no environment set.
CREDENTIALS: dict[str, str] = {
    "wordpress_user": "publisher",
    "wordpress_app_password": "sand box0 sand box0 sand box0",
    "portal_token": "sandbox-portal-token",
    "portal_hmac_secret": "sandbox-portal-secret",
    "weibo_token": "sandbox-weibo-token",
    "mastodon_token": "sandbox-mastodon-token",
    "wechat_appid": "wx5a9db0c0ffee2015",
    "wechat_secret": "sandbox-wechat-secret",
}


@dataclass
class Faults:
    """Knobs a test or a curious user turns over HTTP: PUT /_sandbox/<service>/faults."""

    latency_s: float = 0.0  # added before every answer
    # added before every write (POST, PUT, PATCH, DELETE), which takes effect only then, as a busy server
    # finishes a request whose client has given up waiting: a slow create lands after the client's timeout
    write_latency_s: float = 0.0
    error_rate: float = 0.0  # share of requests answered with `error_status`
    error_status: int = 503
    burst_429: int = 0  # the next N requests get 429
    retry_after: str | None = None  # sent with 429/503 when set: seconds or an HTTP-date
    black_hole: bool = False  # accept the request and never answer
    unauthorized: bool = False  # every request is refused as if the credentials were revoked

    def update(self, data: dict[str, Any]) -> None:
        for key, value in data.items():
            if key not in self.__dataclass_fields__:
                raise ValueError(f"unknown fault knob {key!r}; known: {', '.join(self.__dataclass_fields__)}")
            setattr(self, key, value)


@dataclass
class Service:
    """One stand-in's state: its fault knobs, its request log, and what it holds."""

    name: str
    faults: Faults = field(default_factory=Faults)
    requests: list[dict[str, Any]] = field(default_factory=list)
    store: dict[str, Any] = field(default_factory=dict)  # the stand-in's own data, by its own keys
    rng: random.Random = field(default_factory=lambda: random.Random(2015))
    hooks: list[Callable[[], None]] = field(default_factory=list)  # called on reset
    show: Callable[[], Any] | None = None  # the stand-in's own view of what it holds

    def received(self) -> Any:
        """What the stand-in holds, as it would show it to an inspector."""
        return self.show() if self.show is not None else self.store

    def reset(self) -> None:
        self.faults = Faults()
        self.requests.clear()
        self.store.clear()
        for hook in self.hooks:
            hook()

    def snapshot(self) -> dict[str, Any]:
        return {"name": self.name, "faults": asdict(self.faults), "requests": len(self.requests)}


class Recorded:
    """ASGI wrapper: log the request, apply the fault knobs, then hand over to the stand-in."""

    def __init__(self, app: ASGIApp, service: Service, render_fault: FaultRenderer) -> None:
        self.app = app
        self.service = service
        self.render_fault = render_fault

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.service.requests.append({
            "at": time.time(),
            "method": scope["method"],
            "path": scope.get("root_path", "") + scope["path"],
            "query": _redact_form(scope.get("query_string", b"").decode("latin-1")),
            "headers": {k: ("<redacted>" if k in _SECRET_HEADERS else v) for k, v in headers.items()},
            "body": _loggable(body, headers.get("content-type", "")),
        })
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                await asyncio.Event().wait()  # like a client that never sends more: wait for disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        fault = await self._fault(scope["method"])
        if fault is not None:
            await fault(scope, replay, send)
            return
        await self.app(scope, replay, send)

    async def _fault(self, method: str) -> Response | None:
        f = self.service.faults
        if f.latency_s:
            await asyncio.sleep(f.latency_s)
        if f.write_latency_s and method in ("POST", "PUT", "PATCH", "DELETE"):
            await asyncio.sleep(f.write_latency_s)
        if f.black_hole:
            await asyncio.Event().wait()  # never answers; the client's timeout must fire
        if f.unauthorized:
            return self.render_fault("unauthorized", None)
        if f.burst_429 > 0:
            f.burst_429 -= 1
            return self.render_fault("rate_limited", f.retry_after)
        if f.error_rate and self.service.rng.random() < f.error_rate:
            return self.render_fault("error", f.retry_after)
        return None


def _loggable(body: bytes, content_type: str) -> Any:
    if not body:
        return None
    if "json" in content_type:
        try:
            data = json.loads(body)
        except ValueError:
            pass
        else:  # WeChat's stable_token takes its secret in a JSON body
            return {k: "<redacted>" if k in _SECRET_FIELDS else v for k, v in data.items()} if isinstance(data, dict) else data
    if "multipart" in content_type or len(body) > 65536:
        return f"<{len(body)} bytes>"
    text = body.decode("utf-8", "replace")
    return _redact_form(text) if "x-www-form-urlencoded" in content_type else text


_SECRET_FIELDS = ("access_token", "token", "password", "client_secret", "secret")


def _redact_form(text: str) -> str:
    """Tokens sent as form fields or query parameters (Weibo allows both) stay out of the log."""
    if not any(f"{name}=" in text for name in _SECRET_FIELDS):
        return text
    pairs = parse_qsl(text, keep_blank_values=True)
    return urlencode([(k, "<redacted>" if k in _SECRET_FIELDS else v) for k, v in pairs])


def fold_arrays(pairs: Iterable[tuple[str, Any]], into: dict[str, Any] | None = None) -> dict[str, Any]:
    """Form or query pairs as PHP reads them, and Rack after it: a repeated `name[]` makes a list
    under `name`; any other name keeps its last value. `into` takes them over what it holds."""
    out: dict[str, Any] = {} if into is None else into
    for key, value in pairs:
        if key.endswith("[]"):
            out.setdefault(key[:-2], []).append(value)
        else:
            out[key] = value
    return out


def retry_after_header(value: str | None) -> dict[str, str] | None:
    """The `Retry-After` header of an injected fault, when the knob sets one."""
    return {"Retry-After": value} if value else None


class StandIn(ABC):
    """One stand-in: its state (in `service.store`, so a reset clears it), one method per endpoint,
    the route table of those methods, and its own rendering of the injected faults."""

    def __init__(self, service: Service, base: str) -> None:
        self.service = service
        self.store = service.store
        self.base = base.rstrip("/")  # how clients reach this stand-in, for the links it hands out
        service.hooks.append(self.seed)
        service.show = self.received
        self.seed()

    def seed(self) -> None:  # noqa: B027  # optional hook: a stand-in whose state starts empty seeds nothing
        """Put the state in its first form; called again after every reset."""

    def received(self) -> Any:
        return self.store

    @abstractmethod
    def routes(self) -> list[BaseRoute]:
        """The stand-in's route table: one Route per path of its protocol."""

    def asgi(self) -> ASGIApp:
        return Starlette(routes=self.routes())

    @abstractmethod
    def render_fault(self, kind: FaultKind, retry_after: str | None) -> Response:
        """An injected fault as the real service answers it (its own error body and status)."""
