"""The Weibo adapter against the Weibo stand-in: posting, length fitting, manual tasks, and every error class."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from channels.base import ManualTask, PermanentError, RateLimited, Receipt, TransientError
from channels.transport import channel_client
from channels.weibo import Weibo, weibo_length
from publisher.clock import FrozenClock
from publisher.model import Attachment
from publisher.sandbox import CREDENTIALS, SandboxServer
from publisher.sandbox.weibo import EXPIRED_TOKEN, weibo_count
from tests.conftest import make_revision

LINK = "http://127.0.0.1:8701/wordpress/2015/03/18/2015-accidents-0007/"


def adapter(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock, **options: Any) -> Weibo:
    opts = {"api_base": sandbox.url("weibo") + "/2/", "access_token": CREDENTIALS["weibo_token"],
            "web_base": sandbox.url("weibo"), **options}
    return Weibo(name="microblog", options=Weibo.Options(**opts), http=http, clock=clock, display_name="政务微博")


def posted(sandbox: SandboxServer) -> list[dict[str, Any]]:
    return sandbox.services["weibo"].received()["statuses"]


@pytest.fixture
async def short_http() -> AsyncIterator[httpx.AsyncClient]:
    async with channel_client(timeout=0.3, concurrency=1) as client:
        yield client


@pytest.mark.parametrize(("text", "expected"), [
    ("", 0),
    ("安全生产", 4),
    ("ab", 1),
    ("abc", 2),
    ("【通报】", 4),
    ("3·12", 3),  # the middle dot is not ASCII: ½ + 1 + ½ + ½ = 2½, rounded up
    (LINK, 10),
    ("通报 " + LINK + " 和 https://example.com/x", 25),  # 2½ + 10 + 2 + 10 = 24½, rounded up
])
def test_weibo_length(text: str, expected: int) -> None:
    """weibo_length counts full-width 1, ASCII ½, each link 10, rounded up, and agrees with the stand-in."""
    assert weibo_length(text) == expected
    assert weibo_count(text) == expected


async def test_publish_creates_status(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """A revision becomes one Weibo status with title, summary and link; the receipt points at the post."""
    weibo = adapter(sandbox, http, clock)
    receipt = await weibo.publish(make_revision(link=LINK))
    [status] = posted(sandbox)
    assert receipt.remote_id == status["idstr"]
    assert receipt.url == f"{sandbox.url('weibo')}/{status['user']['id']}/{status['idstr']}"
    assert status["text"].startswith("【关于某化工企业")
    assert "通报某化工企业较大爆炸事故调查结果" in status["text"]
    assert status["url_objects"][0]["url_ori"] == LINK
    assert (await http.get(receipt.url)).status_code == 200


@pytest.mark.parametrize(("title", "summary"), [
    ("关" * 200, None),
    ("关" * 200, "摘" * 300),
    ("短标题", "摘" * 300),
    ("A" * 400, "B" * 400),
    ("关于#话题#的通报", "含有#标签#的摘要"),
])
async def test_long_and_tricky_text_still_posts(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock,
                                                title: str, summary: str | None) -> None:
    """However long the title and summary, the post fits 140 with the whole link, and the stand-in accepts it."""
    weibo = adapter(sandbox, http, clock)
    rev = make_revision(title=title, summary=summary, link=LINK)
    text = weibo.render(rev)
    assert weibo_length(text) <= 140 and text.endswith(" " + LINK) and "#" not in text
    await weibo.publish(rev)
    assert posted(sandbox)[0]["url_objects"][0]["url_ori"] == LINK


def test_truncation_keeps_the_title_and_marks_the_cut(sandbox: SandboxServer, http: httpx.AsyncClient,
                                                       clock: FrozenClock) -> None:
    """A long summary is cut with "…" at a character boundary, keeping the whole title and the link."""
    text = adapter(sandbox, http, clock).render(make_revision(title="标题", summary="摘要" * 200, link=LINK))
    assert text.startswith("【标题】摘要") and text.endswith("… " + LINK)
    assert weibo_length(text) in (139, 140)


def test_topic_label_without_hash_tags(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """A configured topic is a label before the title, never a #topic# tag (share.json refuses those)."""
    text = adapter(sandbox, http, clock, topic="安全生产").render(make_revision(link=LINK))
    assert text.startswith("安全生产｜【") and "#" not in text


async def test_no_link_is_a_permanent_error(sandbox: SandboxServer, http: httpx.AsyncClient,
                                            clock: FrozenClock) -> None:
    """Without the bureau_site link the adapter refuses and tells the admin to set link_from."""
    with pytest.raises(PermanentError, match="link_from"):
        await adapter(sandbox, http, clock).publish(make_revision(link=None))
    assert posted(sandbox) == []


async def test_picture_goes_along(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock,
                                  tmp_path: Path) -> None:
    """The first image attachment is sent as `pic` (multipart); with_picture=False leaves it out."""
    png = tmp_path / "scene.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4")
    atts = (Attachment.of("report.pdf", pdf), Attachment.of("scene.png", png))
    await adapter(sandbox, http, clock).publish(make_revision(link=LINK, attachments=atts))
    await adapter(sandbox, http, clock, with_picture=False).publish(
        make_revision(link=LINK + "2", attachments=atts))
    with_pic, without = sorted(posted(sandbox), key=lambda s: s["id"])
    assert "original_pic" in with_pic and "original_pic" not in without


async def test_update_and_retract_are_manual_tasks(sandbox: SandboxServer, http: httpx.AsyncClient,
                                                   clock: FrozenClock) -> None:
    """Weibo cannot edit or delete through the API: both become manual tasks naming the post's URL."""
    weibo = adapter(sandbox, http, clock)
    receipt = await weibo.publish(make_revision(link=LINK))
    assert receipt.url
    with pytest.raises(ManualTask, match="cannot edit") as edit:
        await weibo.update(make_revision(link=LINK, revision=2, title="更正后的标题"), receipt)
    assert receipt.url in str(edit.value) and "更正后的标题" in str(edit.value)
    with pytest.raises(ManualTask, match="delete the post by hand") as gone:
        await weibo.retract(receipt)
    assert receipt.url in str(gone.value)
    assert len(posted(sandbox)) == 1 and not Weibo.can_update


async def test_find_after_lost_response(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """After a crash, find locates the earlier post by its link (shortened on Weibo) and nothing else."""
    first = await adapter(sandbox, http, clock).publish(make_revision(link=LINK))
    fresh = adapter(sandbox, http, clock)  # a restarted daemon
    assert await fresh.find(make_revision(link=LINK)) == first
    assert await fresh.find(make_revision(item_id="other", title="另一条", summary="别的", link=LINK + "x")) is None


async def test_resend_after_lost_response_returns_first_post(sandbox: SandboxServer, http: httpx.AsyncClient,
                                                             clock: FrozenClock) -> None:
    """A resend that Weibo refuses as repeat content (20019) answers the receipt of the post already there."""
    weibo = adapter(sandbox, http, clock)
    first = await weibo.publish(make_revision(link=LINK))
    assert await weibo.publish(make_revision(link=LINK)) == first
    assert len(posted(sandbox)) == 1


async def test_verify(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """verify reads the status back through show.json; an unknown id is not live."""
    weibo = adapter(sandbox, http, clock)
    receipt = await weibo.publish(make_revision(link=LINK))
    assert await weibo.verify(receipt) is True
    assert await weibo.verify(Receipt(remote_id="4700000000000001")) is False


# 2015-03-18 09:00 UTC is 17:00 in China: the daily limit frees at midnight, 7 hours later.
ERROR_CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], type[Exception], str, float | None]] = [
    ("invalid token", {}, {}, {"access_token": "wrong"}, PermanentError, "renew the token", None),
    ("expired token", {}, {}, {"access_token": EXPIRED_TOKEN}, PermanentError, "renew the token", None),
    ("revoked (fault)", {"unauthorized": True}, {}, {}, PermanentError, "renew the token", None),
    ("user rate limit", {"burst_429": 1}, {}, {}, RateLimited, "limit", 3600.0),
    ("rate limit with Retry-After", {"burst_429": 1, "retry_after": "90"}, {}, {}, RateLimited, "limit", 90.0),
    ("hourly posts", {}, {"posts_per_hour": 0}, {}, RateLimited, "hourly", 3600.0),
    ("daily calls", {}, {"calls_per_day": 0}, {}, RateLimited, "daily", 7 * 3600.0),
    ("unsafe domain", {}, {"safe_domains": ["aj.example.gov.cn"]}, {}, PermanentError, "safe domain", None),
    ("503", {"error_rate": 1.0}, {}, {}, TransientError, "trouble", None),
    ("500 with Retry-After", {"error_rate": 1.0, "error_status": 500, "retry_after": "5"}, {}, {}, TransientError,
     "trouble", 5.0),
]


@pytest.mark.parametrize(("case", "faults", "settings", "options", "error", "match", "retry_after"), ERROR_CASES,
                         ids=[c[0] for c in ERROR_CASES])
async def test_error_classes(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock, case: str,
                             faults: dict[str, Any], settings: dict[str, Any], options: dict[str, Any],
                             error: type[Exception], match: str, retry_after: float | None) -> None:
    """Each refusal of the stand-in becomes the typed error the dispatcher expects, with a useful wait."""
    sandbox.services["weibo"].faults.update(faults)
    sandbox.services["weibo"].store["settings"].update(settings)
    with pytest.raises(error, match=match) as info:
        await adapter(sandbox, http, clock, **options).publish(make_revision(link=LINK))
    assert type(info.value) is error
    assert isinstance(info.value, PermanentError) or info.value.retry_after == retry_after  # type: ignore[attr-defined]
    assert info.value.remote  # type: ignore[attr-defined]
    assert CREDENTIALS["weibo_token"] not in str(info.value)


async def test_timeout_is_transient(sandbox: SandboxServer, short_http: httpx.AsyncClient,
                                    clock: FrozenClock) -> None:
    """A server that never answers gives a TransientError once the client's timeout fires."""
    sandbox.services["weibo"].faults.black_hole = True
    with pytest.raises(TransientError, match="Timeout"):
        await adapter(sandbox, short_http, clock).publish(make_revision(link=LINK))


async def test_connect_error_is_transient(http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """A refused connection is a TransientError."""
    weibo = Weibo(name="microblog", http=http, clock=clock, options=Weibo.Options(
        api_base="http://127.0.0.1:9/2/", access_token=SecretStr(CREDENTIALS["weibo_token"])))
    with pytest.raises(TransientError, match="ConnectError"):
        await weibo.publish(make_revision(link=LINK))


async def test_text_too_long_is_permanent(clock: FrozenClock) -> None:
    """20012 (the platform counted longer than we did) is permanent; the stand-in agrees with us, so it is mocked."""
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"request": "/2/statuses/share.json", "error_code": 20012,
                                         "error": "Text too long, please input text less than 140 characters"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        weibo = Weibo(name="microblog", http=http, clock=clock, options=Weibo.Options(access_token=SecretStr("t")))
        with pytest.raises(PermanentError, match="too long") as info:
            await weibo.publish(make_revision(link=LINK))
    assert info.value.status == 400 and "20012" in (info.value.remote or "")


def test_options_keep_the_token_secret() -> None:
    """The access token is a secret: it does not show in the options' repr."""
    opts = Weibo.Options(access_token=SecretStr("very-secret"))
    assert "very-secret" not in repr(opts) and opts.api_base == "https://api.weibo.com/2/"
    assert Weibo.default_rate_limit == "30/h" and Weibo.type_name == "weibo"


def test_daily_wait_uses_the_injected_clock(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """The daily wait is measured from the injected clock to the next midnight in China."""
    clock = FrozenClock(datetime(2015, 3, 18, 15, 59, tzinfo=UTC))  # 23:59 in China
    weibo = adapter(sandbox, http, clock)
    resp = httpx.Response(403, json={"error_code": 10024, "error": "x", "request": "/2/statuses/share.json"})
    err = weibo.failure(resp, "post the status")
    assert isinstance(err, RateLimited) and err.retry_after == 60.0
