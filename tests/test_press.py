"""The press channel in daily use: the shipped config routes accident reports and notices to `press`, the
sandbox's press relay (SMTP on loopback) receives each once, and a send the daemon cannot account for is
never repeated without a person's word."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from publisher.app.daemon import Daemon
from publisher.clock import FrozenClock
from publisher.dispatch.outbox import revision_from_row
from publisher.lag.json_form import to_json
from publisher.lag.report import build_report
from publisher.review.accounts import Account
from publisher.sandbox import SandboxServer
from tests.harness import drop, faults, free_port, load, received, write_config
from tests.test_pipeline import signers

CHAINS = {"notices": ["section_chief", "deputy_director"],
          "accidents": ["section_chief", "deputy_director", "legal", "director"], "updates": []}


async def _daemon(root: Path, sandbox: SandboxServer, clock: FrozenClock, **overrides: Any) -> Daemon:
    return Daemon(load(write_config(root, sandbox, web_port=free_port(), **overrides)), clock=clock)


async def _submit(daemon: Daemon, who: dict[str, Account], item_id: str, category: str, title: str,
                  body: str = "正文。") -> None:
    drop(daemon.intake.inbox, f"{item_id}.md", {"id": item_id, "title": title, "category": category}, body)
    await daemon.intake.scan()
    _sign(daemon, who, item_id, category)


def _sign(daemon: Daemon, who: dict[str, Account], item_id: str, category: str) -> None:
    """Each step of the category's chain, signed by that role's reviewer account."""
    for role in CHAINS[category]:
        daemon.review.approve(item_id, who[role], role=role)


def _press_state(daemon: Daemon, item_id: str) -> Any:
    return next(d for d in daemon.store.deliveries_of(item_id) if d.channel == "press" and d.state != "superseded")


@pytest.fixture
def clock() -> FrozenClock:
    """Today, held still (conftest's clock stands in 2015; these items carry no date of their own)."""
    return FrozenClock(datetime.now(UTC))


async def test_the_press_relay_receives_each_routed_item_once(tmp_path: Path, sandbox: SandboxServer,
                                                              clock: FrozenClock) -> None:
    """A notice and an accident report reach the relay once each (plain text and HTML, Message-ID from the item
    and revision, recipients only in the envelope); a news-free update does not; a second run sends nothing
    again; a correction is one more message that refers to the first; the lag report counts them."""
    daemon = await _daemon(tmp_path, sandbox, clock)
    who = signers(daemon)
    try:
        await _submit(daemon, who, "press-notice-1", "notices", "关于开展安全生产大检查的通知")
        await _submit(daemon, who, "press-accident-1", "accidents", "关于某企业较大事故的通报")
        await _submit(daemon, who, "press-update-1", "updates", "某区安全生产动态")
        await daemon.run_once()
        await daemon.run_once()
        messages = received(sandbox, "press")
        assert sorted(m["message_id"] for m in messages) == [
            "<press-accident-1.r1.publisher@bureau.example>", "<press-notice-1.r1.publisher@bureau.example>"]
        for m in messages:
            assert m["has_html"] and m["rcpt_tos"] == daemon.config.channels["press"].options.to  # type: ignore[attr-defined]
            assert m["to_header"] == "undisclosed-recipients:;" and "正文。" in m["text"]
        assert {_press_state(daemon, i).state for i in ("press-notice-1", "press-accident-1")} == {"live"}
        assert not [d for d in daemon.store.deliveries_of("press-update-1") if d.channel == "press"]

        drop(daemon.intake.inbox, "press-notice-1-v2.md",
             {"id": "press-notice-1", "title": "关于开展安全生产大检查的通知", "category": "notices"}, "更正后的正文。")
        await daemon.intake.scan()
        _sign(daemon, who, "press-notice-1", "notices")
        await daemon.run_once()
        messages = received(sandbox, "press")
        assert len(messages) == 3
        correction = messages[-1]
        assert correction["message_id"] == "<press-notice-1.r2.publisher@bureau.example>"
        assert correction["subject"].endswith("更正：关于开展安全生产大检查的通知")
        assert correction["references"] == "<press-notice-1.r1.publisher@bureau.example>"

        report = to_json(build_report(daemon.store, daemon.config, clock.now()))
        press = next(ch for ch in report["channels"] if ch["name"] == "press")
        assert press["display_name"] == "新闻通稿" and press["window"]["deliveries"] == 3
        assert press["last_live_at"] is not None
    finally:
        await daemon.aclose()


async def test_a_send_cut_off_by_a_crash_is_failed_for_a_person_not_sent_again(tmp_path: Path, sandbox: SandboxServer,
                                                                               clock: FrozenClock) -> None:
    """The relay took a release, then the daemon died before it stored the outcome (the row is still `sending`):
    the next start does not send it again (nothing can ask a relay what it took) but fails the row, saying what
    to check; `publisher retry` then sends it once more, under the same Message-ID."""
    daemon = await _daemon(tmp_path, sandbox, clock)
    who = signers(daemon)
    try:
        await _submit(daemon, who, "press-crash-1", "notices", "关于做好节前安全生产工作的通知")
        rows = daemon.store.claim("press", daemon.dispatcher.owner, clock.now(), 1, timedelta(minutes=5))
        assert [r.item_id for r in rows] == ["press-crash-1"]
        with daemon.store.read() as conn:
            rev = revision_from_row(daemon.store.revision_by_id(conn, rows[0].revision_id), daemon.config)
        await daemon.channels["press"].publish(rev)  # DATA accepted; then the process "died"
    finally:
        await daemon.aclose()

    daemon = await _daemon(tmp_path, sandbox, clock)
    try:
        await daemon.run_once()
        assert len(received(sandbox, "press")) == 1  # not sent twice
        row = _press_state(daemon, "press-crash-1")
        assert row.state == "failed" and "cannot say if it arrived" in row.last_error
        assert "Message-ID <press-crash-1.r1.publisher@bureau.example>: look for it in the relay's log" in row.last_error
        assert "publisher retry press-crash-1 --channel press" in row.last_error
        assert daemon.dispatcher.retry("press-crash-1", "press", by="管理员") == 1
        await daemon.run_once()
        ids = [m["message_id"] for m in received(sandbox, "press")]
        assert ids == ["<press-crash-1.r1.publisher@bureau.example>"] * 2
        assert _press_state(daemon, "press-crash-1").state == "live"
    finally:
        await daemon.aclose()


async def test_a_relay_silent_after_the_data_is_not_sent_to_again(tmp_path: Path, sandbox: SandboxServer,
                                                                  clock: FrozenClock) -> None:
    """When the relay holds the message but its answer never comes, the send may have succeeded: the row fails
    at once with the Message-ID and what to check, and later runs do not send it again by themselves."""
    daemon = await _daemon(tmp_path, sandbox, clock, **{"channels.press.timeout": "1s"})
    who = signers(daemon)
    try:
        faults(sandbox, "press", black_hole=True)
        await _submit(daemon, who, "press-silent-1", "notices", "关于加强汛期安全防范的通知")
        await daemon.run_once()
        row = _press_state(daemon, "press-silent-1")
        assert row.state == "failed" and "<press-silent-1.r1.publisher@bureau.example>" in row.last_error
        assert "may have been accepted" in row.last_error
        faults(sandbox, "press", black_hole=False)
        clock.advance(timedelta(hours=1))
        await daemon.run_once()
        assert len(received(sandbox, "press")) == 1
    finally:
        await daemon.aclose()
