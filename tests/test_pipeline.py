"""The core pipeline end to end: queue folder → store → review → outbox → channels (the sandbox peers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from publisher.app.daemon import Daemon
from publisher.clock import FrozenClock
from publisher.review.accounts import Account, Accounts
from publisher.review.chain import ReviewError
from publisher.sandbox import SandboxServer
from tests.harness import drop, faults, free_port, load, received, write_config


@dataclass
class Env:
    root: Path
    daemon: Daemon
    clock: FrozenClock
    sandbox: SandboxServer

    @property
    def inbox(self) -> Path:
        return self.root / "queue" / "inbox"

    def states(self, item_id: str) -> dict[str, str]:
        """channel → state of the item's newest delivery there."""
        out: dict[str, str] = {}
        for d in self.daemon.store.deliveries_of(item_id):
            if d.state != "superseded":
                out[d.channel] = d.state
        return out

    async def run(self) -> dict[str, int]:
        """Everything due now, then once more a minute later: the provincial collector fetches our feed
        in the background after the WebSub ping, so its read-back succeeds on the next check."""
        counts = await self.daemon.run_once()
        await asyncio.sleep(0.2)
        self.clock.advance(timedelta(minutes=1))
        await self.daemon.run_once()
        return counts


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def env(request: pytest.FixtureRequest, tmp_path: Path, sandbox: SandboxServer) -> AsyncIterator[Env]:
    """A working directory on the sandbox; every test runs on SQLite and again on PostgreSQL."""
    port = free_port()
    store_url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    cfg = load(write_config(tmp_path, sandbox, web_port=port, store_url=store_url))
    clock = FrozenClock(datetime.now(UTC))
    daemon = Daemon(cfg, clock=clock)  # run_once serves the feed on `port` for the collector
    yield Env(tmp_path, daemon, clock, sandbox)
    await daemon.aclose()


def signers(daemon: Daemon) -> dict[str, Account]:
    """One reviewer account per role of the config (separation of duties: one account signs one step)."""
    accounts = Accounts(daemon.store, daemon.clock)
    return {role: accounts.add(f"reviewer_{role}", label, [role], None, None)
            for role, label in daemon.config.roles.items()}


def wp_posts(sandbox: SandboxServer, slug_part: str) -> list[dict]:
    return [p for p in received(sandbox, "wordpress")["posts"] if slug_part in p["slug"]]


def portal_articles(sandbox: SandboxServer, item_id: str) -> list[dict]:
    return [a for a in received(sandbox, "portal") if a.get("source_id") == item_id]


async def test_item_without_review_reaches_every_routed_channel_once(env: Env) -> None:
    """A category with `review: []` goes straight out: one post, one article, one feed entry, all live."""
    drop(env.inbox, "u1.md", {"id": "2015-updates-00001", "title": "张店区开展危险化学品专项整治",
                              "category": "updates", "date": "2015-03-18"}, "检查企业 12 家。\n\n整改隐患 30 项。")
    counts = await env.run()
    assert counts["accepted"] == 1
    assert env.states("2015-updates-00001") == {"bureau_site": "live", "city_portal": "live", "provincial_feed": "live"}
    assert len(wp_posts(env.sandbox, "2015-updates-00001")) == 1
    assert len(portal_articles(env.sandbox, "2015-updates-00001")) == 1
    hub = received(env.sandbox, "hub")
    assert [e for e in hub["entries"].values() if "2015-updates-00001" in e["id"]]
    assert list((env.root / "queue" / "archive").glob("u1.md"))
    # a second run sends nothing again
    await env.run()
    assert len(wp_posts(env.sandbox, "2015-updates-00001")) == 1


async def test_review_chain_in_order_then_microblog_links_to_the_article(env: Env) -> None:
    """An accident report waits for four sign-offs in order; the microblog post carries the bureau_site link."""
    drop(env.inbox, "a.md", {"id": "2015-accidents-00007", "title": "某化工企业“3·12”较大爆炸事故调查报告",
                             "category": "accidents", "summary": "事故调查报告公布"}, "调查情况如下。")
    await env.run()
    assert env.states("2015-accidents-00007") == {}
    review = env.daemon.review
    who = signers(env.daemon)
    with pytest.raises(ReviewError, match="waits for section_chief"):
        review.approve("2015-accidents-00007", who["legal"], role="legal")
    for role in ("section_chief", "deputy_director", "legal"):
        assert review.approve("2015-accidents-00007", who[role], role=role) == "review"
    assert review.approve("2015-accidents-00007", who["director"]) == "approved"
    await env.run()
    states = env.states("2015-accidents-00007")
    assert states["bureau_site"] == "live" and states["microblog"] == "live"
    post = wp_posts(env.sandbox, "2015-accidents-00007")[0]
    statuses = received(env.sandbox, "weibo")["statuses"]
    assert len(statuses) == 1
    weibo_row = [d for d in env.daemon.store.deliveries_of("2015-accidents-00007") if d.channel == "microblog"][0]
    assert weibo_row.url
    actions = [a.action for a in env.daemon.store.audit_log("2015-accidents-00007")]
    assert actions.count("approve") == 4 and "ingest" in actions and "send" in actions
    assert post["link"]


async def test_screen_blocks_until_override(env: Env) -> None:
    """A classified marking blocks the item; an override with a reason releases it and is audited."""
    drop(env.inbox, "s.md", {"id": "s-1", "title": "关于开展专项检查的通知", "category": "updates"},
         "机密★10年\n\n请各单位做好检查。")
    await env.run()
    rev = env.daemon.store.revision("s-1")
    assert rev.state == "blocked" and rev.findings[0]["kind"] == "classified_marking"
    assert env.states("s-1") == {}
    legal = signers(env.daemon)["legal"]
    with pytest.raises(ReviewError, match="reason"):
        env.daemon.review.override("s-1", legal, reason=" ")
    assert env.daemon.review.override("s-1", legal, reason="已解密，经保密办确认") == "approved"
    await env.run()
    assert env.states("s-1")["bureau_site"] == "live"
    assert any(a.action == "override" for a in env.daemon.store.audit_log("s-1"))


async def test_same_id_again_is_an_update_not_a_second_post(env: Env) -> None:
    """A file with a known id becomes revision 2 and updates the existing post, article and feed entry."""
    front = {"id": "rev-1", "title": "第一版标题", "category": "updates"}
    drop(env.inbox, "r1.md", front, "第一版。")
    await env.run()
    drop(env.inbox, "r2.md", {**front, "title": "第二版标题"}, "第二版。")
    await env.run()
    posts = wp_posts(env.sandbox, "rev-1")
    assert len(posts) == 1 and "第二版标题" in posts[0]["title"]["rendered"]
    articles = portal_articles(env.sandbox, "rev-1")
    assert len(articles) == 1 and articles[0]["title"] == "第二版标题"
    assert env.daemon.store.revision("rev-1").number == 2
    assert env.states("rev-1") == {"bureau_site": "live", "city_portal": "live", "provincial_feed": "live"}


async def test_retraction_takes_the_item_down_and_weibo_becomes_a_manual_task(env: Env) -> None:
    """`retract: true` trashes the post, deletes the article, tombstones the feed entry, and asks a person for Weibo."""
    front = {"id": "ret-1", "title": "将要撤回的稿件", "category": "updates",
             "channels": ["bureau_site", "city_portal", "provincial_feed", "microblog"]}
    drop(env.inbox, "x1.md", front, "内容。")
    await env.run()
    assert env.states("ret-1")["microblog"] == "live"
    drop(env.inbox, "x2.md", {**front, "retract": True, "author": "局长"}, "")
    await env.run()  # an editor's file takes nothing down by itself, whatever its author says
    assert env.states("ret-1")["bureau_site"] == "live" and env.daemon.store.revision("ret-1").state == "review"
    assert env.daemon.review.approve("ret-1", signers(env.daemon)["director"]) == "approved"
    await env.run()
    states = env.states("ret-1")
    assert states["bureau_site"] == "live" and states["city_portal"] == "live"
    assert states["microblog"] == "manual"
    post = [p for p in received(env.sandbox, "wordpress")["posts"] if "ret-1" in p["slug"]][0]
    assert post["status"] == "trash"
    assert portal_articles(env.sandbox, "ret-1") == [] or all(a.get("deleted") for a in portal_articles(env.sandbox, "ret-1"))
    hub = received(env.sandbox, "hub")
    assert any("ret-1" in ref for ref in hub["deleted"])


async def test_an_item_published_again_after_a_retraction_is_no_longer_retracted(env: Env) -> None:
    """Retracted, then dropped again as a new revision and signed off, the item lists as approved, not as
    retracted, and the website shows it again."""
    front = {"id": "back-1", "title": "撤回后重新发布的稿件", "category": "updates", "channels": ["bureau_site"]}
    drop(env.inbox, "b1.md", front, "内容。")
    await env.run()
    drop(env.inbox, "b2.md", {**front, "retract": True}, "")
    await env.run()
    env.daemon.review.approve("back-1", signers(env.daemon)["director"])
    await env.run()
    assert [i.retracted for i in env.daemon.store.items("retracted") if i.id == "back-1"] == [True]
    drop(env.inbox, "b3.md", front, "更正后的内容。")
    await env.run()
    (item,) = [i for i in env.daemon.store.items() if i.id == "back-1"]
    assert not item.retracted and item.revision_state == "approved" and item.current_revision == 3
    assert env.states("back-1") == {"bureau_site": "live"}
    assert "back-1" not in [i.id for i in env.daemon.store.items("retracted")]


async def test_embargo_waits_for_publish_at(env: Env) -> None:
    """An item with a future publish_at is not sent before that time, and is sent once it passes."""
    at = env.clock.now() + timedelta(hours=2)
    drop(env.inbox, "e.md", {"id": "emb-1", "title": "定时发布", "category": "updates", "publish_at": at.isoformat()})
    await env.run()
    assert set(env.states("emb-1").values()) == {"pending"}
    env.clock.advance(timedelta(hours=2, seconds=1))
    await env.run()
    assert set(env.states("emb-1").values()) == {"live"}


async def test_transient_429_is_retried_after_retry_after_and_sent_once(env: Env) -> None:
    """A burst of 429 with Retry-After schedules a durable retry no sooner than asked; then exactly one article."""
    faults(env.sandbox, "portal", burst_429=1, retry_after="120")
    drop(env.inbox, "t.md", {"id": "tr-1", "title": "限流测试", "category": "updates"})
    sent_at = env.clock.now()
    await env.run()
    row = [d for d in env.daemon.store.deliveries_of("tr-1") if d.channel == "city_portal"][0]
    assert row.state == "retrying" and "429" in row.last_error
    assert row.next_attempt_at >= sent_at + timedelta(seconds=120)
    env.clock.advance(timedelta(seconds=121))
    await env.run()
    assert env.states("tr-1")["city_portal"] == "live"
    assert len(portal_articles(env.sandbox, "tr-1")) == 1


async def test_permanent_error_fails_at_once_with_the_remote_message_and_can_be_retried(env: Env) -> None:
    """A 401 fails without retrying, keeps the remote's words, and `retry` sends it once the cause is fixed."""
    faults(env.sandbox, "portal", unauthorized=True)
    drop(env.inbox, "p.md", {"id": "perm-1", "title": "权限测试", "category": "updates"})
    await env.run()
    row = [d for d in env.daemon.store.deliveries_of("perm-1") if d.channel == "city_portal"][0]
    assert row.state == "failed" and row.attempts == 1 and "401" in row.last_error
    assert env.states("perm-1")["bureau_site"] == "live"  # the other channels are not held back
    faults(env.sandbox, "portal", unauthorized=False)
    assert env.daemon.dispatcher.retry("perm-1", "city_portal", by="管理员") == 1
    await env.run()
    assert env.states("perm-1")["city_portal"] == "live"


async def test_crash_after_the_post_is_reconciled_by_find_not_resent(env: Env) -> None:
    """A row left `sending` after its POST landed is found on the channel at start-up and never posted twice."""
    drop(env.inbox, "c.md", {"id": "crash-1", "title": "崩溃恢复", "category": "updates"})
    faults(env.sandbox, "wordpress", latency_s=0.0)
    d = env.daemon
    await d.intake.scan()
    rows = d.store.claim("bureau_site", d.dispatcher.owner, env.clock.now(), 10, timedelta(minutes=5))
    assert rows and rows[0].state == "sending"
    rev = d.dispatcher.books.revision(rows[0])
    await d.channels["bureau_site"].publish(rev)  # the POST landed; then the process "died"
    await env.run()  # start-up reconciliation
    assert len(wp_posts(env.sandbox, "crash-1")) == 1
    assert env.states("crash-1")["bureau_site"] == "live"
    assert any(a.action == "reconcile" for a in d.store.audit_log("crash-1"))


async def test_microblog_rate_limit_is_kept_on_our_side(env: Env) -> None:
    """With rate_limit 2/h, a third microblog post waits for the window instead of being refused by Weibo."""
    env.daemon.config.channels["microblog"].rate_limit = __import__("publisher.units").units.parse_rate("2/h")
    for n in range(3):
        drop(env.inbox, f"m{n}.md", {"id": f"mb-{n}", "title": f"微博{n}", "category": "updates",
                                     "channels": ["bureau_site", "microblog"]})
    await env.run()
    states = [env.states(f"mb-{n}")["microblog"] for n in range(3)]
    assert sorted(states) == ["live", "live", "pending"]
    env.clock.advance(timedelta(hours=1, seconds=1))
    await env.run()
    assert [env.states(f"mb-{n}")["microblog"] for n in range(3)] == ["live"] * 3
    assert len(received(env.sandbox, "weibo")["statuses"]) == 3


async def test_a_dead_channel_never_holds_the_others(tmp_path: Path, sandbox: SandboxServer) -> None:
    """With the city portal accepting connections and never answering, the other channels still go live at once."""
    port = free_port()
    cfg = load(write_config(tmp_path, sandbox, web_port=port, **{"channels.city_portal.timeout": "500ms",
                                                                 "channels.city_portal.concurrency": 1}))
    clock = FrozenClock(datetime.now(UTC))
    daemon = Daemon(cfg, clock=clock)
    faults(sandbox, "portal", black_hole=True)
    inbox = tmp_path / "queue" / "inbox"
    for n in range(4):
        drop(inbox, f"d{n}.md", {"id": f"dead-{n}", "title": f"动态{n}", "category": "updates"})
    try:
        await daemon.run_once()
        for n in range(4):
            rows = {d.channel: d for d in daemon.store.deliveries_of(f"dead-{n}")}
            assert rows["bureau_site"].state == "live"
            assert rows["city_portal"].state == "retrying" and "Timeout" in rows["city_portal"].last_error
    finally:
        faults(sandbox, "portal", black_hole=False)
        await daemon.aclose()


async def test_retry_resends_an_entry_the_collector_never_showed(tmp_path: Path, sandbox: SandboxServer) -> None:
    """A feed entry sent but never seen by the consumer stays `sent` (not live); retry writes it again."""
    port = free_port()
    # the consumer's feed we verify against is one that will never hold our entry
    cfg = load(write_config(tmp_path, sandbox, web_port=port,
                            **{"channels.provincial_feed.verify_feed": f"{sandbox.base_url}/portal/rss.xml"}))
    clock = FrozenClock(datetime.now(UTC))
    daemon = Daemon(cfg, clock=clock)
    drop(tmp_path / "queue" / "inbox", "f.md", {"id": "feed-1", "title": "省局收不到", "category": "updates",
                                                "channels": ["provincial_feed", "microblog", "bureau_site"]})
    try:
        await daemon.run_once()
        clock.advance(timedelta(minutes=1))  # past verify_after
        await daemon.run_once()
        row = {d.channel: d for d in daemon.store.deliveries_of("feed-1")}["provincial_feed"]
        assert row.state == "sent" and "cannot see it yet" in row.last_error
        weibo = {d.channel: d for d in daemon.store.deliveries_of("feed-1")}["microblog"]
        assert weibo.state == "live"
        assert daemon.dispatcher.retry("feed-1", by="管理员") == 1  # the live Weibo post is not touched
        await daemon.run_once()
        sends = [a for a in daemon.store.audit_log("feed-1") if a.action == "send" and a.channel == "provincial_feed"]
        assert len(sends) == 2
        assert len(received(sandbox, "weibo")["statuses"]) == 1
    finally:
        await daemon.aclose()


async def test_an_entry_never_seen_is_sent_once_more_by_itself(tmp_path: Path, sandbox: SandboxServer) -> None:
    """After five read-backs that find nothing, an updatable delivery is re-sent once (audited), never again."""
    port = free_port()
    cfg = load(write_config(tmp_path, sandbox, web_port=port,
                            **{"channels.provincial_feed.verify_feed": f"{sandbox.base_url}/portal/rss.xml"}))
    clock = FrozenClock(datetime.now(UTC))
    daemon = Daemon(cfg, clock=clock)
    drop(tmp_path / "queue" / "inbox", "u.md", {"id": "unseen-1", "title": "没人看见", "category": "updates",
                                                "channels": ["provincial_feed"]})
    try:
        for _ in range(30):  # a day of read-backs, with their growing waits
            await daemon.run_once()
            clock.advance(timedelta(hours=1))
        actions = [a.action for a in daemon.store.audit_log("unseen-1")]
        assert actions.count("resend_unseen") == 1 and actions.count("send") == 2
        row = daemon.store.deliveries_of("unseen-1")[0]
        assert row.state == "sent" and "cannot see it yet" in row.last_error
    finally:
        await daemon.aclose()


async def test_an_old_document_approved_late_still_reaches_the_collector(tmp_path: Path,
                                                                        sandbox: SandboxServer) -> None:
    """The feed keeps the entries written last: an item taken in first but signed off after a burst of newer
    ones enters the feed at the front and is collected, even when the burst alone fills the feed."""
    port = free_port()
    cfg = load(write_config(tmp_path, sandbox, web_port=port, **{"channels.provincial_feed.max_entries": 3}))
    clock = FrozenClock(datetime.now(UTC))
    daemon = Daemon(cfg, clock=clock)
    inbox = tmp_path / "queue" / "inbox"
    drop(inbox, "old.md", {"id": "old-notice", "title": "关于做好节前安全检查的通知", "category": "notices",
                           "channels": ["provincial_feed"]})
    try:
        await daemon.run_once()  # taken in; waits for its two sign-offs
        for n in range(4):
            clock.advance(timedelta(minutes=1))
            drop(inbox, f"n{n}.md", {"id": f"burst-{n}", "title": f"动态{n}", "category": "updates",
                                     "channels": ["provincial_feed"]})
            await daemon.run_once()
        clock.advance(timedelta(minutes=1))
        who = signers(daemon)
        daemon.review.approve("old-notice", who["section_chief"])
        daemon.review.approve("old-notice", who["deputy_director"])
        await daemon.run_once()
        for _ in range(20):  # the collector fetches our feed in the background after the WebSub ping
            await asyncio.sleep(0.2)
            clock.advance(timedelta(minutes=1))
            await daemon.run_once()
            row = daemon.store.deliveries_of("old-notice")[0]
            if row.state == "live":
                break
        assert row.state == "live", row
        feed = (tmp_path / "var" / "feeds" / "provincial.xml").read_text("utf-8")
        assert feed.index("old-notice") < feed.index("burst-3") and "burst-0" not in feed  # the 3 written last
    finally:
        await daemon.aclose()


async def test_a_manual_retry_of_an_old_failure_gets_a_fresh_retry_budget(env: Env) -> None:
    """A delivery that failed days ago and is retried by hand is not given up at its first transient error:
    the budget's max_age (2 days) counts from the retry, while its lag still counts from when it was due."""
    faults(env.sandbox, "portal", unauthorized=True)
    drop(env.inbox, "o.md", {"id": "old-fail", "title": "三天前的失败", "category": "updates"})
    await env.run()
    assert env.states("old-fail")["city_portal"] == "failed"
    env.clock.advance(timedelta(days=3))
    faults(env.sandbox, "portal", unauthorized=False, error_rate=1.0)  # fixed, but now it is overloaded
    assert env.daemon.dispatcher.retry("old-fail", "city_portal", by="管理员") == 1
    await env.run()
    row = [d for d in env.daemon.store.deliveries_of("old-fail") if d.channel == "city_portal"][0]
    assert row.state == "retrying" and "503" in row.last_error, row
    faults(env.sandbox, "portal", error_rate=0.0)
    env.clock.advance(timedelta(hours=1))
    await env.run()
    assert env.states("old-fail")["city_portal"] == "live"
    assert env.clock.now() - row.due_at > timedelta(days=3)  # the lag report still sees three days


async def test_a_file_s_author_is_a_claim_not_the_actor(env: Env) -> None:
    """A file saying `author: 局长` is recorded as coming from the queue folder, which authenticates no one;
    the author is a detail of the entry, never the actor."""
    drop(env.inbox, "c1.md", {"id": "claim-1", "title": "稿件", "category": "updates", "author": "局长"}, "内容。")
    await env.run()
    ingest = [e for e in env.daemon.store.audit_log("claim-1") if e.action == "ingest"]
    assert [(e.actor, e.detail["author"]) for e in ingest] == [("queue", "局长")]
