"""Conformance of the WordPress stand-in with the documented REST API v2, over raw HTTP."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from publisher.sandbox import CREDENTIALS, SandboxServer
from publisher.sandbox.wordpress import CONTRIBUTOR

AUTH = (CREDENTIALS["wordpress_user"], CREDENTIALS["wordpress_app_password"])
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")


def api(sandbox: SandboxServer, path: str) -> str:
    return f"{sandbox.url('wordpress')}/wp-json/wp/v2/{path}"


async def create(http: httpx.AsyncClient, sandbox: SandboxServer, **body: Any) -> dict[str, Any]:
    resp = await http.post(api(sandbox, "posts"), json={"title": "标题", "content": "<p>正文</p>",
                                                         "status": "publish", **body}, auth=AUTH)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


def assert_wp_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["code"] == code and body["message"] and body["data"]["status"] == status
    return body  # type: ignore[no-any-return]


async def test_create_answers_201_with_location_and_the_documented_fields(sandbox, http) -> None:
    """A created post answers 201 with Location and id, UTC dates without a zone, slug, link, rendered and raw."""
    resp = await http.post(api(sandbox, "posts"), auth=AUTH, json={
        "title": "安全生产通报", "content": "<p>正文</p>", "status": "publish", "slug": "item-a", "excerpt": "摘要"})
    assert resp.status_code == 201
    post = resp.json()
    assert resp.headers["Location"] == api(sandbox, f"posts/{post['id']}")
    assert post["status"] == "publish" and post["slug"] == "item-a" and post["type"] == "post"
    for key in ("date", "date_gmt", "modified", "modified_gmt"):
        assert DATE.match(post[key]), post[key]
    assert post["title"] == {"rendered": "安全生产通报", "raw": "安全生产通报"}
    assert post["content"]["rendered"] == "<p>正文</p>" and post["excerpt"]["raw"] == "摘要"
    assert post["link"] == f"{sandbox.url('wordpress')}/?p={post['id']}"
    assert post["categories"] == [1]  # Uncategorized, as WordPress assigns by default


async def test_application_password_is_accepted_without_its_spaces(sandbox, http) -> None:
    """WordPress ignores the spaces that group an application password."""
    auth = (AUTH[0], AUTH[1].replace(" ", ""))
    resp = await http.get(api(sandbox, "posts"), params={"status": "draft"}, auth=auth)
    assert resp.status_code == 200


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), [
    # a wrong password or user makes the request anonymous (a real WordPress 6.1.9 answers so)
    ("GET", "posts", {"auth": (AUTH[0], "wrong pass word"), "params": {"context": "edit"}}, 401,
     "rest_forbidden_context"),
    ("GET", "posts", {"auth": (AUTH[0], "wrong pass word"), "params": {"status": "draft"}}, 400, "rest_invalid_param"),
    ("POST", "posts", {"auth": (AUTH[0], "wrong pass word"), "json": {"title": "x"}}, 401, "rest_cannot_create"),
    ("POST", "posts", {"auth": ("nobody", AUTH[1]), "json": {"title": "x"}}, 401, "rest_cannot_create"),
    ("POST", "posts", {"json": {"title": "x"}}, 401, "rest_cannot_create"),
    ("POST", "posts", {"auth": AUTH, "json": {"title": "x", "status": "published"}}, 400, "rest_invalid_param"),
    ("POST", "posts", {"auth": AUTH, "json": {"title": "x", "categories": ["a"]}}, 400, "rest_invalid_param"),
    ("POST", "posts", {"auth": AUTH, "json": {"status": "publish"}}, 400, "empty_content"),
    ("POST", "posts", {"auth": AUTH, "content": b"{oops", "headers": {"Content-Type": "application/json"}},
     400, "rest_invalid_json"),
    ("GET", "posts", {"params": {"status": "publish,draft"}}, 400, "rest_invalid_param"),
    ("GET", "posts", {"params": {"per_page": "101"}}, 400, "rest_invalid_param"),
    ("GET", "posts", {"params": {"orderby": "popularity"}}, 400, "rest_invalid_param"),
    ("GET", "posts", {"params": {"modified_after": "yesterday"}}, 400, "rest_invalid_param"),
    ("GET", "posts/999", {}, 404, "rest_post_invalid_id"),
    ("POST", "posts/999", {"auth": AUTH, "json": {"title": "x"}}, 404, "rest_post_invalid_id"),
    ("DELETE", "posts/999", {"auth": AUTH}, 404, "rest_post_invalid_id"),
    ("GET", "pages-of-nothing", {}, 404, "rest_no_route"),
    ("POST", "categories", {"json": {"name": "安监要闻"}}, 401, "rest_cannot_create"),
    ("POST", "categories", {"auth": AUTH, "json": {"slug": "news"}}, 400, "rest_missing_callback_param"),
    ("POST", "posts", {"auth": CONTRIBUTOR, "json": {"title": "x", "status": "publish"}}, 403, "rest_cannot_publish"),
    ("POST", "media", {"auth": CONTRIBUTOR, "content": b"x", "headers": {"Content-Type": "text/plain"}},
     403, "rest_cannot_create"),
])
async def test_refusals_use_the_wordpress_error_shape(sandbox, http, method, path, kwargs, status, code) -> None:
    """Each refusal answers WordPress's status and {"code", "message", "data": {"status"}}."""
    assert_wp_error(await http.request(method, api(sandbox, path), **kwargs), status, code)


async def test_a_wrong_password_still_reads_what_is_public(sandbox, http) -> None:
    """WordPress 6.1 serves a request with a wrong application password as an anonymous one."""
    post = await create(http, sandbox, slug="item-public")
    resp = await http.get(api(sandbox, f"posts/{post['id']}"), auth=(AUTH[0], "wrong pass word"))
    assert resp.status_code == 200 and "raw" not in resp.json()["title"]


async def test_invalid_param_names_the_parameter(sandbox, http) -> None:
    """A bad status value is reported under data.params with the enum it must be one of."""
    resp = await http.post(api(sandbox, "posts"), json={"title": "x", "status": "live"}, auth=AUTH)
    body = assert_wp_error(resp, 400, "rest_invalid_param")
    assert body["message"] == "Invalid parameter(s): status"
    assert "publish" in body["data"]["params"]["status"]


async def test_update_by_post_and_put_answers_200(sandbox, http) -> None:
    """POST and PUT on /posts/<id> both update the post and answer 200 with the new fields."""
    post = await create(http, sandbox, slug="item-u")
    for method, title in (("POST", "第二版"), ("PUT", "第三版")):
        resp = await http.request(method, api(sandbox, f"posts/{post['id']}"), json={"title": title}, auth=AUTH)
        assert resp.status_code == 200 and resp.json()["title"]["raw"] == title
    got = (await http.get(api(sandbox, f"posts/{post['id']}"))).json()
    assert got["title"]["rendered"] == "第三版" and "raw" not in got["title"] and got["slug"] == "item-u"


async def test_unpublished_posts_need_auth_to_read(sandbox, http) -> None:
    """A draft is hidden from readers (401 rest_forbidden) and shown to its editor."""
    post = await create(http, sandbox, status="draft")
    assert_wp_error(await http.get(api(sandbox, f"posts/{post['id']}")), 401, "rest_forbidden")
    assert (await http.get(api(sandbox, f"posts/{post['id']}"), auth=AUTH)).json()["status"] == "draft"


async def test_list_by_slug_over_every_status_with_auth(sandbox, http) -> None:
    """?slug=&status=publish,draft,... finds a post whatever its status, for an authenticated user."""
    await create(http, sandbox, slug="item-d", status="draft")
    await create(http, sandbox, slug="item-other")
    resp = await http.get(api(sandbox, "posts"), auth=AUTH,
                          params={"slug": "item-d", "status": "publish,draft,future,pending,private"})
    assert [p["slug"] for p in resp.json()] == ["item-d"]
    assert (await http.get(api(sandbox, "posts"), params={"slug": "item-d"})).json() == []


async def test_pagination_headers_and_modified_order(sandbox, http) -> None:
    """per_page/page slice the list; X-WP-Total and X-WP-TotalPages count it; a page past the end is 400."""
    ids = [(await create(http, sandbox, slug=f"item-{n}"))["id"] for n in range(5)]
    await http.post(api(sandbox, f"posts/{ids[0]}"), json={"title": "改"}, auth=AUTH)
    params = {"orderby": "modified", "order": "asc", "per_page": "2", "page": "3"}
    resp = await http.get(api(sandbox, "posts"), params=params)
    assert resp.headers["X-WP-Total"] == "5" and resp.headers["X-WP-TotalPages"] == "3"
    everything = (await http.get(api(sandbox, "posts"), params={**params, "per_page": "100", "page": "1"})).json()
    keys = [(p["modified_gmt"], p["id"]) for p in everything]
    assert keys == sorted(keys) and sorted(p["id"] for p in everything) == ids
    assert [p["id"] for p in resp.json()] == [everything[-1]["id"]]
    resp = await http.get(api(sandbox, "posts"), params={**params, "page": "4"})
    assert_wp_error(resp, 400, "rest_post_invalid_page_number")


async def test_modified_after_is_strict(sandbox, http) -> None:
    """modified_after lists posts modified strictly after the given time (a zone offset is honoured)."""
    post = await create(http, sandbox)
    before = (await http.get(api(sandbox, "posts"), params={"modified_after": "2000-01-01T08:00:00+08:00"})).json()
    at = (await http.get(api(sandbox, "posts"), params={"modified_after": post["modified_gmt"] + "Z"})).json()
    assert [p["id"] for p in before] == [post["id"]] and at == []


async def test_delete_trashes_then_410_then_force_deletes(sandbox, http) -> None:
    """DELETE trashes (200, status trash, slug freed), again 410; force=true answers deleted/previous."""
    post = await create(http, sandbox, slug="item-t")
    url = api(sandbox, f"posts/{post['id']}")
    trashed = await http.delete(url, auth=AUTH)
    assert trashed.status_code == 200 and trashed.json()["status"] == "trash"
    assert trashed.json()["slug"] == "item-t__trashed"
    assert_wp_error(await http.delete(url, auth=AUTH), 410, "rest_already_trashed")
    assert_wp_error(await http.delete(url), 401, "rest_cannot_delete")
    gone = await http.delete(url, params={"force": "true"}, auth=AUTH)
    assert gone.status_code == 200 and gone.json()["deleted"] is True
    assert gone.json()["previous"]["id"] == post["id"]
    assert_wp_error(await http.get(url, auth=AUTH), 404, "rest_post_invalid_id")
    assert (await create(http, sandbox, slug="item-t"))["slug"] == "item-t"


@pytest.mark.parametrize(("given", "stored"), [
    ("Item-ABC", "item-abc"),
    ("2015 事故", "2015-%e4%ba%8b%e6%95%85"),
    ("a.b//c", "a-bc"),
])
async def test_slugs_are_sanitized_like_wordpress(sandbox, http, given, stored) -> None:
    """Slugs are lowercased, non-ASCII is percent-encoded, dots become dashes, other marks vanish."""
    assert (await create(http, sandbox, slug=given))["slug"] == stored


async def test_a_taken_slug_gets_a_suffix(sandbox, http) -> None:
    """A second post asking for a taken slug gets `-2`, a third `-3`."""
    slugs = [(await create(http, sandbox, slug="item-x"))["slug"] for _ in range(3)]
    assert slugs == ["item-x", "item-x-2", "item-x-3"]


async def test_unknown_category_ids_are_dropped_silently(sandbox, http) -> None:
    """Category ids that do not exist vanish from the post without an error."""
    term = (await http.post(api(sandbox, "categories"), json={"name": "事故通报", "slug": "accidents"},
                            auth=AUTH)).json()
    post = await create(http, sandbox, categories=[term["id"], 4242])
    assert post["categories"] == [term["id"]]


async def test_categories_lookup_create_and_duplicate(sandbox, http) -> None:
    """Categories are found by ?slug=, created with name and slug (201), and a duplicate is 400 term_exists."""
    assert (await http.get(api(sandbox, "categories"), params={"slug": "news"})).json() == []
    created = await http.post(api(sandbox, "categories"), json={"name": "安监要闻", "slug": "news"}, auth=AUTH)
    assert created.status_code == 201 and created.json()["slug"] == "news"
    found = (await http.get(api(sandbox, "categories"), params={"slug": "news"})).json()
    assert [t["id"] for t in found] == [created.json()["id"]] and found[0]["taxonomy"] == "category"
    again = await http.post(api(sandbox, "categories"), json={"name": "安监要闻", "slug": "news"}, auth=AUTH)
    assert assert_wp_error(again, 400, "term_exists")["data"]["term_id"] == created.json()["id"]


async def test_media_upload_is_served_at_source_url(sandbox, http) -> None:
    """A raw upload with Content-Disposition answers 201 with id and source_url, which then serves the file."""
    resp = await http.post(api(sandbox, "media"), content=b"%PDF-1.4 report", auth=AUTH, params={"title": "报告"},
                           headers={"Content-Type": "application/pdf",
                                    "Content-Disposition": 'attachment; filename="report 1.pdf"'})
    assert resp.status_code == 201, resp.text
    media = resp.json()
    assert media["title"]["rendered"] == "报告" and media["mime_type"] == "application/pdf"
    assert media["source_url"].endswith("/report-1.pdf")
    served = await http.get(media["source_url"])
    assert served.status_code == 200 and served.content == b"%PDF-1.4 report"


@pytest.mark.parametrize(("headers", "status", "code"), [
    ({"Content-Type": "application/pdf"}, 400, "rest_upload_no_content_disposition"),
    ({"Content-Type": "application/pdf", "Content-Disposition": "attachment"}, 400,
     "rest_upload_invalid_disposition"),
    ({"Content-Type": "application/x-msdownload", "Content-Disposition": "attachment; filename=run.exe"}, 500,
     "rest_upload_sideload_error"),
])
async def test_media_upload_refusals(sandbox, http, headers, status, code) -> None:
    """Uploads without a usable Content-Disposition, or of a forbidden file type, are refused as WordPress does."""
    resp = await http.post(api(sandbox, "media"), content=b"data", auth=AUTH, headers=headers)
    assert_wp_error(resp, status, code)


async def test_link_serves_the_page_only_while_published(sandbox, http) -> None:
    """The post's link answers 200 while it is published and 404 once trashed; a draft's link is 404."""
    post = await create(http, sandbox)
    page = await http.get(post["link"])
    assert page.status_code == 200 and "标题" in page.text
    await http.delete(api(sandbox, f"posts/{post['id']}"), auth=AUTH)
    assert (await http.get(post["link"])).status_code == 404
    draft = await create(http, sandbox, status="draft")
    assert (await http.get(draft["link"])).status_code == 404


@pytest.mark.parametrize(("knobs", "status", "code", "retry_after"), [
    ({"burst_429": 1, "retry_after": "7"}, 429, "rest_too_many_requests", "7"),
    ({"error_rate": 1.0, "error_status": 503, "retry_after": "30"}, 503, "internal_server_error", "30"),
    ({"error_rate": 1.0, "error_status": 500}, 500, "internal_server_error", None),
    ({"unauthorized": True}, 401, "incorrect_password", None),
])
async def test_faults_render_in_the_wordpress_error_shape(sandbox, http, knobs, status, code, retry_after) -> None:
    """Fault knobs answer with WordPress's own error body, carrying Retry-After when one is set."""
    sandbox.services["wordpress"].faults.update(knobs)
    resp = await http.get(api(sandbox, "posts"), auth=AUTH)
    assert_wp_error(resp, status, code)
    assert resp.headers.get("Retry-After") == retry_after


async def test_received_shows_posts_categories_and_media(sandbox, http) -> None:
    """The inspector view lists what the site holds, with raw fields."""
    await create(http, sandbox, slug="item-r")
    held = (await http.get(f"{sandbox.base_url}/_sandbox/wordpress/received")).json()
    assert [p["slug"] for p in held["posts"]] == ["item-r"] and held["posts"][0]["content"]["raw"]
    assert [c["slug"] for c in held["categories"]] == ["uncategorized"] and held["media"] == []
