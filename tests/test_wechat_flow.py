"""The WeChat channel through the dispatcher and the store: live with the article's URL, a refusal failed with the
platform's reason in the lag report, a live article taken down turned failed and alerted at once, a crash at each
step resumed from its checkpoint without a second article, and edits as a manual task or a republish."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from channels.base import tracking
from channels.wechat import Wechat
from publisher.app.daemon import Daemon
from publisher.clock import FrozenClock
from publisher.dispatch.livecheck import LiveCheck
from publisher.lag.alerts import Alerter
from publisher.lag.report import build_report
from publisher.model import Delivery, DeliveryState, Revision
from publisher.sandbox import SandboxServer
from tests.harness import drop, load, settings, write_config
from tests.test_alerts import Receiver

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


async def test_a_live_article_deleted_on_the_account_is_alerted_at_once_and_recovers_when_live_again(
        tmp_path: Path, sandbox: SandboxServer) -> None:
    """The periodic read-back of live WeChat rows finds an article deleted on the account (5), well within the SLA:
    the row turns failed, no longer counted live, and the next alert check posts one `lost` event to the webhook
    naming the channel, the item, the platform's reason and the article's URL; it is not repeated, nor announced
    as late once the SLA has passed; a person's retry that makes the item live again posts its recovery. A row
    still live is looked at again only after six hours."""
    with Receiver() as receiver:
        daemon = await _daemon(tmp_path, sandbox, **{"alerts.webhook": receiver.url})
        check = LiveCheck(store=daemon.store, channels=daemon.channels, clock=daemon.clock)
        alerter = Alerter(store=daemon.store, config=daemon.config, clock=daemon.clock)
        clock = daemon.clock
        assert isinstance(clock, FrozenClock)
        try:
            kept, lost = await _item(daemon, 1), await _item(daemon, 2, title="第二篇：隐患排查通报")
            await daemon.dispatcher.run_once()
            assert await check.check() == 0 and await alerter.check() == []
            (row,) = daemon.store.deliveries_of(lost)
            url = row.url
            assert row.state == S.LIVE and url
            channel = daemon.channels["wechat"]
            assert isinstance(channel, Wechat)
            with daemon.store.read() as conn:
                placed = daemon.store.placement(conn, lost, "wechat")
            assert placed is not None
            await channel.call("POST", "cgi-bin/freepublish/delete", what="delete",  # a person, in 公众平台
                               json={"article_id": placed.extra["article_id"], "index": 0})
            assert await check.check() == 0  # looked at a moment ago: not due yet
            clock.advance(timedelta(hours=6, minutes=1))  # well within the channel's SLA of a day
            assert await check.check() == 1
            (row,) = daemon.store.deliveries_of(lost)
            assert row.state == S.FAILED and row.live_at is None and row.last_error and "成功后用户删除" in row.last_error
            assert daemon.store.deliveries_of(kept)[0].state == S.LIVE
            assert any(e.action == "live_lost" for e in daemon.store.audit_log(lost))
            await alerter.check()
            [post] = receiver.posts
            [event] = post["events"]
            assert (event["key"], event["kind"], event["channel"], event["item_id"]) == (
                f"lost:{row.id}", "lost", "wechat", lost)
            assert event["detail"]["url"] == url and event["detail"]["reason"].startswith("政务公众号: 成功后用户删除")
            assert all(words in event["text"] for words in ("政务公众号", lost, "成功后用户删除", url, "撤下"))
            clock.advance(timedelta(days=1))  # past the SLA: still the one alert, not a late one besides
            assert await alerter.check() == [] and len(receiver.posts) == 1
            daemon.dispatcher.retry(lost, "wechat", by="admin")  # a person publishes it again
            await daemon.dispatcher.run_once()
            (row,) = daemon.store.deliveries_of(lost)
            assert row.state == S.LIVE and row.url != url
            [recovered] = [e for e in await alerter.check() if e.status == "recovered"]
            assert recovered.key == f"lost:{row.id}" and len(receiver.posts) == 2
            assert receiver.posts[1]["events"][0]["text"].startswith("已恢复：")
        finally:
            await daemon.aclose()


def _finish_publishing(sandbox: SandboxServer) -> None:
    """Every publish job in progress on the stand-in reaches its outcome now (as if publish_seconds had passed)."""
    for job in sandbox.services["wechat"].store["jobs"].values():
        job["ready_at"] = 0.0


async def _crashed(daemon: Daemon, *items: str) -> tuple[Wechat, dict[str, Delivery], dict[str, Revision]]:
    """The first process: the items' rows claimed (`sending`), their sends to be cut short by the caller."""
    channel = daemon.channels["wechat"]
    assert isinstance(channel, Wechat)
    rows = {r.item_id: r for r in daemon.store.claim("wechat", daemon.dispatcher.owner, daemon.clock.now(), 10,
                                                      timedelta(minutes=5))}
    revs = {}
    for item in items:
        rev = daemon.dispatcher.books.revision(rows[item])
        assert rev is not None
        revs[item] = rev
    return channel, rows, revs


async def test_a_crash_at_each_step_of_a_long_publish_is_resumed_from_its_checkpoint_without_a_second_article(
        tmp_path: Path, sandbox: SandboxServer) -> None:
    """Three sends cut short by a crash while WeChat takes an hour to publish: after draft/add (the orphan draft is
    submitted), after freepublish/submit with its publish_id checkpointed (the job is followed by the read-back),
    and after the submit before that checkpoint (the draft is gone, nothing is published yet: the row waits as
    retrying, nothing is created). Once WeChat has published, all three go live, one article and one draft each."""
    daemon = await _daemon(tmp_path, sandbox)
    settings(sandbox, "wechat", publish_seconds=3600)
    clock = daemon.clock
    assert isinstance(clock, FrozenClock)
    try:
        orphan, tracked, untracked = (await _item(daemon, 1), await _item(daemon, 2, title="第二篇：隐患排查通报"),
                                      await _item(daemon, 3, title="第三篇：执法检查通报"))
        channel, rows, revs = await _crashed(daemon, orphan, tracked, untracked)
        with tracking(daemon.dispatcher.books.progress(rows[orphan])):
            body = await channel.call("POST", "cgi-bin/draft/add", what="add",
                                      json={"articles": [await channel.article(revs[orphan])]})
            channel.checkpoint(media_id=body["media_id"])  # then the crash
        with tracking(daemon.dispatcher.books.progress(rows[tracked])):
            await channel.publish(revs[tracked])  # then the crash, before the outcome is stored
        with tracking(daemon.dispatcher.books.progress(rows[untracked])):
            body = await channel.call("POST", "cgi-bin/draft/add", what="add",
                                      json={"articles": [await channel.article(revs[untracked])]})
            channel.checkpoint(media_id=body["media_id"])
        await channel.call("POST", "cgi-bin/freepublish/submit", what="submit",  # then the crash
                           json={"media_id": body["media_id"]})
        assert (daemon.store.deliveries_of(tracked)[0].progress or {}).get("publish_id")
        assert await daemon.dispatcher.recover() == 3
        await daemon.dispatcher.run_once()
        state = {i: daemon.store.deliveries_of(i)[0] for i in revs}
        assert (state[orphan].state, state[tracked].state, state[untracked].state) == (S.SENT, S.SENT, S.RETRYING)
        assert state[untracked].last_error and "still publishing" in state[untracked].last_error
        assert state[tracked].progress is None and state[untracked].progress is not None
        for _ in range(3):  # the row waiting for WeChat is asked about again and again: never created anew
            clock.advance(timedelta(minutes=10, seconds=1))
            await daemon.dispatcher.run_once()
        assert _wechat(sandbox)["articles"] == [] and _wechat(sandbox)["drafts"] == []
        assert _calls(sandbox, "draft/add") == 3 and _calls(sandbox, "freepublish/submit") == 3
        _finish_publishing(sandbox)  # WeChat is done, 40 minutes after the crash
        for _ in range(2):
            clock.advance(timedelta(minutes=10, seconds=1))
            await daemon.dispatcher.run_once()
        assert {r.state for i in revs for r in daemon.store.deliveries_of(i)} == {S.LIVE}
        titles = sorted(a["news_item"][0]["title"] for a in _wechat(sandbox)["articles"])
        assert titles == sorted(r.title for r in revs.values())
        assert _calls(sandbox, "draft/add") == 3 and _calls(sandbox, "freepublish/submit") == 3
        assert all(r.progress is None for i in revs for r in daemon.store.deliveries_of(i))
    finally:
        await daemon.aclose()


async def test_a_submitted_draft_that_never_appears_is_failed_for_a_person_not_published_again(
        tmp_path: Path, sandbox: SandboxServer) -> None:
    """A draft submitted just before a crash whose article never shows up: the row waits until publish_timeout
    after the checkpoint, then fails with words that send an admin to 发表记录; no second draft, no article."""
    daemon = await _daemon(tmp_path, sandbox)
    settings(sandbox, "wechat", publish_seconds=86_400)
    clock = daemon.clock
    assert isinstance(clock, FrozenClock)
    try:
        item = await _item(daemon)
        channel, rows, revs = await _crashed(daemon, item)
        with tracking(daemon.dispatcher.books.progress(rows[item])):
            body = await channel.call("POST", "cgi-bin/draft/add", what="add",
                                      json={"articles": [await channel.article(revs[item])]})
            channel.checkpoint(media_id=body["media_id"])
        await channel.call("POST", "cgi-bin/freepublish/submit", what="submit", json={"media_id": body["media_id"]})
        await daemon.dispatcher.recover()
        await daemon.dispatcher.run_once()
        assert daemon.store.deliveries_of(item)[0].state == S.RETRYING
        clock.advance(timedelta(hours=1, minutes=1))
        await daemon.dispatcher.run_once()
        (row,) = daemon.store.deliveries_of(item)
        assert row.state == S.FAILED and row.progress is None
        assert row.last_error and "发表记录" in row.last_error and f"publisher retry {item}" in row.last_error
        assert _calls(sandbox, "draft/add") == 1 and _calls(sandbox, "freepublish/submit") == 1
        assert _wechat(sandbox)["articles"] == []
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
