"""Alerts: one message per new condition, no repeats until it recovers, to a real webhook and SMTP server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from aiosmtpd.controller import Controller
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from publisher.clock import FrozenClock
from publisher.lag.alerts import Alerter
from publisher.model import DeliveryState, RevisionState
from publisher.store.db import Store
from publisher.store.schema import deliveries
from tests.test_lag import T0, World, make_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """A loopback HTTP server that records each webhook POST; `fail_next` answers 500 that many times."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.fail_next = 0

        async def hook(request: Request) -> JSONResponse:
            if self.fail_next:
                self.fail_next -= 1
                return JSONResponse({"error": "busy"}, status_code=500)
            self.posts.append(await request.json())
            return JSONResponse({"ok": True})

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/hook", hook, methods=["POST"])]),
                                                    host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def world(tmp_path: Path, receiver: Receiver) -> Iterator[World]:
    config = make_config(tmp_path, alerts={"webhook": receiver.url})
    store = Store.open(config.store_url)
    yield World(config=config, store=store, clock=FrozenClock(T0))
    store.close()


def _alerter(world: World) -> Alerter:
    return Alerter(store=world.store, config=world.config, clock=world.clock)


def _fresh_everywhere(world: World) -> None:
    """Every channel and category went live just now, so only the conditions a test makes are open."""
    for name in world.config.channels:
        for key, cat in world.config.categories.items():
            if name in cat.channels:
                world.delivery(name, category=key, state=DeliveryState.LIVE, live_at=world.clock.now(), due_at=world.clock.now())


async def test_one_alert_when_a_delivery_turns_late_and_no_repeat(world: World, receiver: Receiver) -> None:
    """A delivery past its SLA makes one webhook message; later checks stay quiet while it stays late."""
    _fresh_everywhere(world)
    did = world.delivery("bureau_site", state=DeliveryState.RETRYING, error="503 Service Unavailable")
    alerter = _alerter(world)
    world.clock.set(T0 + timedelta(minutes=15))
    assert await alerter.check() == []  # exactly at the SLA: not late yet
    world.clock.set(T0 + timedelta(minutes=16))
    sent = await alerter.check()
    assert [e.key for e in sent] == [f"late:{did}"]
    assert len(receiver.posts) == 1
    event = receiver.posts[0]["events"][0]
    assert event["kind"] == "late" and event["channel_name"] == "市安监局门户网站"
    assert event["detail"]["last_error"] == "503 Service Unavailable"
    world.clock.set(T0 + timedelta(minutes=30))
    assert await alerter.check() == [] and len(receiver.posts) == 1


async def test_alert_again_only_after_recovery(world: World, receiver: Receiver) -> None:
    """Once the delivery went live the condition clears, and its recovery is announced once; if it is late
    again it alerts again."""
    _fresh_everywhere(world)
    did = world.delivery("bureau_site", state=DeliveryState.FAILED, error="boom")
    alerter = _alerter(world)
    world.clock.set(T0 + timedelta(minutes=20))
    assert len(await alerter.check()) == 1
    with world.store.tx() as conn:  # retried and went live: recovered
        conn.execute(deliveries.update().where(deliveries.c.id == did)
                     .values(state=DeliveryState.LIVE, live_at=world.clock.now()))
    receiver.fail_next = 1  # the recovery is announced at the next check when the webhook is down
    assert await alerter.check() == []
    assert [(e.key, e.status) for e in await alerter.check()] == [(f"late:{did}", "recovered")]
    recovery = receiver.posts[1]
    assert recovery["text"].startswith("[发布延迟] 1 条告警已恢复") and "已恢复：市安监局门户网站" in recovery["text"]
    assert recovery["events"][0]["status"] == "recovered" and recovery["events"][0]["kind"] == "late"
    assert await alerter.check() == []  # once
    with world.store.tx() as conn:  # an operator put it back in the queue, and it stalled again
        conn.execute(deliveries.update().where(deliveries.c.id == did).values(state=DeliveryState.RETRYING, live_at=None))
    assert [e.key for e in await alerter.check()] == [f"late:{did}"]
    assert len(receiver.posts) == 3


async def test_a_condition_never_announced_recovers_silently(world: World, receiver: Receiver) -> None:
    """A late delivery that went live before its alert could be sent (the webhook was down) makes no message."""
    _fresh_everywhere(world)
    did = world.delivery("bureau_site", state=DeliveryState.FAILED, error="boom")
    world.clock.set(T0 + timedelta(minutes=20))
    receiver.fail_next = 1
    alerter = _alerter(world)
    assert await alerter.check() == []
    with world.store.tx() as conn:
        conn.execute(deliveries.update().where(deliveries.c.id == did)
                     .values(state=DeliveryState.LIVE, live_at=world.clock.now()))
    assert await alerter.check() == [] and receiver.posts == []


async def test_a_dead_channel_makes_one_message_not_a_storm(world: World, receiver: Receiver) -> None:
    """Thirty deliveries turning late together go out as one webhook POST listing all thirty."""
    _fresh_everywhere(world)
    for _ in range(30):
        world.delivery("city_portal", state=DeliveryState.RETRYING, error="connect timeout")
    world.clock.set(T0 + timedelta(days=1, minutes=1))
    _fresh_everywhere(world)
    sent = await _alerter(world).check()
    assert len(sent) == 30 and len(receiver.posts) == 1
    assert len(receiver.posts[0]["events"]) == 30
    assert "另有 10 条" in receiver.posts[0]["text"]  # the text shows 20 lines and says how many more


async def test_failed_webhook_is_retried_at_the_next_check(world: World, receiver: Receiver) -> None:
    """When the webhook answers 500, the events stay unannounced and the next check sends them once."""
    _fresh_everywhere(world)
    world.delivery("bureau_site", state=DeliveryState.FAILED, error="boom")
    world.clock.set(T0 + timedelta(minutes=20))
    receiver.fail_next = 1
    alerter = _alerter(world)
    assert await alerter.check() == [] and receiver.posts == []
    assert len(await alerter.check()) == 1 and len(receiver.posts) == 1
    assert await alerter.check() == []


async def test_freshness_warning_then_breach_are_two_events(tmp_path: Path, receiver: Receiver) -> None:
    """The microblog's 14-day freshness: a warning at 11 days, then a breach at 14, each announced once."""
    config = make_config(tmp_path, alerts={"webhook": receiver.url})
    world = World(config=config, store=Store.open(config.store_url), clock=FrozenClock(T0))
    _fresh_everywhere(world)
    alerter = _alerter(world)
    for key in ("notices", "agency", "committee", "laws", "guides", "accidents"):  # long thresholds stay fresh
        for ch in ("bureau_site", "city_portal", "provincial_feed", "microblog"):
            if ch in config.categories[key].channels:
                world.delivery(ch, category=key, state=DeliveryState.LIVE, live_at=T0 + timedelta(days=13), due_at=T0)
    world.clock.set(T0 + timedelta(days=11))
    kinds = {(e.kind, e.status, e.channel) for e in await alerter.check()}
    assert ("freshness", "warning", "microblog") in kinds
    assert await alerter.check() == []
    world.clock.set(T0 + timedelta(days=14))
    statuses = {e.status for e in await alerter.check() if e.channel == "microblog"}
    assert statuses == {"breached"}  # a warning that became a breach did not "recover"


async def test_deadline_alert_by_email(tmp_path: Path) -> None:
    """An item at risk of its legal deadline is announced by e-mail to the configured address."""
    mailbox = Mailbox()
    port = _free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        config = make_config(tmp_path, alerts={"email": {"to": ["admin@bureau.example"], "smtp": f"127.0.0.1:{port}",
                                                         "sender": "publisher@bureau.example"}})
        world = World(config=config, store=Store.open(config.store_url), clock=FrozenClock(T0))
        world.clock.set(datetime(2015, 3, 9, 2, 0, tzinfo=T0.tzinfo))
        _fresh_everywhere(world)
        world.item(state=RevisionState.REVIEW, doc_date=date(2015, 2, 10), item_id="2015-notices-0042",
                   title="关于节后复工的通知")
        sent = await _alerter(world).check()
        assert [e.kind for e in sent] == ["deadline"]
        assert len(mailbox.messages) == 1
        mail = message_from_bytes(mailbox.messages[0])
        assert str(make_header(decode_header(mail["Subject"]))) == "[发布延迟] 1 条新告警"
        body = mail.get_payload(decode=True).decode("utf-8")
        assert "2015-notices-0042" in body and "2015-03-13" in body
    finally:
        controller.stop()
