"""The Mastodon adapter against the Mastodon stand-in: post, edit, delete, find, verify, limits and error classes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from channels import mastodon_media
from channels.base import PermanentError, RateLimited, Receipt, TransientError
from channels.mastodon import Mastodon, mastodon_length, plain_text
from channels.transport import channel_client
from publisher.clock import FrozenClock
from publisher.model import Attachment
from publisher.sandbox import CREDENTIALS, SandboxServer
from publisher.sandbox.mastodon_rules import render_content
from tests.conftest import make_revision

LINK = "http://127.0.0.1:8701/wordpress/2015/03/18/2015-accidents-0007-a-rather-long-slug/"


def adapter(sandbox: SandboxServer, http: httpx.AsyncClient, clock: Any, **options: Any) -> Mastodon:
    opts = {"base_url": sandbox.url("mastodon"), "access_token": CREDENTIALS["mastodon_token"], **options}
    return Mastodon(name="microblog", options=Mastodon.Options(**opts), http=http, clock=clock)


def held(sandbox: SandboxServer) -> list[dict[str, Any]]:
    return sandbox.services["mastodon"].received()["statuses"]


def requests_to(sandbox: SandboxServer, suffix: str) -> list[dict[str, Any]]:
    return [r for r in sandbox.services["mastodon"].requests if r["path"].endswith(suffix)]


@pytest.fixture
def now_clock() -> FrozenClock:
    """A clock at the real present, for waits computed against the stand-in's real-time reset headers."""
    return FrozenClock(datetime.now(UTC))


@pytest.fixture
async def short_http() -> AsyncIterator[httpx.AsyncClient]:
    async with channel_client(timeout=0.3, concurrency=1) as client:
        yield client


@pytest.mark.parametrize(("text", "expected"), [
    ("安全生产", 4),
    (LINK, 23),
    (f"标题\n\n摘要\n\n{LINK}", 31),
    ("see https://a.example/x and https://b.example/y", 4 + 23 + 5 + 23),
])
def test_mastodon_length(text: str, expected: int) -> None:
    """Characters count one each and every URL counts 23."""
    assert mastodon_length(text) == expected


def test_plain_text_reads_content_back() -> None:
    """The HTML content of a status reads back as the text that was posted."""
    assert plain_text(render_content(f"<标题> & 更多\n\n摘要\n{LINK}")) == f"<标题> & 更多\n\n摘要\n{LINK}"


async def test_publish(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """A revision becomes one public status in Chinese with title, summary and link, carrying an Idempotency-Key."""
    rev = make_revision(link=LINK)
    receipt = await adapter(sandbox, http, clock).publish(rev)
    [status] = held(sandbox)
    assert receipt == Receipt(remote_id=status["id"], url=status["url"], extra={"uri": status["uri"]})
    assert plain_text(status["content"]) == f"{rev.title}\n\n{rev.summary}\n\n{LINK}"
    assert status["visibility"] == "public" and status["language"] == "zh"
    [post] = [r for r in requests_to(sandbox, "/api/v1/statuses") if r["method"] == "POST"]
    assert post["headers"]["idempotency-key"] == rev.idempotency_key
    assert post["headers"]["authorization"] == "<redacted>"


async def test_resend_with_same_key_gives_first_status(sandbox: SandboxServer, http: httpx.AsyncClient,
                                                       clock: FrozenClock) -> None:
    """A resend of the same revision (lost answer) gets the first status back, not a second post."""
    mastodon = adapter(sandbox, http, clock)
    first = await mastodon.publish(make_revision(link=LINK))
    assert await adapter(sandbox, http, clock).publish(make_revision(link=LINK)) == first
    assert len(held(sandbox)) == 1


async def test_instance_limits_read_once_and_obeyed(sandbox: SandboxServer, http: httpx.AsyncClient,
                                                    clock: FrozenClock) -> None:
    """The instance's max_characters is read once and the text fits it, link whole, even for huge Chinese text."""
    sandbox.services["mastodon"].store["settings"]["max_characters"] = 120
    mastodon = adapter(sandbox, http, clock)
    for n in range(3):
        await mastodon.publish(make_revision(item_id=f"long-{n}", title="关" * 200, summary="摘" * 900, link=LINK))
    assert len(requests_to(sandbox, "/api/v2/instance")) == 1
    for status in held(sandbox):
        text = plain_text(status["content"])
        assert text.endswith("…\n\n" + LINK) and mastodon_length(text) <= 120


@pytest.mark.parametrize(("title", "summary", "link", "expected"), [
    ("标题", "摘要", None, "标题\n\n摘要"),
    ("标题", None, LINK, f"标题\n\n各区县安监局：\n\n{LINK}"),  # the summary defaults to the body's first paragraph
    ("标题", "摘" * 100, LINK, f"标题\n\n{'摘' * 40}…\n\n{LINK}"),
    ("题" * 100, "摘要", LINK, f"{'题' * 44}…\n\n{LINK}"),
])
def test_render_fits(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock, title: str,
                     summary: str | None, link: str | None, expected: str) -> None:
    """Summary is cut first, then the title, with "…" at a character boundary; the link is never cut."""
    text = adapter(sandbox, http, clock).render(make_revision(title=title, summary=summary, link=link), 70)
    assert text == expected and mastodon_length(text) <= 70


async def test_update_edits_in_place(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """An update edits the same status (PUT), which then shows the new text."""
    mastodon = adapter(sandbox, http, clock)
    receipt = await mastodon.publish(make_revision(link=LINK))
    again = await mastodon.update(make_revision(link=LINK, revision=2, title="更正：事故调查报告"), receipt)
    [status] = held(sandbox)
    assert again.remote_id == receipt.remote_id and status["edited_at"]
    assert plain_text(status["content"]).startswith("更正：事故调查报告")


async def test_retract_and_again(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """A retraction deletes the status; deleting it again (404) counts as done; editing it then is permanent."""
    mastodon = adapter(sandbox, http, clock)
    receipt = await mastodon.publish(make_revision(link=LINK))
    await mastodon.retract(receipt)
    assert held(sandbox) == []
    await mastodon.retract(receipt)
    assert await mastodon.verify(receipt) is False
    with pytest.raises(PermanentError, match="gone"):
        await mastodon.update(make_revision(link=LINK, revision=2), receipt)


async def test_find_after_lost_response(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """After a crash, find locates the earlier status by its link (or by title when there is none)."""
    with_link = await adapter(sandbox, http, clock).publish(make_revision(link=LINK))
    no_link = await adapter(sandbox, http, clock).publish(make_revision(item_id="b", title="无链接的通报"))
    fresh = adapter(sandbox, http, clock)
    assert await fresh.find(make_revision(link=LINK)) == with_link
    assert await fresh.find(make_revision(item_id="b", title="无链接的通报")) == no_link
    assert await fresh.find(make_revision(item_id="c", title="别的", link=LINK + "other")) is None


async def test_verify(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """verify reads the status back and checks that its public page answers."""
    mastodon = adapter(sandbox, http, clock)
    receipt = await mastodon.publish(make_revision(link=LINK))
    assert await mastodon.verify(receipt) is True
    assert await mastodon.verify(Receipt(remote_id="1")) is False


ERROR_CASES: list[tuple[str, dict[str, Any], dict[str, Any], type[Exception], str]] = [
    ("invalid token", {}, {"access_token": "wrong"}, PermanentError, "new token"),
    ("revoked (fault)", {"unauthorized": True}, {}, PermanentError, "new token"),
    ("503", {"error_rate": 1.0}, {}, TransientError, "503"),
    ("502 with Retry-After", {"error_rate": 1.0, "error_status": 502, "retry_after": "7"}, {}, TransientError, "502"),
]


@pytest.mark.parametrize(("case", "faults", "options", "error", "match"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
async def test_error_classes(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock, case: str,
                             faults: dict[str, Any], options: dict[str, Any], error: type[Exception],
                             match: str) -> None:
    """Each refusal becomes the typed error the dispatcher expects, keeping the remote's answer."""
    mastodon = adapter(sandbox, http, clock, **options)
    await mastodon.limits()  # read before the fault, as a running daemon would have
    sandbox.services["mastodon"].faults.update(faults)
    with pytest.raises(error, match=match) as info:
        await mastodon.publish(make_revision(link=LINK))
    assert type(info.value) is error and info.value.remote  # type: ignore[attr-defined]
    if faults.get("retry_after"):
        assert info.value.retry_after == 7.0  # type: ignore[attr-defined]
    assert CREDENTIALS["mastodon_token"] not in str(info.value)


async def test_429_wait_from_ratelimit_reset(sandbox: SandboxServer, http: httpx.AsyncClient,
                                             now_clock: FrozenClock) -> None:
    """A 429 without Retry-After waits until X-RateLimit-Reset, measured against the injected clock."""
    mastodon = adapter(sandbox, http, now_clock)
    await mastodon.limits()
    sandbox.services["mastodon"].faults.update({"burst_429": 1, "retry_after": "120"})
    with pytest.raises(RateLimited) as info:
        await mastodon.publish(make_revision(link=LINK))
    assert info.value.status == 429 and 115 <= (info.value.retry_after or 0) <= 121


async def test_429_when_window_spent(sandbox: SandboxServer, http: httpx.AsyncClient, now_clock: FrozenClock) -> None:
    """Spending the window's budget gives RateLimited with a wait no longer than the window."""
    mastodon = adapter(sandbox, http, now_clock)
    await mastodon.limits()  # anonymous: counted per address, apart from the token's budget
    sandbox.services["mastodon"].store["settings"]["rate_limit"] = 1
    await mastodon.publish(make_revision(link=LINK))  # the token's one request of this window
    with pytest.raises(RateLimited) as info:
        await mastodon.publish(make_revision(item_id="next", link=LINK + "next"))
    assert 0 <= (info.value.retry_after or -1) <= 301


async def test_422_is_permanent(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock) -> None:
    """A validation refusal (the server's limit shrank after it was read) is permanent, with Mastodon's message."""
    mastodon = adapter(sandbox, http, clock)
    await mastodon.limits()
    sandbox.services["mastodon"].store["settings"]["max_characters"] = 20
    with pytest.raises(PermanentError, match="character limit of 20 exceeded") as info:
        await mastodon.publish(make_revision(link=LINK))
    assert info.value.status == 422


async def test_timeout_is_transient(sandbox: SandboxServer, short_http: httpx.AsyncClient,
                                    clock: FrozenClock) -> None:
    """A server that never answers gives a TransientError once the client's timeout fires."""
    mastodon = adapter(sandbox, short_http, clock)
    await mastodon.limits()
    sandbox.services["mastodon"].faults.black_hole = True
    with pytest.raises(TransientError, match="Timeout"):
        await mastodon.publish(make_revision(link=LINK))


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Retry-After": "30"}, 30.0),
    ({"X-RateLimit-Reset": "2015-03-18T09:05:00.000Z", "Retry-After": "30"}, 300.0),
    ({}, None),
])
async def test_429_headers(clock: FrozenClock, headers: dict[str, str], expected: float | None) -> None:
    """X-RateLimit-Reset wins, Retry-After is the fallback (a proxy in front may send it), else no hint."""
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/instance"):
            return httpx.Response(404, json={"error": "Record not found"})  # an old server: defaults apply
        return httpx.Response(429, json={"error": "Too many requests"}, headers=headers)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        mastodon = Mastodon(name="m", http=http, clock=clock,
                            options=Mastodon.Options(base_url="https://social.example", access_token=SecretStr("t")))
        with pytest.raises(RateLimited) as info:
            await mastodon.publish(make_revision(link=LINK))
    assert info.value.retry_after == expected


def test_options() -> None:
    """Options hold the token as a secret and default to public Chinese posts with pictures."""
    opts = Mastodon.Options(base_url="https://social.example", access_token=SecretStr("very-secret"))
    assert "very-secret" not in repr(opts) and (opts.visibility, opts.language) == ("public", "zh")
    assert opts.with_pictures is True
    assert Mastodon.default_rate_limit == "300/5m" and Mastodon.type_name == "mastodon"


# --- pictures --------------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 64


def attachment(folder: Path, name: str, data: bytes) -> Attachment:
    path = folder / name
    path.write_bytes(data)
    return Attachment.of(name, path)


def media_held(sandbox: SandboxServer) -> list[dict[str, Any]]:
    return sandbox.services["mastodon"].received()["media"]


def settings(sandbox: SandboxServer) -> dict[str, Any]:
    return sandbox.services["mastodon"].store["settings"]


@pytest.fixture
def pictures(tmp_path: Path) -> tuple[Attachment, ...]:
    """Two pictures and a PDF, in the order an editor listed them."""
    return (attachment(tmp_path, "事故现场.jpg", JPEG), attachment(tmp_path, "调查报告.pdf", b"%PDF-1.4 report"),
            attachment(tmp_path, "IMG_0042.png", PNG))


async def test_publish_with_pictures(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock,
                                     pictures: tuple[Attachment, ...]) -> None:
    """Two images and a PDF: the status carries exactly the two images, in order, each with a description;
    the PDF is left out and logged."""
    rev = make_revision(link=LINK, attachments=pictures)
    with capture_logs() as logs:
        receipt = await adapter(sandbox, http, clock).publish(rev)
    [status] = held(sandbox)
    assert receipt.remote_id == status["id"]
    media = status["media_attachments"]
    assert [m["type"] for m in media] == ["image", "image"] and all(m["url"] for m in media)
    # a telling file name describes its picture; a camera's serial gives way to the item's title
    assert [m["description"] for m in media] == ["事故现场", rev.title]
    assert [(m["content_type"], m["size"], m["status_id"]) for m in media_held(sandbox)] == [
        ("image/jpeg", len(JPEG), status["id"]), ("image/png", len(PNG), status["id"])]
    [skipped] = [e for e in logs if e["event"] == "mastodon.attachment_skipped"]
    assert skipped["attachment"] == "调查报告.pdf" and skipped["reason"] == "not_a_picture"
    assert skipped["item_id"] == rev.item_id and skipped["channel"] == "microblog"
    [post] = [r for r in requests_to(sandbox, "/api/v1/statuses") if r["method"] == "POST"]
    assert post["headers"]["idempotency-key"] == rev.idempotency_key


async def test_publish_waits_for_processing(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock,
                                            pictures: tuple[Attachment, ...]) -> None:
    """An upload answered 202 is polled (206, then 200) before the status names it."""
    settings(sandbox).update(media_async=True, media_processing_polls=2)
    await adapter(sandbox, http, clock).publish(make_revision(link=LINK, attachments=pictures))
    [status] = held(sandbox)
    assert len(status["media_attachments"]) == 2 and all(m["url"] for m in status["media_attachments"])
    looks = [r for r in sandbox.services["mastodon"].requests if "/api/v1/media/" in r["path"]]
    assert len(looks) == 2 * 3  # two 206 answers and one 200 for each picture
    assert all(r["method"] == "GET" and r["headers"]["authorization"] == "<redacted>" for r in looks)


async def test_processing_that_never_ends_is_transient(sandbox: SandboxServer, http: httpx.AsyncClient,
                                                       clock: FrozenClock, pictures: tuple[Attachment, ...],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A picture still processing after the bounded wait gives a TransientError, and no status is posted."""
    monkeypatch.setattr(mastodon_media, "MEDIA_POLL_DELAYS", (0.01, 0.01, 0.01))
    settings(sandbox).update(media_async=True, media_processing_polls=100)
    with pytest.raises(TransientError, match="still processing") as info:
        await adapter(sandbox, http, clock).publish(make_revision(link=LINK, attachments=pictures))
    assert info.value.retry_after
    assert held(sandbox) == []
    assert len([r for r in sandbox.services["mastodon"].requests if "/api/v1/media/" in r["path"]]) == 3


async def test_pictures_off(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock,
                            pictures: tuple[Attachment, ...]) -> None:
    """with_pictures: false uploads nothing and posts the text alone."""
    await adapter(sandbox, http, clock, with_pictures=False).publish(make_revision(link=LINK, attachments=pictures))
    [status] = held(sandbox)
    assert status["media_attachments"] == [] and media_held(sandbox) == []
    assert requests_to(sandbox, "/api/v2/media") == []


async def test_update_carries_pictures(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock,
                                       pictures: tuple[Attachment, ...], tmp_path: Path) -> None:
    """An edit names the revision's pictures again (an edit without them would detach them); a revision
    without pictures leaves the status without any."""
    mastodon = adapter(sandbox, http, clock)
    receipt = await mastodon.publish(make_revision(link=LINK, attachments=pictures[:1]))
    more = (*pictures, attachment(tmp_path, "整改现场.webp", b"RIFF\x10\0\0\0WEBPVP8 " + b"\0" * 16))
    await mastodon.update(make_revision(link=LINK, revision=2, title="更正：事故调查报告", attachments=more), receipt)
    [status] = held(sandbox)
    assert status["edited_at"] and plain_text(status["content"]).startswith("更正：事故调查报告")
    assert [m["description"] for m in status["media_attachments"]] == ["事故现场", "更正：事故调查报告", "整改现场"]
    await mastodon.update(make_revision(link=LINK, revision=3), receipt)
    [status] = held(sandbox)
    assert status["media_attachments"] == []


async def test_resend_posts_once_with_pictures(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock,
                                               pictures: tuple[Attachment, ...]) -> None:
    """A resend of the same revision uploads again but gets the first status back, pictures and all."""
    rev = make_revision(link=LINK, attachments=pictures)
    first = await adapter(sandbox, http, clock).publish(rev)
    again = await adapter(sandbox, http, clock).publish(rev)
    [status] = held(sandbox)
    assert again == first and len(status["media_attachments"]) == 2
    assert [m["status_id"] for m in media_held(sandbox)] == [status["id"]] * 2 + [None] * 2  # orphans, harmless


async def test_upload_failure_then_retry(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock,
                                         pictures: tuple[Attachment, ...]) -> None:
    """A 503 on an upload is transient and posts nothing; the retry posts one status with both pictures."""
    mastodon = adapter(sandbox, http, clock)
    await mastodon.limits()
    sandbox.services["mastodon"].faults.update({"error_rate": 1.0})
    with pytest.raises(TransientError, match="503"):
        await mastodon.publish(make_revision(link=LINK, attachments=pictures))
    assert held(sandbox) == []
    sandbox.services["mastodon"].faults.update({"error_rate": 0.0})
    await mastodon.publish(make_revision(link=LINK, attachments=pictures))
    [status] = held(sandbox)
    assert len(status["media_attachments"]) == 2


async def test_upload_throttled(sandbox: SandboxServer, http: httpx.AsyncClient, now_clock: FrozenClock,
                                pictures: tuple[Attachment, ...]) -> None:
    """The upload throttle's 429 is RateLimited, waiting until its X-RateLimit-Reset."""
    settings(sandbox)["media_rate_limit"] = 1
    with pytest.raises(RateLimited) as info:
        await adapter(sandbox, http, now_clock).publish(make_revision(link=LINK, attachments=pictures))
    assert 0 < (info.value.retry_after or 0) <= 1800 and held(sandbox) == []


async def test_refused_picture_is_permanent(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock,
                                            tmp_path: Path) -> None:
    """A file named like a picture that is not one is refused (422): permanent, naming the way out, nothing posted."""
    fake = attachment(tmp_path, "现场.png", b"%PDF-1.4 not a picture")
    with pytest.raises(PermanentError, match="with_pictures: false") as info:
        await adapter(sandbox, http, clock).publish(make_revision(link=LINK, attachments=(fake,)))
    assert info.value.status == 422 and "现场.png" in str(info.value)
    assert held(sandbox) == []


async def test_instance_media_limits(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock,
                                     tmp_path: Path) -> None:
    """At most the instance's max_media_attachments go along, each under its image_size_limit; the rest are logged."""
    settings(sandbox).update(max_media_attachments=2, image_size_limit=1024)
    atts = (attachment(tmp_path, "大图.png", PNG + b"\0" * 2000),
            *(attachment(tmp_path, f"图{n}.jpg", JPEG) for n in range(1, 4)))
    with capture_logs() as logs:
        await adapter(sandbox, http, clock).publish(make_revision(link=LINK, attachments=atts))
    [status] = held(sandbox)
    assert [m["description"] for m in status["media_attachments"]] == ["图1", "图2"]
    skipped = [(e["attachment"], e["reason"]) for e in logs if e["event"] == "mastodon.attachment_skipped"]
    assert skipped == [("大图.png", "too_large"), ("图3.jpg", "too_many")]
    assert len(requests_to(sandbox, "/api/v2/instance")) == 1


def test_alt_text(tmp_path: Path) -> None:
    """The description is the file name without its extension, or the title for a serial name; cut to the limit."""
    rev = make_revision(title="关于某化工企业爆炸事故的通报")
    cases = {"事故现场 全景.jpg": "事故现场 全景", "IMG_20150318_0942.jpg": rev.title, "微信图片_20150318.png": rev.title,
             "DSC01234.JPG": rev.title, "2015-03-18.png": rev.title, "scene.png": "scene"}
    for name, expected in cases.items():
        assert mastodon_media.alt_text(Attachment(name=name, path=tmp_path / name, size=1, content_type="image/png"),
                                 rev) == expected
    long = Attachment(name="长" * 2000 + ".png", path=tmp_path / "x.png", size=1, content_type="image/png")
    assert len(mastodon_media.alt_text(long, rev)) == 1500
