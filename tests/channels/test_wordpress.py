"""The wordpress adapter against the WordPress stand-in, over loopback HTTP."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from channels.base import PermanentError, RateLimited, TransientError
from channels.transport import channel_client
from channels.wordpress import WordPress, slug_for
from publisher.model import Attachment
from publisher.sandbox import CREDENTIALS, SandboxServer
from publisher.sandbox.wordpress import CONTRIBUTOR
from tests.conftest import make_revision

AUTH = (CREDENTIALS["wordpress_user"], CREDENTIALS["wordpress_app_password"])


def adapter(sandbox: SandboxServer, http: httpx.AsyncClient, clock: Any, **options: Any) -> WordPress:
    opts = {"base_url": sandbox.url("wordpress"), "username": AUTH[0], "app_password": AUTH[1], **options}
    return WordPress(name="bureau_site", options=WordPress.Options(**opts), http=http, clock=clock,
                     display_name="市安监局门户网站")


@pytest.fixture
def wp(sandbox: SandboxServer, http: httpx.AsyncClient, clock: Any) -> WordPress:
    return adapter(sandbox, http, clock)


async def remote(sandbox: SandboxServer, http: httpx.AsyncClient, path: str, **params: Any) -> Any:
    """What the site holds, read as an editor would through the API."""
    resp = await http.get(f"{sandbox.url('wordpress')}/wp-json/wp/v2/{path}", params=params, auth=AUTH)
    return resp.json() if resp.status_code == 200 else resp.status_code


def requests_to(sandbox: SandboxServer, method: str, suffix: str) -> int:
    log = sandbox.services["wordpress"].requests
    return sum(1 for r in log if r["method"] == method and r["path"].endswith(suffix))


async def test_publish_creates_the_post_with_chinese_title_body_category_and_excerpt(sandbox, http, wp) -> None:
    """publish makes a published post whose Chinese title, body, excerpt and category come back intact."""
    rev = make_revision()
    receipt = await wp.publish(rev)
    post = await remote(sandbox, http, f"posts/{receipt.remote_id}", context="edit")
    assert receipt.url == post["link"] and post["status"] == "publish"
    assert post["slug"] == "item-2015-accidents-0007" and receipt.extra["slug"] == post["slug"]
    assert post["title"]["raw"] == rev.title
    assert "<strong>请各单位认真吸取教训。</strong>" in post["content"]["raw"]
    assert "<li>加强隐患排查</li>" in post["content"]["raw"]
    assert post["excerpt"]["raw"] == "通报某化工企业较大爆炸事故调查结果"
    [term] = await remote(sandbox, http, "categories", slug="accidents")
    assert post["categories"] == [term["id"]] and term["name"] == "事故通报"


async def test_a_create_that_landed_late_is_kept_and_the_new_one_trashed(sandbox, http, wp) -> None:
    """An earlier attempt's create landed after its timeout, as a draft: the next publish keeps that older post,
    trashes its own, and publishes the kept one with this revision's content; one post is public, under the slug."""
    rev = make_revision(revision=2)
    slug = slug_for(rev.item_id)
    late = await http.post(f"{sandbox.url('wordpress')}/wp-json/wp/v2/posts", auth=AUTH,
                           json={"title": "旧稿", "content": "旧稿", "status": "draft", "slug": slug})
    assert await wp.find(rev) is None  # a draft is not the published post
    receipt = await wp.publish(rev)
    assert receipt.remote_id == str(late.json()["id"])
    posts = await remote(sandbox, http, "posts", status="publish,draft,trash", context="edit", per_page=100)
    assert sorted((p["status"], p["slug"]) for p in posts) == [("publish", slug), ("trash", slug + "__trashed")]
    kept = await remote(sandbox, http, f"posts/{receipt.remote_id}", context="edit")
    assert kept["title"]["raw"] == rev.title and "revision=2" in kept["content"]["raw"]
    assert (await wp.find(rev)) is not None


async def test_update_replaces_the_same_post(sandbox, http, wp) -> None:
    """update rewrites title and body of the post it was given and keeps its id and slug."""
    first = await wp.publish(make_revision())
    second = await wp.update(make_revision(revision=2, title="更正：事故调查报告", body="第二版正文"), first)
    post = await remote(sandbox, http, f"posts/{first.remote_id}", context="edit")
    assert second.remote_id == first.remote_id and second.extra["revision"] == 2
    assert post["title"]["raw"] == "更正：事故调查报告" and "第二版正文" in post["content"]["raw"]
    assert post["slug"] == first.extra["slug"]


@pytest.mark.parametrize(("force", "after"), [(False, "trash"), (True, 404)])
async def test_retract_trashes_or_deletes_and_tolerates_a_repeat(sandbox, http, clock, force, after) -> None:
    """retract moves the post to the trash (or deletes it with force_delete), and a repeat is not an error."""
    wp = adapter(sandbox, http, clock, force_delete=force)
    receipt = await wp.publish(make_revision())
    await wp.retract(receipt)
    post = await remote(sandbox, http, f"posts/{receipt.remote_id}")
    assert (post["status"] if isinstance(post, dict) else post) == after
    await wp.retract(receipt)  # the first answer was lost: the retraction is retried


async def test_find_after_a_lost_response(sandbox, http, clock, wp) -> None:
    """A post created whose answer was lost is found by a fresh adapter; an item never sent is not."""
    receipt = await wp.publish(make_revision())
    found = await adapter(sandbox, http, clock).find(make_revision())
    assert found is not None and found.remote_id == receipt.remote_id and found.url == receipt.url
    assert found.extra["revision"] == 1
    assert await wp.find(make_revision(item_id="2015-accidents-0099")) is None


async def test_find_sees_drafts_but_not_retracted_posts(sandbox, http, clock) -> None:
    """find looks over every status but trash, so a draft is found and a trashed post is not."""
    drafts = adapter(sandbox, http, clock, status="draft")
    await drafts.publish(make_revision(item_id="draft-1"))
    assert await drafts.find(make_revision(item_id="draft-1")) is not None
    gone = await drafts.publish(make_revision(item_id="gone-1"))
    await drafts.retract(gone)
    assert await drafts.find(make_revision(item_id="gone-1")) is None


@pytest.mark.parametrize("item_id", ["2015_Accidents-0007", "事故通报-0007", "ABC", "a.b.c"])
async def test_ids_outside_slug_form_still_round_trip(sandbox, http, wp, item_id) -> None:
    """An item id that WordPress would rewrite gets a slug it keeps, so find still sees the post."""
    receipt = await wp.publish(make_revision(item_id=item_id))
    assert receipt.extra["slug"] == slug_for(item_id)
    found = await wp.find(make_revision(item_id=item_id))
    assert found is not None and found.remote_id == receipt.remote_id
    assert await wp.find(make_revision(item_id=item_id.lower() + "x")) is None


async def test_verify_is_true_while_published_and_false_once_retracted(sandbox, http, clock, wp) -> None:
    """verify reads the post back and opens its page: published → True; trashed or deleted → False."""
    receipt = await wp.publish(make_revision())
    assert await wp.verify(receipt) is True
    await wp.retract(receipt)
    assert await wp.verify(receipt) is False
    await adapter(sandbox, http, clock, force_delete=True).retract(receipt)
    assert await wp.verify(receipt) is False


async def test_verify_is_false_for_a_draft(sandbox, http, clock) -> None:
    """A post that is not published is not live for readers."""
    drafts = adapter(sandbox, http, clock, status="draft")
    assert await drafts.verify(await drafts.publish(make_revision())) is False


async def test_category_is_created_once_and_reused(sandbox, http, clock, wp) -> None:
    """The category term is created on first use, then found by slug or taken from the adapter's cache."""
    await wp.publish(make_revision(item_id="a-1"))
    await wp.publish(make_revision(item_id="a-2"))
    await adapter(sandbox, http, clock).publish(make_revision(item_id="a-3"))
    assert requests_to(sandbox, "POST", "/categories") == 1
    assert requests_to(sandbox, "GET", "/categories") == 2  # one per adapter instance
    [term] = await remote(sandbox, http, "categories", slug="accidents")
    posts = await remote(sandbox, http, "posts", per_page=100)
    assert {tuple(p["categories"]) for p in posts} == {(term["id"],)}


async def test_category_map_names_the_wordpress_slug(sandbox, http, clock) -> None:
    """category_map sends our category to the WordPress category with the mapped slug, created if missing."""
    wp = adapter(sandbox, http, clock, category_map={"accidents": "shigu-tongbao"})
    receipt = await wp.publish(make_revision())
    [term] = await remote(sandbox, http, "categories", slug="shigu-tongbao")
    assert (await remote(sandbox, http, f"posts/{receipt.remote_id}"))["categories"] == [term["id"]]


async def test_attachments_are_uploaded_once_and_linked(sandbox, http, wp, tmp_path: Path) -> None:
    """Attachments go to the media library, are linked under the body, and an unchanged file is not re-sent."""
    pdf = tmp_path / "事故调查报告.pdf"
    pdf.write_bytes(b"%PDF-1.4 investigation report")
    att = Attachment.of("事故调查报告.pdf", pdf)
    first = await wp.publish(make_revision(attachments=(att,)))
    await wp.update(make_revision(revision=2, attachments=(att,)), first)
    [media] = sandbox.services["wordpress"].received()["media"]
    assert media["title"]["rendered"] == "事故调查报告.pdf" and media["mime_type"] == "application/pdf"
    post = await remote(sandbox, http, f"posts/{first.remote_id}", context="edit")
    assert f'<a href="{media["source_url"]}">事故调查报告.pdf</a>' in post["content"]["raw"]
    assert (await http.get(media["source_url"])).content == b"%PDF-1.4 investigation report"


async def test_a_refused_file_type_is_permanent(sandbox, http, wp, tmp_path: Path) -> None:
    """WordPress answers 500 to a forbidden file type; retrying cannot help, so it is a PermanentError."""
    exe = tmp_path / "setup.exe"
    exe.write_bytes(b"MZ")
    with pytest.raises(PermanentError, match="file type"):
        await wp.publish(make_revision(attachments=(Attachment.of("setup.exe", exe),)))


HOSTILE = [
    "<script>alert('x')</script>正文",
    '<img src="x.png" onerror="alert(1)">',
    '<a href="javascript:alert(1)">点此</a>',
    "[点此](javascript:alert(1))",
    '<iframe src="https://evil.example/"></iframe>',
    '<svg onload="alert(1)"><circle/></svg>',
    '<p style="background:url(javascript:alert(1))" onclick="x()">段落</p>',
    "<style>body{display:none}</style><SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    '<a href="JaVaScRiPt:alert(1)">x</a> <a href="data:text/html;base64,PHNjcmlwdD4=">y</a>',
]


class Markup(HTMLParser):
    """The tags and attributes of an HTML fragment, as a browser would see them."""

    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attrs: list[tuple[str, str]] = []
        self.feed(fragment)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attrs += [(name, (value or "").strip().lower()) for name, value in attrs]


@pytest.mark.parametrize("body", HOSTILE)
async def test_hostile_html_is_stripped(sandbox, http, wp, body) -> None:
    """Whatever the body holds, the stored content has no script, event handler, style or javascript: URL."""
    receipt = await wp.publish(make_revision(body=body, title="<script>alert(1)</script>通报"))
    post = await remote(sandbox, http, f"posts/{receipt.remote_id}", context="edit")
    markup = Markup(post["content"]["raw"])
    assert not markup.tags & {"script", "iframe", "style", "svg", "object", "embed"}, markup.tags
    for name, value in markup.attrs:
        assert not name.startswith("on") and name != "style", (name, value)
        assert not value.startswith(("javascript:", "data:", "vbscript:")), (name, value)
    assert post["title"]["raw"] == "&lt;script&gt;alert(1)&lt;/script&gt;通报"


@pytest.mark.parametrize(("knobs", "error", "status", "retry_after"), [
    ({"error_rate": 1.0, "error_status": 503, "retry_after": "120"}, TransientError, 503, 120.0),
    ({"error_rate": 1.0, "error_status": 500}, TransientError, 500, None),
    ({"error_rate": 1.0, "error_status": 502}, TransientError, 502, None),
    ({"burst_429": 1, "retry_after": "30"}, RateLimited, 429, 30.0),
    ({"burst_429": 1}, RateLimited, 429, None),
    ({"burst_429": 1, "retry_after": "Wed, 18 Mar 2015 09:01:00 GMT"}, RateLimited, 429, 60.0),  # clock: 09:00
    ({"error_rate": 1.0, "error_status": 408}, TransientError, 408, None),
    ({"error_rate": 1.0, "error_status": 400}, PermanentError, 400, None),
    ({"error_rate": 1.0, "error_status": 422}, PermanentError, 422, None),
    ({"unauthorized": True}, PermanentError, 401, None),
])
async def test_error_classes(sandbox, wp, knobs, error, status, retry_after) -> None:
    """Each failure maps to its typed error: 408/429/5xx transient (with Retry-After), 400/401/422 permanent."""
    sandbox.services["wordpress"].faults.update(knobs)
    with pytest.raises(error) as caught:
        await wp.publish(make_revision())
    assert type(caught.value) is error and caught.value.status == status
    if isinstance(caught.value, TransientError):
        assert caught.value.retry_after == retry_after
    else:
        assert caught.value.remote and "code" in caught.value.remote


async def test_wrong_application_password_tells_the_admin(sandbox, http, clock) -> None:
    """A wrong password makes WordPress treat the calls as anonymous: each refusal is permanent and names
    the application password, whether WordPress answers 401 (a write) or 400 rest_forbidden_status (find)."""
    wp = adapter(sandbox, http, clock, app_password="wrong")
    with pytest.raises(PermanentError) as caught:
        await wp.publish(make_revision())
    assert caught.value.status == 401 and "rest_cannot_create" in str(caught.value)
    assert "application password" in str(caught.value) and "wrong" not in str(caught.value)  # no secret in it
    with pytest.raises(PermanentError) as caught:
        await wp.find(make_revision())
    assert caught.value.status == 400 and "anonymous" in str(caught.value)
    assert "application password" in str(caught.value)


async def test_a_user_who_may_not_publish_gets_a_permanent_403(sandbox, http, clock) -> None:
    """A WordPress user without the publish right is refused with 403, surfaced with the role to give it."""
    wp = adapter(sandbox, http, clock, username=CONTRIBUTOR[0], app_password=CONTRIBUTOR[1])
    with pytest.raises(PermanentError) as caught:
        await wp.publish(make_revision(category="uncategorized"))
    assert caught.value.status == 403 and "rest_cannot_publish" in str(caught.value) and "Editor" in str(caught.value)


async def test_update_of_a_post_deleted_by_hand_is_permanent(sandbox, http, wp) -> None:
    """An update whose post no longer exists is a 404 a person must look at."""
    receipt = await wp.publish(make_revision())
    await http.delete(f"{sandbox.url('wordpress')}/wp-json/wp/v2/posts/{receipt.remote_id}",
                      params={"force": "true"}, auth=AUTH)
    with pytest.raises(PermanentError, match="rest_post_invalid_id"):
        await wp.update(make_revision(revision=2), receipt)


async def test_black_hole_times_out_as_transient(sandbox, clock) -> None:
    """A server that never answers trips the client's timeout, which is a TransientError."""
    sandbox.services["wordpress"].faults.update({"black_hole": True})
    async with channel_client(timeout=0.3, concurrency=1) as short:
        with pytest.raises(TransientError, match="Timeout") as caught:
            await adapter(sandbox, short, clock).publish(make_revision())
    assert type(caught.value) is TransientError


async def test_connection_refused_is_transient(http, clock) -> None:
    """Nothing listening at base_url is a TransientError (the site may come back)."""
    options = WordPress.Options(base_url="http://127.0.0.1:9", username="u", app_password="p")
    wp = WordPress(name="bureau_site", options=options, http=http, clock=clock)
    with pytest.raises(TransientError, match="ConnectError"):
        await wp.find(make_revision())


async def test_a_site_without_the_rest_api_is_permanent(sandbox, http, clock) -> None:
    """A base_url that is not a WordPress site root answers 404 without a WordPress code: a config error."""
    wp = adapter(sandbox, http, clock, base_url=sandbox.url("wordpress") + "/nowhere")
    with pytest.raises(PermanentError, match="base_url"):
        await wp.find(make_revision())


def test_options_refuse_a_prefix_wordpress_would_rewrite() -> None:
    """A slug_prefix with characters WordPress would change is refused at configuration time."""
    with pytest.raises(ValueError, match="slug_prefix"):
        WordPress.Options(base_url="http://x", username="u", app_password="p", slug_prefix="Item_")
