"""The smtp adapter against a real SMTP server (aiosmtpd) on loopback, capturing what it receives."""

from __future__ import annotations

import email
import socket
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import ValidationError

from channels.base import PermanentError, Receipt, TransientError
from channels.registry import adapter_class
from channels.smtp import Smtp
from publisher.clock import FrozenClock
from publisher.model import Attachment, Revision
from tests.conftest import make_revision

TO = ["news@zbrb.example", "desk@zbtv.example"]


class Relay:
    """An aiosmtpd handler that keeps every accepted message and can be told to refuse."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.rcpt_reply: dict[str, str] = {}
        self.data_reply: str | None = None
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.rcpt_reply:
            return self.rcpt_reply[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply:
            return self.data_reply
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 Message accepted for delivery"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login, data.password))
        # handled=False: aiosmtpd then answers a failure with its own 535, as a real relay does.
        return AuthResult(success=data.login == b"press" and data.password == b"s3cret", handled=False)

    def parsed(self, n: int = -1) -> EmailMessage:
        msg = email.message_from_bytes(self.messages[n][2], policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def relay() -> Iterator[tuple[Relay, int]]:
    handler = Relay()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, authenticator=handler.authenticate,
                            auth_require_tls=False)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def make_smtp(port: int, http: httpx.AsyncClient, clock: FrozenClock, **options: Any) -> Smtp:
    opts = {"host": "127.0.0.1", "port": port, "sender": "市安监局新闻办 <press@ajj.zibo.example>", "to": TO,
            **options}
    return Smtp(name="press", options=Smtp.Options(**opts), http=http, clock=clock)


async def test_publish_sends_plain_and_html_with_stable_message_id(relay: tuple[Relay, int], http: httpx.AsyncClient,
                                                                   clock: FrozenClock, revision: Revision) -> None:
    """A release goes to every listed address as plain text plus sanitized HTML, under a Message-ID from id+revision."""
    handler, port = relay
    receipt = await make_smtp(port, http, clock).publish(revision)
    mail_from, rcpts, _ = handler.messages[0]
    assert mail_from == "press@ajj.zibo.example" and rcpts == TO
    msg = handler.parsed()
    assert receipt.remote_id == msg["Message-ID"] == "<2015-accidents-0007.r1.publisher@ajj.zibo.example>"
    assert "press@" not in str(msg["To"]) and "zbrb" not in str(msg["To"])
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    assert "**请各单位认真吸取教训。**" in plain.get_content()
    assert "<strong>请各单位认真吸取教训。</strong>" in html.get_content()
    assert "<li>加强隐患排查</li>" in html.get_content()
    assert await make_smtp(port, http, clock).find(revision) is None
    assert await make_smtp(port, http, clock).verify(receipt) is True


async def test_chinese_subject_is_encoded_words(relay: tuple[Relay, int], http: httpx.AsyncClient,
                                               clock: FrozenClock, revision: Revision) -> None:
    """The Chinese subject travels as RFC 2047 encoded words and decodes to prefix + title."""
    handler, port = relay
    await make_smtp(port, http, clock).publish(revision)
    raw = handler.messages[0][2]
    header = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert "Subject: =?utf-8?" in header
    assert handler.parsed()["Subject"] == "[新闻通稿] " + revision.title
    assert handler.parsed()["Date"] == "Wed, 18 Mar 2015 09:00:00 +0000"


async def test_attachments_travel_with_their_names(relay: tuple[Relay, int], http: httpx.AsyncClient,
                                                  clock: FrozenClock, tmp_path: Path) -> None:
    """Each attachment arrives as a MIME part with its (Chinese) file name, type and bytes."""
    handler, port = relay
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4 synthetic")
    rev = make_revision(attachments=(Attachment.of("事故调查报告.pdf", pdf),))
    await make_smtp(port, http, clock).publish(rev)
    msg = handler.parsed()
    assert msg.get_content_type() == "multipart/mixed"
    parts = list(msg.iter_attachments())
    assert [(p.get_filename(), p.get_content_type(), p.get_content()) for p in parts] == [
        ("事故调查报告.pdf", "application/pdf", b"%PDF-1.4 synthetic")]


async def test_unreadable_attachment_is_permanent(relay: tuple[Relay, int], http: httpx.AsyncClient,
                                                 clock: FrozenClock, tmp_path: Path) -> None:
    """An attachment missing from the archive stops the send with a permanent error and sends nothing."""
    handler, port = relay
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"x")
    rev = make_revision(attachments=(Attachment.of("report.pdf", pdf),))
    pdf.unlink()
    with pytest.raises(PermanentError, match="report.pdf"):
        await make_smtp(port, http, clock).publish(rev)
    assert handler.messages == []


async def test_repeat_carries_the_same_message_id(relay: tuple[Relay, int], http: httpx.AsyncClient,
                                                 clock: FrozenClock, revision: Revision) -> None:
    """Sending the same revision twice gives both copies one Message-ID, so recipients can tell the repeat."""
    handler, port = relay
    smtp = make_smtp(port, http, clock)
    first, second = await smtp.publish(revision), await smtp.publish(revision)
    assert first.remote_id == second.remote_id == handler.parsed(0)["Message-ID"] == handler.parsed(1)["Message-ID"]


async def test_update_sends_a_correction_referencing_the_original(relay: tuple[Relay, int], http: httpx.AsyncClient,
                                                                 clock: FrozenClock, revision: Revision) -> None:
    """An update is a "更正：" release with its own Message-ID, In-Reply-To and References to the original."""
    handler, port = relay
    smtp = make_smtp(port, http, clock)
    original = await smtp.publish(revision)
    corrected = await smtp.update(make_revision(revision=2, body="更正后的正文。"), original)
    msg = handler.parsed()
    assert msg["Subject"] == "[新闻通稿] 更正：" + revision.title
    assert msg["References"] == msg["In-Reply-To"] == original.remote_id
    assert corrected.remote_id == msg["Message-ID"] != original.remote_id
    assert "更正后的正文。" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    third = await smtp.update(make_revision(revision=3), corrected)
    assert handler.parsed()["References"] == f"{original.remote_id} {corrected.remote_id}"
    assert third.extra["references"] == [original.remote_id, corrected.remote_id]


async def test_retract_sends_a_withdrawal_notice(relay: tuple[Relay, int], http: httpx.AsyncClient,
                                                clock: FrozenClock, revision: Revision) -> None:
    """A retraction is a "撤回：" notice naming the release and referencing it, with a stable Message-ID."""
    handler, port = relay
    smtp = make_smtp(port, http, clock)
    receipt = await smtp.publish(revision)
    await smtp.retract(receipt)
    msg = handler.parsed()
    assert msg["Subject"] == "[新闻通稿] 撤回：" + revision.title
    assert msg["References"] == receipt.remote_id
    assert msg["Message-ID"] == "<2015-accidents-0007.r1.publisher.retract@ajj.zibo.example>"
    assert "已撤回" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_html_part_is_sanitized(relay: tuple[Relay, int], http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """Script, javascript: links and event handlers in the Markdown body never reach the HTML part."""
    handler, port = relay
    body = '正文<script>alert(1)</script>\n\n[链接](javascript:alert(1)) <a href="javascript:x">y</a>'
    await make_smtp(port, http, clock).publish(make_revision(body=body))
    html = handler.parsed().get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<script" not in html and "href=\"javascript" not in html and " on" not in html.split("<body>")[1]


async def test_4xx_reply_is_transient(relay: tuple[Relay, int], http: httpx.AsyncClient, clock: FrozenClock,
                                      revision: Revision) -> None:
    """A 451 to every recipient is a transient error keeping the server's reply."""
    handler, port = relay
    handler.rcpt_reply = dict.fromkeys(TO, "451 4.7.1 Greylisted, try again later")
    with pytest.raises(TransientError) as caught:
        await make_smtp(port, http, clock).publish(revision)
    assert caught.value.status == 451 and "Greylisted" in (caught.value.remote or "")


async def test_5xx_after_data_is_permanent(relay: tuple[Relay, int], http: httpx.AsyncClient, clock: FrozenClock,
                                          revision: Revision) -> None:
    """A 550 after DATA is a permanent error keeping the server's reply."""
    handler, port = relay
    handler.data_reply = "550 5.7.1 Message content rejected"
    with pytest.raises(PermanentError) as caught:
        await make_smtp(port, http, clock).publish(revision)
    assert not isinstance(caught.value, TransientError)
    assert caught.value.status == 550 and "content rejected" in (caught.value.remote or "")


async def test_all_recipients_refused_is_permanent(relay: tuple[Relay, int], http: httpx.AsyncClient,
                                                   clock: FrozenClock, revision: Revision) -> None:
    """A 550 to every recipient is a permanent error naming each refused address."""
    handler, port = relay
    handler.rcpt_reply = dict.fromkeys(TO, "550 5.1.1 No such user")
    with pytest.raises(PermanentError) as caught:
        await make_smtp(port, http, clock).publish(revision)
    assert all(addr in (caught.value.remote or "") for addr in TO)


async def test_partly_refused_list_still_counts_as_sent(relay: tuple[Relay, int], http: httpx.AsyncClient,
                                                        clock: FrozenClock, revision: Revision) -> None:
    """When the relay takes some recipients, the release is sent and the refused ones are in the receipt."""
    handler, port = relay
    handler.rcpt_reply = {TO[1]: "550 5.1.1 No such user"}
    receipt = await make_smtp(port, http, clock).publish(revision)
    assert handler.messages[0][1] == [TO[0]]
    assert receipt.extra["refused"] == {TO[1]: "550 5.1.1 No such user"}


async def test_connection_refused_is_transient(http: httpx.AsyncClient, clock: FrozenClock,
                                               revision: Revision) -> None:
    """A closed port is a transient error (the relay may come back)."""
    with pytest.raises(TransientError, match="cannot reach"):
        await make_smtp(free_port(), http, clock).publish(revision)


async def test_login_uses_the_secret_and_never_logs_it(relay: tuple[Relay, int], http: httpx.AsyncClient,
                                                       clock: FrozenClock, revision: Revision) -> None:
    """With credentials the adapter logs in, and no log event carries the password."""
    handler, port = relay
    with structlog.testing.capture_logs() as logs:
        await make_smtp(port, http, clock, username="press", password="s3cret").publish(revision)
    assert handler.logins == [(b"press", b"s3cret")] and len(handler.messages) == 1
    assert any(e["event"] == "smtp.sent" for e in logs) and "s3cret" not in repr(logs)


async def test_wrong_password_is_permanent(relay: tuple[Relay, int], http: httpx.AsyncClient, clock: FrozenClock,
                                           revision: Revision) -> None:
    """A 535 authentication failure is permanent and sends nothing."""
    handler, port = relay
    with pytest.raises(PermanentError) as caught:
        await make_smtp(port, http, clock, username="press", password="wrong").publish(revision)
    assert caught.value.status == 535 and handler.messages == []


def test_options_are_strict() -> None:
    """Options reject unknown keys, an empty list, both TLS modes at once, and a user without password."""
    base: dict[str, Any] = {"host": "mail.example", "sender": "press@example.org", "to": ["a@example.org"]}
    assert Smtp.Options(**base).port == 25 and Smtp.Options(**base).subject_prefix == "[新闻通稿] "
    bad_options: list[dict[str, Any]] = [{"sla": "1d"}, {"to": []}, {"starttls": True, "use_tls": True},
                                         {"username": "press"}]
    for bad in bad_options:
        with pytest.raises(ValidationError):
            Smtp.Options(**{**base, **bad})
    assert adapter_class("smtp") is Smtp
    assert isinstance(Receipt(remote_id="<x@y>"), Receipt)
