"""Reviewers are told: one digest per role per look (never one message per item), by real SMTP (aiosmtpd)
and a real loopback webhook; escalation near the legal deadline to the next role up or the configured
addresses; both in the audit log, and nothing repeated."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date, datetime, time
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller

from publisher.app.notify import ReviewNotifier
from publisher.clock import CHINA
from publisher.lag.workdays import add_workdays
from publisher.sandbox import SandboxServer
from tests.harness import free_port
from tests.test_accounts import World
from tests.test_alerts import Mailbox, Receiver


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, str]]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield box, f"127.0.0.1:{controller.port}"
    finally:
        controller.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def subjects(box: Mailbox) -> list[str]:
    return [str(make_header(decode_header(message_from_bytes(m)["Subject"]))) for m in box.messages]


async def check(world: World) -> list[object]:
    async with httpx.AsyncClient() as http:
        notifier = ReviewNotifier(store=world.store, config=world.config, clock=world.clock, review=world.review,
                                  accounts=world.accounts, http=http)
        return list(await notifier.check())


async def test_many_items_make_one_digest_per_role(tmp_path: Path, mailbox: tuple[Mailbox, str],
                                                   receiver: Receiver) -> None:
    box, smtp = mailbox
    world = World(tmp_path, notify={"smtp": smtp, "webhook": receiver.url, "escalate_working_days": 3})
    world.person("li", "section_chief", display="李科长")
    world.person("chen", "section_chief")
    world.person("wang", "legal")
    for n in range(30):
        world.drop(f"g-{n}", "guides", title=f"办事指南{n}")
    for n in range(5):
        world.drop(f"l-{n}", "laws", title=f"法规{n}")
    sent = await asyncio.wait_for(check(world), 30)
    assert len(sent) == 2 and len(box.messages) == 2 and len(receiver.posts) == 2
    by_role = {p["role"]: p for p in receiver.posts}
    assert by_role["section_chief"]["count"] == 30 and by_role["legal"]["count"] == 5
    assert by_role["section_chief"]["kind"] == "digest" and "办事指南29" in by_role["section_chief"]["text"]["content"]
    chief_mail = next(message_from_bytes(m) for m in box.messages if b"chen@" in m)
    assert chief_mail["To"] == "chen@bureau.example, li@bureau.example"
    assert any("科室负责人：30 条稿件等待您签批" in s for s in subjects(box))
    # a second look tells nobody again; a new item makes one digest of one item
    assert await check(world) == [] and len(box.messages) == 2
    world.drop("g-new", "guides")
    await check(world)
    assert len(receiver.posts) == 3 and receiver.posts[-1]["count"] == 1
    digests = [e for e in world.store.audit_log() if e.action == "review_digest"]
    assert len(digests) == 3 and digests[-1].detail["role"] in {"section_chief", "legal"}


async def test_a_failed_destination_is_tried_again(tmp_path: Path, receiver: Receiver) -> None:
    world = World(tmp_path, notify={"webhook": receiver.url})
    world.drop("g-1", "guides")
    receiver.fail_next = 1
    assert await check(world) == []
    assert [p["count"] for p in receiver.posts] == []
    assert len(await check(world)) == 1 and receiver.posts[0]["items"][0]["item_id"] == "g-1"


async def test_escalation_near_the_legal_deadline_goes_one_role_up(tmp_path: Path, mailbox: tuple[Mailbox, str]) -> None:
    """A notice still waiting for the section chief 2 working days before its deadline is escalated to the
    deputy directors; a law waiting for legal (the top of its chain) to the configured address. Once each."""
    box, smtp = mailbox
    world = World(tmp_path, notify={"smtp": smtp, "escalate_working_days": 3, "escalate_to": ["director@bureau.example"]})
    world.person("li", "section_chief")
    world.person("zhang", "deputy_director")
    world.person("wang", "legal")
    world.drop("n-1", "notices", title="关于节前检查的通知")  # doc_date 2015-03-18: 20 working days
    world.drop("l-1", "laws", title="某条例")
    await check(world)  # the two digests
    assert len(box.messages) == 2
    day = add_workdays(date(2015, 3, 18), 18)  # two working days left after this one
    world.clock.set(datetime.combine(day, time(10, 0), tzinfo=CHINA))
    sent = await check(world)
    assert sorted((m.kind, m.role) for m in sent) == [("escalation", "@escalate_to"), ("escalation", "deputy_director")]
    mails = {message_from_bytes(m)["To"]: m for m in box.messages[2:]}
    assert set(mails) == {"zhang@bureau.example", "director@bureau.example"}
    body = message_from_bytes(mails["zhang@bureau.example"]).get_payload(decode=True).decode()
    assert "n-1" in body and "剩余 2 个工作日" in body and "2 working day(s) left" in body
    assert await check(world) == []
    assert sum(e.action == "review_escalation" for e in world.store.audit_log()) == 2


async def test_the_daemon_tells_reviewers(tmp_path: Path, sandbox: SandboxServer, receiver: Receiver) -> None:
    """The notifier is a part of the running daemon: an item dropped in the queue reaches its role's digest."""
    from publisher.app.daemon import Daemon
    from tests.harness import drop, load, write_config

    config = load(write_config(tmp_path, sandbox, **{"review.notify": {"webhook": receiver.url, "every": "1s"}}))
    drop(tmp_path / "queue" / "inbox", "g.md", {"id": "g-1", "title": "办事指南", "category": "guides"})
    daemon = Daemon(config)
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop))
    try:
        for _ in range(600):
            if receiver.posts or running.done():
                break
            await asyncio.sleep(0.1)
        assert [(p["role"], p["items"][0]["item_id"]) for p in receiver.posts] == [("section_chief", "g-1")]
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)
