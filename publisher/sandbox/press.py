"""The press desk's mail relay: an SMTP server on loopback (aiosmtpd) that keeps every message it accepts.

What it accepted is at `GET /_sandbox/press/received` (and `/press/messages`): each message's envelope,
Message-ID, subject, plain text, whether it had an HTML part, and its attachments' names. It speaks SMTP
as RFC 5321 has it: a message is accepted when the relay answers 250 after the data. The fault knobs
of `/_sandbox/press/faults` act on the SMTP dialogue:

    error_rate / burst_429   the DATA is answered 451 (try again later) and not kept
    unauthorized             every recipient is refused with 550
    black_hole               the message is kept, but the 250 never comes (the connection hangs):
                             the relay has it, and the sender cannot know
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import time
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from publisher.sandbox.core import FaultKind, Service, StandIn


class Press(StandIn):
    def seed(self) -> None:
        self.store["messages"] = []

    def received(self) -> Any:
        return self.store["messages"]

    def routes(self) -> list[BaseRoute]:
        return [Route("/messages", self.messages)]

    async def messages(self, request: Request) -> Response:
        return JSONResponse(self.store["messages"])

    def render_fault(self, kind: FaultKind, retry_after: str | None) -> Response:
        return JSONResponse({"error": kind}, status_code={"unauthorized": 401, "rate_limited": 429}.get(kind, 503))


class Relay:
    """aiosmtpd's handler: the RCPT and DATA steps of the dialogue, with the service's fault knobs."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,  # noqa: N802
                          rcpt_options: list[str]) -> str:
        if self.service.faults.unauthorized:
            return "550 5.7.1 Relaying denied"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        faults = self.service.faults
        if faults.latency_s:
            await asyncio.sleep(faults.latency_s)
        if faults.burst_429 > 0 or (faults.error_rate and self.service.rng.random() < faults.error_rate):
            faults.burst_429 = max(0, faults.burst_429 - 1)
            return "451 4.3.0 Temporary failure, try again later"
        raw = envelope.original_content or (envelope.content if isinstance(envelope.content, bytes) else b"")
        msg: EmailMessage = email.message_from_bytes(raw, policy=email.policy.default)
        self.service.store.setdefault("messages", []).append(_summary(msg, envelope))
        if faults.black_hole:
            await asyncio.Event().wait()  # kept, never acknowledged
        return "250 2.0.0 Message accepted for delivery"


def _summary(msg: EmailMessage, envelope: Envelope) -> dict[str, Any]:
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    return {
        "received_at": time.time(),
        "mail_from": envelope.mail_from,
        "rcpt_tos": list(envelope.rcpt_tos),
        "message_id": msg["Message-ID"],
        "subject": msg["Subject"],
        "references": msg["References"],
        "to_header": msg["To"],
        "text": text.get_content() if text is not None else None,
        "has_html": html is not None,
        "attachments": [part.get_filename() for part in msg.iter_attachments()],
        "size": len(envelope.original_content or b""),
    }


async def serve_smtp(service: Service, sock: socket.socket) -> asyncio.Server:
    """The relay on a bound socket, in the running loop (the sandbox's own)."""
    relay = Relay(service)
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: SMTP(relay, hostname="relay.sandbox", ident="sandbox press relay"),
                                    sock=sock)


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock
