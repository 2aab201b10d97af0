"""The WeChat adapter against the WeChat stand-in: publishing through the draft box, the asynchronous states,
finding an item after a crash at each step, the token, every errcode class, retraction and edits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from channels.base import ManualTask, PermanentError, Progress, RateLimited, Receipt, Refused, TransientError, tracking
from channels.wechat import Wechat
from publisher.clock import FrozenClock
from publisher.config.settings import ConfigError
from publisher.model import Attachment, Revision
from publisher.sandbox import CREDENTIALS, SandboxServer
from tests.conftest import make_revision
from tests.harness import load, write_config

COVER = Path(__file__).resolve().parents[2] / "publisher" / "sandbox" / "wechat_cover.png"
LINK = "http://127.0.0.1:8701/wordpress/2015/03/18/2015-accidents-0007/"
PNG = COVER.read_bytes()


def adapter(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock, **options: Any) -> Wechat:
    opts = {"api_base": sandbox.url("wechat"), "appid": CREDENTIALS["wechat_appid"],
            "secret": CREDENTIALS["wechat_secret"], "default_cover": COVER, **options}
    return Wechat(name="wechat", options=Wechat.Options(**opts), http=http, clock=clock, display_name="政务公众号")


def account(sandbox: SandboxServer) -> dict[str, Any]:
    return sandbox.services["wechat"].store


def received(sandbox: SandboxServer) -> dict[str, Any]:
    return sandbox.services["wechat"].received()


def setting(sandbox: SandboxServer, **values: Any) -> None:
    httpx.put(f"{sandbox.base_url}/_sandbox/wechat/settings", json=values, timeout=5).raise_for_status()


def calls(sandbox: SandboxServer, path: str) -> int:
    return sum(1 for r in sandbox.services["wechat"].requests if r["path"].endswith(path))


def delete_on_account(sandbox: SandboxServer, article_id: str) -> None:
    """What a person deleting the article in 公众平台 leaves behind."""
    article = account(sandbox)["articles"][article_id]
    article["deleted"] = True
    for item in article["news_item"]:
        item["is_deleted"] = True


def finish_publishing(sandbox: SandboxServer) -> None:
    """Every publish job in progress reaches its outcome now (as if publish_seconds had passed)."""
    for job in account(sandbox)["jobs"].values():
        job["ready_at"] = 0.0


@pytest.fixture
def rev() -> Revision:
    return make_revision(link=LINK)


async def test_publish_makes_a_draft_submits_it_and_verify_follows_the_asynchronous_states(
        sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock, rev: Revision) -> None:
    """Publish uploads the cover, adds the draft with the documented fields and submits it: the receipt holds the
    publish_id, the draft box is empty again; verify says not yet while WeChat publishes (1), then hands back the
    article's URL (0), whose public page shows the article."""
    setting(sandbox, publish_seconds=60)
    wx = adapter(sandbox, http, clock)
    receipt = await wx.publish(rev)
    assert receipt.remote_id == receipt.extra["publish_id"] and receipt.url is None
    assert received(sandbox)["drafts"] == [] and len(received(sandbox)["jobs"]) == 1
    assert await wx.verify(receipt) is False
    finish_publishing(sandbox)
    live = await wx.verify(receipt)
    assert isinstance(live, Receipt) and live.remote_id == receipt.remote_id and live.url
    [article] = received(sandbox)["articles"]
    item = article["news_item"][0]
    assert live.extra["article_id"] == article["article_id"] and live.url == item["url"]
    assert item["title"] == rev.title and item["digest"] == rev.summary and item["content_source_url"] == LINK
    assert "<strong>请各单位认真吸取教训。</strong>" in item["content"]
    page = await http.get(live.url)
    assert page.status_code == 200 and rev.title in page.text


@pytest.mark.parametrize(("outcome", "words"), [
    (2, "原创声明失败"),
    (3, "常规失败"),
    (4, "平台审核不通过"),
])
async def test_a_publish_the_platform_refuses_ends_in_refused_with_its_reason(
        sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock, rev: Revision, outcome: int,
        words: str) -> None:
    """publish_status 2, 3 and 4 are permanent: verify raises Refused naming the platform's reason and what to do."""
    setting(sandbox, publish_seconds=0, publish_outcome=outcome)
    wx = adapter(sandbox, http, clock)
    receipt = await wx.publish(rev)
    with pytest.raises(Refused, match=words) as refused:
        await wx.verify(receipt)
    assert f"publish_status {outcome}" in str(refused.value)
    assert received(sandbox)["articles"] == []


@pytest.mark.parametrize(("take_down", "words"), [
    ("delete", "成功后用户删除"),
    ("ban", "成功后系统封禁"),
])
async def test_a_live_article_taken_down_reads_back_as_refused(
        sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock, rev: Revision, take_down: str,
        words: str) -> None:
    """After success, a deletion on the account (5) or a ban (6) makes verify raise Refused with the platform's words."""
    setting(sandbox, publish_seconds=0)
    wx = adapter(sandbox, http, clock)
    live = await wx.verify(await wx.publish(rev))
    assert isinstance(live, Receipt)
    if take_down == "delete":
        delete_on_account(sandbox, live.extra["article_id"])
    else:
        setting(sandbox, banned=[live.extra["article_id"]])
    with pytest.raises(Refused, match=words):
        await wx.verify(live)


async def test_find_after_a_crash_at_each_step(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock,
                                               rev: Revision) -> None:
    """Before anything: not there. After draft/add (the crash before submit): the orphan draft is submitted, not
    added again. After submit, once published: the article in the published list. Never a second article."""
    setting(sandbox, publish_seconds=0)
    wx = adapter(sandbox, http, clock)
    assert await wx.find(rev) is None
    await wx.call("POST", "cgi-bin/draft/add", what="add", json={"articles": [await wx.article(rev)]})  # then the crash
    resumed = await adapter(sandbox, http, clock).find(rev)  # a new process
    assert resumed is not None and resumed.extra["publish_id"] and received(sandbox)["drafts"] == []
    assert calls(sandbox, "draft/add") == 1 and calls(sandbox, "freepublish/submit") == 1
    found = await adapter(sandbox, http, clock).find(rev)  # the crash after submit, before the store update
    [article] = received(sandbox)["articles"]
    assert found is not None and found.remote_id == article["article_id"]
    assert found.url == article["news_item"][0]["url"]
    assert isinstance(await wx.verify(found), Receipt)
    assert await wx.find(make_revision(link=LINK, title="另一篇文章")) is None


class Row:
    """The dispatcher's side of a checkpoint, as it keeps one delivery's: the last one saved, handed back next time."""

    def __init__(self) -> None:
        self.progress: dict[str, Any] = {}

    def attempt(self) -> AbstractContextManager[None]:
        return tracking(Progress(recorded=dict(self.progress), save=self.save))

    def save(self, progress: dict[str, Any]) -> None:
        self.progress = progress


async def test_a_send_checkpoints_its_draft_and_its_job_and_find_resumes_a_job_still_publishing(
        sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock, rev: Revision) -> None:
    """Publish checkpoints the draft's media_id before the submit and the publish_id after it; a find after a crash
    with that progress, while WeChat still publishes, hands back the job's receipt (the read-back follows it) and
    makes nothing."""
    setting(sandbox, publish_seconds=30)
    row = Row()
    with row.attempt():
        receipt = await adapter(sandbox, http, clock).publish(rev)  # then the crash, before the outcome is stored
    assert row.progress["media_id"] == receipt.extra["media_id"] and row.progress["publish_id"] == receipt.remote_id
    assert row.progress["at"] == clock.now().isoformat()
    wx = adapter(sandbox, http, clock)  # a new process
    with row.attempt():
        job = await wx.find(rev)
    assert job is not None and job.remote_id == receipt.remote_id and await wx.verify(job) is False
    finish_publishing(sandbox)
    live = await wx.verify(job)
    assert isinstance(live, Receipt) and live.url == received(sandbox)["articles"][0]["news_item"][0]["url"]
    assert calls(sandbox, "draft/add") == 1 and calls(sandbox, "freepublish/submit") == 1


async def test_a_draft_submitted_just_before_a_crash_is_waited_for_then_handed_to_a_person(
        sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock, rev: Revision) -> None:
    """With only the draft's media_id checkpointed, the draft gone from the box and nothing published, find says
    "still publishing" (TransientError) until publish_timeout after the checkpoint, then a PermanentError that
    sends a person to 发表记录; once the article shows up, find finds it. Never a second draft."""
    setting(sandbox, publish_seconds=3600)
    wx = adapter(sandbox, http, clock, publish_timeout=1800)
    article = await wx.article(rev)
    media_id = (await wx.call("POST", "cgi-bin/draft/add", what="add", json={"articles": [article]}))["media_id"]
    row = Row()
    row.progress = {"media_id": media_id, "at": clock.now().isoformat()}
    await wx.call("POST", "cgi-bin/freepublish/submit", what="submit", json={"media_id": media_id})  # then the crash
    with row.attempt(), pytest.raises(TransientError, match="still publishing") as waiting:
        await wx.find(rev)
    assert waiting.value.retry_after is not None and 30 <= waiting.value.retry_after <= 600
    clock.advance(timedelta(minutes=31))
    with row.attempt(), pytest.raises(PermanentError, match="发表记录") as given_up:
        await wx.find(rev)
    assert not isinstance(given_up.value, TransientError) and f"publisher retry {rev.item_id}" in str(given_up.value)
    finish_publishing(sandbox)
    with row.attempt():
        found = await wx.find(rev)
    assert found is not None and found.remote_id == received(sandbox)["articles"][0]["article_id"]
    assert calls(sandbox, "draft/add") == 1 and calls(sandbox, "freepublish/submit") == 1


async def test_the_token_is_fetched_once_for_concurrent_sends_and_renewed_once_when_it_expires(
        sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """Six concurrent publishes share one token fetch; when WeChat expires the token mid-run (42001) the adapter
    fetches a new one and repeats the call, once."""
    setting(sandbox, publish_seconds=0)
    wx = adapter(sandbox, http, clock)
    revs = [make_revision(item_id=f"2015-news-{n}", title=f"安全生产要闻第{n}期", link=f"{LINK}{n}") for n in range(6)]
    await asyncio.gather(*(wx.publish(r) for r in revs))
    assert calls(sandbox, "stable_token") == 1 and calls(sandbox, "material/add_material") == 1
    setting(sandbox, expire_tokens=True)
    receipt = await wx.publish(make_revision(item_id="2015-news-9", title="第九期", link=LINK + "9"))
    assert receipt.remote_id and calls(sandbox, "stable_token") == 2
    assert len(received(sandbox)["articles"]) == 7


async def test_the_cached_token_is_renewed_shortly_before_it_expires(
        sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock, rev: Revision) -> None:
    """The adapter keeps a token until five minutes before expires_in, by the injected clock."""
    wx = adapter(sandbox, http, clock)
    first = await wx.token()
    clock.advance(timedelta(seconds=7200 - 301))
    assert await wx.token() == first
    clock.advance(timedelta(seconds=2))
    await wx.token()
    assert calls(sandbox, "stable_token") == 2


def _quota(sandbox: SandboxServer) -> None:
    setting(sandbox, quota_exhausted=True)


def _ip(sandbox: SandboxServer) -> None:
    setting(sandbox, ip_whitelist=["203.0.113.7"])


ERRORS: list[tuple[str, Callable[[SandboxServer], None], dict[str, Any], type[Exception], list[str]]] = [
    ("daily quota", _quota, {}, RateLimited, ["45009", "midnight, Beijing time"]),
    ("IP allow-list", _ip, {}, PermanentError, ["127.0.0.1", "40164", "IP白名单", "基本配置"]),
    ("wrong appid", lambda sb: None, {"appid": "wx0000000000000000"}, PermanentError, ["40013", "appid", "开发者ID"]),
    ("wrong secret", lambda sb: None, {"secret": "nope"}, PermanentError, ["40125", "AppSecret", "WECHAT_SECRET"]),
    ("busy", lambda sb: sb.services["wechat"].faults.update({"error_rate": 1.0, "error_status": 200}), {},
     TransientError, ["busy", "-1"]),
    ("minute limit", lambda sb: sb.services["wechat"].faults.update({"burst_429": 5}), {}, RateLimited, ["45011"]),
]


@pytest.mark.parametrize(("case", "arrange", "options", "error", "words"), ERRORS, ids=[e[0] for e in ERRORS])
async def test_errcodes_in_a_200_are_typed_errors_in_words(
        sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock, rev: Revision, case: str,
        arrange: Callable[[SandboxServer], None], options: dict[str, Any], error: type[Exception],
        words: list[str]) -> None:
    """WeChat refuses inside HTTP 200: each errcode class becomes its typed error, and the message tells the admin
    what to do; nothing is published."""
    arrange(sandbox)
    with pytest.raises(error) as raised:
        await adapter(sandbox, http, clock, **options).publish(rev)
    assert type(raised.value) is error
    for word in words:
        assert word in str(raised.value), (word, str(raised.value))
    assert received(sandbox)["jobs"] == []


async def test_the_daily_quota_waits_until_midnight_beijing_time(sandbox: SandboxServer, http: httpx.AsyncClient,
                                                                clock: FrozenClock, rev: Revision) -> None:
    """45009 is RateLimited until 00:00 China time: 09:00 UTC is 17:00 in Beijing, seven hours before midnight."""
    setting(sandbox, quota_exhausted=True)
    with pytest.raises(RateLimited) as limited:
        await adapter(sandbox, http, clock).publish(rev)
    assert limited.value.retry_after == 7 * 3600


@pytest.mark.parametrize(("body", "words"), [
    ("安" * 20_000, "20000 characters"),
    ("<b>x</b>" * 3000, "20000 characters"),
])
async def test_content_over_the_platform_limits_is_a_permanent_error_that_says_so(
        sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock, body: str, words: str) -> None:
    """A body over 20,000 characters (or 1 MB) of HTML is refused before any draft is made, in words."""
    with pytest.raises(PermanentError, match=words):
        await adapter(sandbox, http, clock).publish(make_revision(body=body, link=LINK))
    assert calls(sandbox, "draft/add") == 0


async def test_covers_are_uploaded_once_and_found_again_by_their_hash(
        sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock, tmp_path: Path) -> None:
    """Items without a picture share the default cover, uploaded once; a new process finds it in the account's
    images by the hash in its name; an item's own picture is its cover."""
    setting(sandbox, publish_seconds=0)
    await adapter(sandbox, http, clock).publish(make_revision(item_id="a", title="甲", link=LINK))
    await adapter(sandbox, http, clock).publish(make_revision(item_id="b", title="乙", link=LINK))
    assert calls(sandbox, "material/add_material") == 1
    photo = tmp_path / "现场.png"
    photo.write_bytes(PNG + b"\0")  # another picture: other bytes
    att = Attachment.of(photo.name, photo)
    await adapter(sandbox, http, clock).publish(make_revision(item_id="c", title="丙", link=LINK, attachments=(att,)))
    assert calls(sandbox, "material/add_material") == 2
    thumbs = {a["news_item"][0]["thumb_media_id"] for a in received(sandbox)["articles"]}
    assert len(thumbs) == 2


async def test_pictures_in_the_body_go_through_uploadimg_and_others_are_left_out(
        sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock, tmp_path: Path) -> None:
    """An <img> of an attached picture points at the URL uploadimg returned; an external picture is left out (the
    platform would drop it); scripts never reach WeChat."""
    setting(sandbox, publish_seconds=0)
    photo, other = tmp_path / "photo.png", tmp_path / "现场 照片.png"
    photo.write_bytes(PNG)
    other.write_bytes(PNG + b"\0")
    body = ("现场图片：\n\n![现场](photo.png)\n\n![另一张](<现场 照片.png>)\n\n![外链](https://example.com/x.jpg)\n\n"
            "<script>alert(1)</script>")
    rev = make_revision(body=body, link=LINK, attachments=(Attachment.of(photo.name, photo), Attachment.of(other.name, other)))
    await adapter(sandbox, http, clock).publish(rev)
    urls = received(sandbox)["images"]
    content = received(sandbox)["articles"][0]["news_item"][0]["content"]
    assert len(urls) == 2 and all(f'src="{url}"' in content for url in urls)
    assert "example.com" not in content and "script" not in content


async def test_retraction_deletes_the_article_and_its_page_is_gone(
        sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock, rev: Revision) -> None:
    """freepublish/delete with index 0 removes the whole article; the public page shows WeChat's notice; a second
    retraction finds it gone and is content; verify then reads it as taken down."""
    setting(sandbox, publish_seconds=0)
    wx = adapter(sandbox, http, clock)
    live = await wx.verify(await wx.publish(rev))
    assert isinstance(live, Receipt) and live.url
    await wx.retract(live)
    assert received(sandbox)["articles"] == [] and "该内容已被发布者删除" in (await http.get(live.url)).text
    await wx.retract(live)
    with pytest.raises(Refused, match="成功后用户删除"):
        await wx.verify(live)


async def test_retracting_an_article_still_being_published_waits(
        sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock, rev: Revision) -> None:
    """A retraction while WeChat still publishes is retried later (there is no article to delete yet)."""
    setting(sandbox, publish_seconds=60)
    wx = adapter(sandbox, http, clock)
    receipt = await wx.publish(rev)
    with pytest.raises(TransientError, match="still being published"):
        await wx.retract(receipt)


async def test_an_edit_is_a_manual_task_with_the_link_and_what_changed(
        sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock, rev: Revision) -> None:
    """By default an update is a task for a person: the article's link and a diff of what this revision changes."""
    setting(sandbox, publish_seconds=0)
    wx = adapter(sandbox, http, clock)
    live = await wx.verify(await wx.publish(rev))
    assert isinstance(live, Receipt)
    edited = make_revision(revision=2, link=LINK, body=rev.body.replace("认真吸取教训", "深刻吸取教训"))
    with pytest.raises(ManualTask) as task:
        await wx.update(edited, live)
    text = str(task.value)
    assert live.url is not None and live.url in text and "no API to edit" in text
    assert "-" in text and "+" in text and "深刻吸取教训" in text and "认真吸取教训" in text
    assert len(received(sandbox)["articles"]) == 1


async def test_republish_deletes_the_old_article_and_publishes_the_new_revision(
        sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock, rev: Revision) -> None:
    """With on_edit: republish the old article is deleted and the new revision published: a new URL, and the
    receipt names the one it replaced."""
    setting(sandbox, publish_seconds=0)
    wx = adapter(sandbox, http, clock, on_edit="republish")
    live = await wx.verify(await wx.publish(rev))
    assert isinstance(live, Receipt)
    new = await wx.update(make_revision(revision=2, link=LINK, title="关于事故调查报告的通报（修订）"), live)
    assert new.extra["replaced"] == live.url
    fresh = await wx.verify(new)
    assert isinstance(fresh, Receipt) and fresh.url != live.url
    [article] = received(sandbox)["articles"]
    assert article["news_item"][0]["title"] == "关于事故调查报告的通报（修订）"
    assert len(received(sandbox)["removed"]) == 1


async def test_an_update_of_an_article_taken_down_publishes_it_anew(
        sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock, rev: Revision) -> None:
    """A person's retry of a delivery whose article was deleted on the account publishes it again."""
    setting(sandbox, publish_seconds=0)
    wx = adapter(sandbox, http, clock)
    live = await wx.verify(await wx.publish(rev))
    assert isinstance(live, Receipt)
    delete_on_account(sandbox, live.extra["article_id"])
    again = await wx.update(rev, live)
    assert isinstance(await wx.verify(again), Receipt) and len(received(sandbox)["articles"]) == 1


async def test_the_shipped_default_cover_resolves_through_the_sandbox(
        sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """The shipped config names the sandbox's demo cover by URL (so it resolves in a checkout and in a directory
    `publisher init` made); the adapter fetches it once and uploads it once, for every item without a picture."""
    import yaml

    shipped = yaml.safe_load((COVER.parents[2] / "config.yaml").read_text("utf-8"))["channels"]["wechat"]
    url = shipped["default_cover"].replace("http://127.0.0.1:8701", sandbox.base_url)
    assert (await http.get(url)).content == PNG
    setting(sandbox, publish_seconds=0)
    wx = adapter(sandbox, http, clock, default_cover=url)
    for n in range(3):
        await wx.publish(make_revision(item_id=f"n-{n}", title=f"第{n}期", link=f"{LINK}{n}"))
    assert calls(sandbox, "demo-cover.png") == 2 and calls(sandbox, "material/add_material") == 1  # ours + the check


def test_a_config_that_still_sets_find_wait_is_told_what_replaced_it(tmp_path: Path, sandbox: SandboxServer) -> None:
    """find_wait (a fixed wait for a publish in progress) gave way to checkpoints; an old config names it and is told
    what to do, not merely that the key is unknown."""
    with pytest.raises(ConfigError) as refused:
        load(write_config(tmp_path, sandbox, **{"channels.wechat.find_wait": 10}))
    assert "channels.wechat: find_wait is no longer used" in str(refused.value)
    assert "remove find_wait" in str(refused.value)
