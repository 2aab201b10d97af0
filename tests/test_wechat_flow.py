"""The WeChat channel through the dispatcher and the store: live with the article's URL, a refusal failed with the
platform's reason in the lag report, a live article taken down turned failed with an alert, a crash after each
step reconciled without a second article, and edits as a manual task or a republish."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from channels.wechat import Wechat
from publisher.app.daemon import Daemon
from publisher.clock import FrozenClock
from publisher.dispatch.livecheck import LiveCheck
from publisher.lag.alerts import conditions
from publisher.lag.report import build_report
from publisher.model import DeliveryState
from publisher.sandbox import SandboxServer
from tests.harness import drop, load, settings, write_config

S = DeliveryState


async def _daemon(root: Path, sandbox: SandboxServer, **overrides: Any) -> Daemon:
    """A daemon on the shipped config whose WeChat channel takes items on its own (no wait for the site's link)."""
    cfg = load(write_config(root, sandbox, **{"channels.wechat.link_from": None, **overrides}))
    settings(sandbox, "wechat", publish_seconds=0)
    return Daemon(cfg, clock=FrozenClock(datetime(2015, 3, 18, 9, 0, tzinfo=UTC)))


async def _item(daemon: Daemon, n: int = 1, *, title: str = "全市安全生产大检查启动", body: str = "检查自即日起开展。",
                revision_of: str | None = None) -> str:
    item_id = revision_of or f"wx-{n}"
    drop(daemon.config.queue_dir / "inbox", f"{item_id}-{title[-2:]}.md",
         {"id": item_id, "title": title, "category": "updates", "channels": ["wechat"]}, body)
    await daemon.intake.scan()
    return item_id


def _wechat(sandbox: SandboxServer) -> dict[str, Any]:
    return sandbox.services["wechat"].received()


def _calls(sandbox: SandboxServer, path: str) -> int:
    return sum(1 for r in sandbox.services["wechat"].requests if r["path"].endswith(path))


async def test_a_published_article_goes_live_with_its_url_stored(tmp_path: Path, sandbox: SandboxServer) -> None:
    """Sent holds the publish_id; the read-back that sees publish_status 0 makes the row live with the article's
    URL, on the row, the placement and in the audit log."""
    daemon = await _daemon(tmp_path, sandbox)
    try:
        item = await _item(daemon)
        await daemon.dispatcher.run_once()
        (row,) = daemon.store.deliveries_of(item)
        [article] = _wechat(sandbox)["articles"]
        url = article["news_item"][0]["url"]
        assert (row.state, row.url, row.remote_id) == (S.LIVE, url, _wechat(sandbox)["jobs"][0]["publish_id"])
        with daemon.store.read() as conn:
            placed = daemon.store.placement(conn, item, "wechat")
        assert placed is not None and placed.url == url and placed.extra["article_id"] == article["article_id"]
        assert [e.detail["url"] for e in daemon.store.audit_log(item) if e.action == "live"] == [url]
    finally:
        await daemon.aclose()


async def test_a_review_refusal_fails_the_row_with_the_reason_in_the_lag_report(tmp_path: Path,
                                                                                sandbox: SandboxServer) -> None:
    """publish_status 4 fails the delivery at its read-back; the lag report lists it late with 平台审核不通过."""
    daemon = await _daemon(tmp_path, sandbox)
    settings(sandbox, "wechat", publish_outcome=4)
    try:
        item = await _item(daemon)
        await daemon.dispatcher.run_once()
        (row,) = daemon.store.deliveries_of(item)
        assert row.state == S.FAILED and row.last_error is not None and "平台审核不通过" in row.last_error
        report = build_report(daemon.store, daemon.config, daemon.clock.now() + timedelta(days=2), channel="wechat")
        [late] = report.channels[0].late
        assert late.item_id == item and late.last_error is not None and "platform's review refused it" in late.last_error
    finally:
        await daemon.aclose()


async def test_a_live_article_deleted_on_the_account_turns_failed_with_an_alert(tmp_path: Path,
                                                                                sandbox: SandboxServer) -> None:
    """The periodic read-back of live WeChat rows finds the article deleted (5): the row turns failed, no longer
    counted live, the audit log says so, and once past its SLA the alerter has a condition for it. A row still
    live is looked at again only after six hours."""
    daemon = await _daemon(tmp_path, sandbox)
    check = LiveCheck(store=daemon.store, channels=daemon.channels, clock=daemon.clock)
    try:
        kept, lost = await _item(daemon, 1), await _item(daemon, 2, title="第二篇：隐患排查通报")
        await daemon.dispatcher.run_once()
        assert await check.check() == 0
        assert {r.state for i in (kept, lost) for r in daemon.store.deliveries_of(i)} == {S.LIVE}
        (row,) = daemon.store.deliveries_of(lost)
        channel = daemon.channels["wechat"]
        assert isinstance(channel, Wechat)
        with daemon.store.read() as conn:
            placed = daemon.store.placement(conn, lost, "wechat")
        assert placed is not None
        await channel.call("POST", "cgi-bin/freepublish/delete", what="delete",  # a person, in 公众平台
                           json={"article_id": placed.extra["article_id"], "index": 0})
        assert await check.check() == 0  # looked at a moment ago: not due yet
        assert isinstance(daemon.clock, FrozenClock)
        daemon.clock.advance(timedelta(hours=6, minutes=1))
        assert await check.check() == 1
        (row,) = daemon.store.deliveries_of(lost)
        assert row.state == S.FAILED and row.live_at is None and row.last_error and "成功后用户删除" in row.last_error
        assert daemon.store.deliveries_of(kept)[0].state == S.LIVE
        assert any(e.action == "live_lost" for e in daemon.store.audit_log(lost))
        daemon.clock.advance(timedelta(days=1))
        found = conditions(build_report(daemon.store, daemon.config, daemon.clock.now(), late_limit=None), "zh-CN")
        assert f"late:{row.id}" in found and "成功后用户删除" in found[f"late:{row.id}"].text
    finally:
        await daemon.aclose()


async def test_a_crash_after_draft_add_or_after_submit_is_reconciled_without_a_second_article(
        tmp_path: Path, sandbox: SandboxServer) -> None:
    """Rows left sending by a crash after draft/add (an orphan draft) and after freepublish/submit are reconciled
    through find at start-up: the orphan draft is submitted, the published one is taken as it is; one article each,
    one draft/add each."""
    daemon = await _daemon(tmp_path, sandbox)
    try:
        orphan, submitted = await _item(daemon, 1), await _item(daemon, 2, title="第二篇：隐患排查通报")
        channel = daemon.channels["wechat"]
        assert isinstance(channel, Wechat)
        revs = {}
        for item in (orphan, submitted):
            (row,) = daemon.store.deliveries_of(item)
            revs[item] = daemon.dispatcher.books.revision(row)
        article = await channel.article(revs[orphan])  # the first process: a draft, then the crash
        await channel.call("POST", "cgi-bin/draft/add", what="add", json={"articles": [article]})
        await channel.publish(revs[submitted])  # the first process: submitted, then the crash
        daemon.store.claim("wechat", daemon.dispatcher.owner, daemon.clock.now(), 10, timedelta(minutes=5))
        assert {r.state for i in revs for r in daemon.store.deliveries_of(i)} == {S.SENDING}
        assert await daemon.dispatcher.recover() == 2
        await daemon.dispatcher.run_once()
        assert {r.state for i in revs for r in daemon.store.deliveries_of(i)} == {S.LIVE}
        titles = sorted(a["news_item"][0]["title"] for a in _wechat(sandbox)["articles"])
        assert titles == sorted(r.title for r in revs.values() if r is not None)
        assert _calls(sandbox, "draft/add") == 2 and _calls(sandbox, "freepublish/submit") == 2
        assert _wechat(sandbox)["drafts"] == []
    finally:
        await daemon.aclose()


async def test_an_edit_is_a_manual_task_by_default_and_a_republish_when_configured(
        tmp_path: Path, sandbox: SandboxServer) -> None:
    """A new revision of a live article becomes a manual task carrying its link; with on_edit: republish the old
    article is deleted, the new one goes live at a new URL, and the audit log names the URL it replaced."""
    for on_edit in ("manual", "republish"):
        sandbox.services["wechat"].reset()
        daemon = await _daemon(tmp_path / on_edit, sandbox, **{"channels.wechat.on_edit": on_edit})
        try:
            item = await _item(daemon)
            await daemon.dispatcher.run_once()
            first_url = daemon.store.deliveries_of(item)[0].url
            await _item(daemon, title="全市安全生产大检查启动（更正）", body="检查自三月二十日起开展。", revision_of=item)
            await daemon.dispatcher.run_once()
            newest = daemon.store.deliveries_of(item)[-1]
            if on_edit == "manual":
                assert newest.state == S.MANUAL and newest.last_error and first_url in newest.last_error
                assert "三月二十日" in newest.last_error and len(_wechat(sandbox)["articles"]) == 1
            else:
                assert newest.state == S.LIVE and newest.url != first_url
                [article] = _wechat(sandbox)["articles"]
                assert article["news_item"][0]["title"].endswith("（更正）")
                replaced = [e.detail.get("replaced") for e in daemon.store.audit_log(item) if e.action == "live"]
                assert first_url in replaced
        finally:
            await daemon.aclose()
