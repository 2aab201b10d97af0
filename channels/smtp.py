"""The `smtp` adapter: press releases by e-mail to the local paper, TV and radio.

One message per revision to a configured list: the Markdown body as plain text, an HTML
alternative (markdown-it-py, sanitized with nh3), and the item's attachments. The Message-ID is
derived from the item id and revision, so a resend after a crash carries the same Message-ID and
recipients' mail clients (and the reporters) can recognise it as the same release. Corrections
go out as "更正：" with `References` to the original; retractions as "撤回：".

SMTP has no read-back: once the relay has accepted the message (250 after DATA) it is out of our
hands, and "live" means exactly that. Nor can a relay be asked what it accepted (`can_find` is
False): a send that may have reached the relay without its answer reaching us (a crash, a timeout or
a dropped connection after the data went out) is never repeated by the daemon; the delivery fails
with the Message-ID and what to check, and `publisher retry` sends it again (same Message-ID).
"""

from __future__ import annotations

import email.utils
import hashlib
import re
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import nh3
import structlog
from aiosmtplib.email import flatten_message
from pydantic import Field, SecretStr, model_validator

from channels.base import Channel, ChannelOptions, PermanentError, Receipt, TransientError
from channels.render import render_html
from publisher.model import Revision

log = structlog.get_logger()

DEFAULT_TIMEOUT = 30.0
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._-]")


class Smtp(Channel):
    """Press releases by e-mail; `publish` returns Receipt(remote_id=<Message-ID>)."""

    type_name = "smtp"
    can_find = False  # no relay can be asked what it accepted

    class Options(ChannelOptions):
        host: str
        port: int = 25
        starttls: bool = False
        use_tls: bool = False
        username: str | None = None
        password: SecretStr | None = None
        sender: str = Field(description="the From header, e.g. 市安监局新闻办 <press@bureau.example>")
        to: list[str] = Field(min_length=1)
        subject_prefix: str = "[新闻通稿] "

        @model_validator(mode="after")
        def _one_tls_mode(self) -> Smtp.Options:
            if self.starttls and self.use_tls:
                raise ValueError("choose one of starttls (upgrade on port 25/587) and use_tls (implicit TLS, port 465)")
            if (self.username is None) != (self.password is None):
                raise ValueError("username and password go together: set both to log in, or neither")
            return self

    options: Options

    async def publish(self, rev: Revision) -> Receipt:
        msg = self._message(rev, subject=rev.title, intro=None)
        refused = await self._send(msg)
        return self._receipt(rev, msg, refused, references=[])

    async def update(self, rev: Revision, receipt: Receipt) -> Receipt:
        chain = [*receipt.extra.get("references", []), receipt.remote_id]
        intro = "更正说明：本稿更正此前发送的同题新闻通稿，请以本稿为准；如已刊发，请按本稿更正。"
        msg = self._message(rev, subject="更正：" + rev.title, intro=intro, references=chain)
        refused = await self._send(msg)
        return self._receipt(rev, msg, refused, references=chain)

    async def retract(self, receipt: Receipt) -> None:
        title = receipt.extra.get("title", "")
        chain = [*receipt.extra.get("references", []), receipt.remote_id]
        msg = self._envelope(subject="撤回：" + (title or "新闻通稿"), message_id=_retraction_id(receipt.remote_id),
                             references=chain)
        text = (f"各新闻单位：\n\n本局此前发送的新闻通稿《{title}》已撤回，请勿刊发；"
                "如已刊发，请及时删除或撤下。\n\n特此通知。\n")
        msg.set_content(text, cte="base64")
        msg.add_alternative(_html(title, text), subtype="html", cte="base64")
        await self._send(msg)

    async def find(self, rev: Revision) -> Receipt | None:
        # SMTP offers no way to ask a relay, let alone the recipients' mailboxes, what was delivered
        # (can_find is False). The dispatcher therefore never reconciles a press row left `sending` by
        # a crash through this call: it fails it for a person to check. It asks here only before a
        # repeat that follows a failure in which nothing reached the relay (a TransientError from
        # `_send`) or a person's `publisher retry`; then there is nothing to find.
        return None

    def lookup_hint(self, rev: Revision) -> str:
        return f"Message-ID {self._message_id(rev)}: look for it in the relay's log"

    async def verify(self, receipt: Receipt) -> bool:
        # A receipt exists only once the relay accepted the message (250 after DATA); delivery to
        # the mailboxes happens later and out of sight, so "accepted by the relay" is all SMTP can tell.
        return True

    # --- rendering ----------------------------------------------------------------------------

    def _message(self, rev: Revision, *, subject: str, intro: str | None,
                 references: list[str] | None = None) -> EmailMessage:
        msg = self._envelope(subject=subject, message_id=self._message_id(rev), references=references or [])
        text = rev.body.strip() + "\n"
        if intro:
            text = f"{intro}\n\n{text}"
        if rev.link:
            text += f"\n原文链接：{rev.link}\n"
        msg.set_content(f"{rev.title}\n\n{text}", cte="base64")
        msg.add_alternative(_html(rev.title, text), subtype="html", cte="base64")
        for att in rev.attachments:
            try:
                data = att.path.read_bytes()
            except OSError as exc:
                raise PermanentError(f"attachment {att.name} of {rev.item_id} cannot be read ({exc}); "
                                     "re-submit the item with the file beside it") from exc
            maintype, _, subtype = att.content_type.partition("/")
            msg.add_attachment(data, maintype=maintype or "application", subtype=subtype or "octet-stream",
                               filename=att.name)
        return msg

    def _envelope(self, *, subject: str, message_id: str, references: list[str]) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.options.sender
        # The list is personal data of reporters at competing outlets: recipients go in the envelope only.
        msg["To"] = "undisclosed-recipients:;"
        msg["Subject"] = self.options.subject_prefix + subject
        msg["Date"] = email.utils.format_datetime(self.clock.now())
        msg["Message-ID"] = message_id
        if references:
            msg["In-Reply-To"] = references[-1]
            msg["References"] = " ".join(references)
        return msg

    def _message_id(self, rev: Revision) -> str:
        left = _UNSAFE_ID.sub("", rev.item_id)
        if left != rev.item_id or not left:  # keep distinct ids distinct after dropping unsafe characters
            left = f"{left}.{hashlib.sha256(rev.item_id.encode()).hexdigest()[:12]}".lstrip(".")
        return f"<{left}.r{rev.revision}.publisher@{self._domain()}>"

    def _domain(self) -> str:
        address = email.utils.parseaddr(self.options.sender)[1]
        return address.rpartition("@")[2] or self.options.host

    def _receipt(self, rev: Revision, msg: EmailMessage, refused: dict[str, str],
                 references: list[str]) -> Receipt:
        extra: dict[str, Any] = {"title": rev.title, "references": references}
        if refused:
            extra["refused"] = refused
        return Receipt(remote_id=str(msg["Message-ID"]), extra=extra)

    # --- the wire -----------------------------------------------------------------------------

    async def _send(self, msg: EmailMessage) -> dict[str, str]:
        """One attempt; returns the recipients the relay refused while it accepted the others. A failure
        before the message's data went out is a TransientError (nothing was accepted: a retry is safe);
        silence or a dropped connection after it is a PermanentError, because the relay may hold the
        message and a retry could send it twice: a person checks and retries (`publisher retry`)."""
        opts = self.options
        envelope_from = Address(addr_spec=email.utils.parseaddr(opts.sender)[1]).addr_spec
        client = aiosmtplib.SMTP(hostname=opts.host, port=opts.port, use_tls=opts.use_tls, start_tls=opts.starttls,
                                 username=opts.username,
                                 password=opts.password.get_secret_value() if opts.password else None,
                                 timeout=self.http.timeout.read or DEFAULT_TIMEOUT)
        data_sent = False
        try:
            async with client:
                await client.mail(envelope_from)
                errors: dict[str, aiosmtplib.SMTPRecipientRefused] = {}
                for rcpt in opts.to:
                    try:
                        await client.rcpt(rcpt)
                    except aiosmtplib.SMTPRecipientRefused as exc:
                        errors[rcpt] = exc
                if len(errors) == len(opts.to):
                    raise aiosmtplib.SMTPRecipientsRefused(list(errors.values()))
                data_sent = True
                reply = (await client.data(flatten_message(msg))).message
        except aiosmtplib.SMTPRecipientsRefused as exc:
            remote = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            codes = [r.code for r in exc.recipients]
            if any(400 <= c < 500 for c in codes):
                raise TransientError(f"{self.name}: the relay deferred every recipient; will retry",
                                     status=min(codes), remote=remote) from exc
            raise PermanentError(f"{self.name}: the relay refused every recipient; check the `to` list",
                                 status=max(codes), remote=remote) from exc
        except aiosmtplib.SMTPResponseException as exc:
            remote = f"{exc.code} {exc.message}"
            if 400 <= exc.code < 500:
                raise TransientError(f"{self.name}: the relay deferred the message ({type(exc).__name__})",
                                     status=exc.code, remote=remote) from exc
            raise PermanentError(f"{self.name}: the relay refused the message ({type(exc).__name__}); "
                                 "check the sender, credentials and message size", status=exc.code,
                                 remote=remote) from exc
        except aiosmtplib.SMTPNotSupported as exc:
            raise PermanentError(f"{self.name}: the relay lacks a feature the config asks for: {exc}; "
                                 "check starttls/use_tls/username") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            if data_sent:
                raise PermanentError(
                    f"{self.name}: the message {msg['Message-ID']} went to the relay, which gave no answer "
                    f"({type(exc).__name__}: {exc}); it may have been accepted. Look it up in the relay's log "
                    "or ask a recipient; if it did not arrive, `publisher retry` sends it again with the same "
                    "Message-ID") from exc
            raise TransientError(f"{self.name}: cannot reach the relay {opts.host}:{opts.port}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        refused = {rcpt: f"{r.code} {r.message}" for rcpt, r in errors.items()}
        log.info("smtp.sent", channel=self.name, message_id=str(msg["Message-ID"]),
                 recipients=len(opts.to) - len(refused), refused=len(refused), reply=reply)
        if refused:
            # The others already have it: a retry would send them a duplicate, so report, don't raise.
            log.warning("smtp.recipients_refused", channel=self.name, refused=refused)
        return refused


def _retraction_id(original: str) -> str:
    left, _, domain = original.strip("<>").rpartition("@")
    return f"<{left}.retract@{domain}>"


def _html(title: str, text_md: str) -> str:
    body = render_html(text_md)
    return (f'<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8"><title>{nh3.clean_text(title)}'
            f"</title></head>\n<body><h1>{nh3.clean_text(title)}</h1>\n{body}</body></html>\n")
