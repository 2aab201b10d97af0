"""Conformance of the Mastodon stand-in with the documented client API, over raw HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from publisher.sandbox import CREDENTIALS, SandboxServer
from publisher.sandbox.mastodon import ACCOUNT_ID, OTHER_TOKEN
from publisher.sandbox.mastodon_rules import render_content, status_length

AUTH = {"Authorization": f"Bearer {CREDENTIALS['mastodon_token']}"}
LINK = "http://127.0.0.1:8701/wordpress/2015/03/18/a-very-long-slug-that-goes-on-and-on-for-a-while/"


def api(sandbox: SandboxServer) -> str:
    return sandbox.url("mastodon") + "/api/"


async def post(http: httpx.AsyncClient, sandbox: SandboxServer, text: str, **kw: object) -> httpx.Response:
    headers = {**AUTH, **kw.pop("headers", {})}  # type: ignore[dict-item]
    return await http.post(api(sandbox) + "v1/statuses", data={"status": text, **kw}, headers=headers)


@pytest.mark.parametrize(("text", "spoiler", "expected"), [
    ("安全生产", "", 4),
    (LINK, "", 23),
    ("通报 " + LINK, "", 26),
    ("abc", "注意", 5),
])
def test_status_length(text: str, spoiler: str, expected: int) -> None:
    """The length counts spoiler text plus text, every URL as 23 characters."""
    assert status_length(text, spoiler) == expected


def test_render_content_links_and_paragraphs() -> None:
    """Plain text becomes escaped HTML paragraphs with the link in an anchor's href."""
    html = render_content(f"<标题>\n\n摘要\n{LINK}")
    assert html.startswith("<p>&lt;标题&gt;</p><p>摘要<br />")
    assert f'href="{LINK}"' in html


async def test_create_status(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """A post answers 200 with the status, its public url, and the rate-limit headers."""
    resp = await post(http, sandbox, f"通报\n\n{LINK}", visibility="public", language="zh")
    assert resp.status_code == 200
    body = resp.json()
    assert body["visibility"] == "public" and body["language"] == "zh"
    assert body["url"].endswith(f"/@bureau/{body['id']}")
    assert resp.headers["X-RateLimit-Limit"] == "300"
    assert resp.headers["X-RateLimit-Remaining"] == "299"
    datetime.fromisoformat(resp.headers["X-RateLimit-Reset"].replace("Z", "+00:00"))
    assert (await http.get(body["url"])).status_code == 200


async def test_json_body_is_accepted(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """Parameters may come as JSON too."""
    body = {"status": "通报", "visibility": "unlisted"}
    resp = await http.post(api(sandbox) + "v1/statuses", json=body, headers=AUTH)
    assert resp.status_code == 200 and resp.json()["visibility"] == "unlisted"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eDp5"}])
async def test_bad_token(sandbox: SandboxServer, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """A missing or wrong token answers 401 with Mastodon's message."""
    resp = await http.post(api(sandbox) + "v1/statuses", data={"status": "x"}, headers=headers)
    assert resp.status_code == 401
    assert resp.json() == {"error": "The access token is invalid"}


async def test_idempotency_key(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """A repeat with the same Idempotency-Key answers the first status; another key makes a new one."""
    first = await post(http, sandbox, "通报", headers={"Idempotency-Key": "item-1:1"})
    again = await post(http, sandbox, "通报 (changed)", headers={"Idempotency-Key": "item-1:1"})
    other = await post(http, sandbox, "通报", headers={"Idempotency-Key": "item-1:2"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert other.json()["id"] != first.json()["id"]
    assert len(sandbox.services["mastodon"].received()["statuses"]) == 2


@pytest.mark.parametrize(("data", "error"), [
    ({"status": "中" * 501}, "Validation failed: Text character limit of 500 exceeded"),
    ({"status": "中" * 490, "spoiler_text": "注意" * 6}, "Validation failed: Text character limit of 500 exceeded"),
    ({"status": "   "}, "Validation failed: Text can't be blank"),
    ({"status": "x", "visibility": "everyone"}, "'everyone' is not a valid visibility"),
])
async def test_validation_errors(sandbox: SandboxServer, http: httpx.AsyncClient, data: dict[str, str],
                                 error: str) -> None:
    """Over the limit, blank, or an unknown visibility answers 422 with the validation message."""
    resp = await http.post(api(sandbox) + "v1/statuses", data=data, headers=AUTH)
    assert resp.status_code == 422 and resp.json() == {"error": error}


async def test_urls_count_23(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """A long URL costs 23, so 477 characters plus a long link fit exactly."""
    assert (await post(http, sandbox, "中" * 476 + " " + LINK)).status_code == 200
    assert (await post(http, sandbox, "中" * 477 + " " + LINK)).status_code == 422


async def test_instance_limits(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """The v2 instance document names max_characters and characters_reserved_per_url."""
    statuses = (await http.get(api(sandbox) + "v2/instance")).json()["configuration"]["statuses"]
    assert statuses["max_characters"] == 500 and statuses["characters_reserved_per_url"] == 23


async def test_edit_delete_and_404(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """PUT edits (edited_at set), DELETE answers the status with its source text, then it is 404 everywhere."""
    status = (await post(http, sandbox, "原文")).json()
    url = api(sandbox) + f"v1/statuses/{status['id']}"
    edited = await http.put(url, data={"status": "修改后"}, headers=AUTH)
    assert edited.status_code == 200 and "修改后" in edited.json()["content"] and edited.json()["edited_at"]
    assert (await http.put(url, data={"status": "x"})).status_code == 401
    deleted = await http.delete(url, headers=AUTH)
    assert deleted.status_code == 200 and deleted.json()["text"] == "修改后"
    for resp in (await http.get(url), await http.delete(url, headers=AUTH), await http.put(url, data={"status": "y"},
                                                                                            headers=AUTH)):
        assert resp.status_code == 404 and resp.json() == {"error": "Record not found"}
    assert (await http.get(status["url"])).status_code == 404


async def test_account_statuses(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """verify_credentials names the account; its statuses come newest first, limited."""
    me = await http.get(api(sandbox) + "v1/accounts/verify_credentials", headers=AUTH)
    assert me.status_code == 200 and me.json()["source"]["privacy"] == "public"
    assert (await http.get(api(sandbox) + "v1/accounts/verify_credentials")).status_code == 401
    ids = [(await post(http, sandbox, f"第{n}条")).json()["id"] for n in range(3)]
    listed = await http.get(api(sandbox) + f"v1/accounts/{me.json()['id']}/statuses", params={"limit": 2})
    assert [s["id"] for s in listed.json()] == [ids[2], ids[1]]
    assert 'rel="next"' in listed.headers["Link"]
    assert (await http.get(api(sandbox) + "v1/accounts/1/statuses")).status_code == 404


async def test_rate_limit_window(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """Past the window's request budget the answer is 429 with X-RateLimit-Reset and no Retry-After."""
    sandbox.services["mastodon"].store["settings"]["rate_limit"] = 2
    for _ in range(2):
        assert (await post(http, sandbox, "x")).status_code in (200, 422)
    resp = await post(http, sandbox, "y")
    assert resp.status_code == 429 and resp.json() == {"error": "Too many requests"}
    assert "Retry-After" not in resp.headers and resp.headers["X-RateLimit-Remaining"] == "0"
    reset = datetime.fromisoformat(resp.headers["X-RateLimit-Reset"].replace("Z", "+00:00"))
    assert 0 < (reset - datetime.now(UTC)).total_seconds() <= 300


async def test_burst_fault_names_reset(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """The burst_429 knob answers like Mastodon: the reset time from its retry_after, never Retry-After."""
    sandbox.services["mastodon"].faults.update({"burst_429": 1, "retry_after": "120"})
    resp = await post(http, sandbox, "x")
    assert resp.status_code == 429 and "Retry-After" not in resp.headers
    reset = datetime.fromisoformat(resp.headers["X-RateLimit-Reset"].replace("Z", "+00:00"))
    assert 110 < (reset - datetime.now(UTC)).total_seconds() <= 121


PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 32
ANIMATED_GIF = b"GIF89a" + b"\0" * 7 + b"!\xff\x0bNETSCAPE2.0\x03\x01\0\0\0" + b"\0" * 8


async def upload(http: httpx.AsyncClient, sandbox: SandboxServer, data: bytes = PNG, ctype: str = "image/png",
                 headers: dict[str, str] | None = None, **form: str) -> httpx.Response:
    return await http.post(api(sandbox) + "v2/media", files={"file": ("a.png", data, ctype)}, data=form,
                           headers=AUTH if headers is None else headers)


async def settings(http: httpx.AsyncClient, sandbox: SandboxServer, **changes: object) -> None:
    (await http.put(sandbox.base_url + "/_sandbox/mastodon/settings", json=changes)).raise_for_status()


async def test_media_upload(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """An image uploads to /api/v2/media and attaches by media_ids[]; other files are refused."""
    media = await upload(http, sandbox, description="现场照片")
    assert media.status_code == 200
    body = media.json()
    assert body["type"] == "image" and body["url"] and body["preview_url"] and body["description"] == "现场照片"
    status = await http.post(api(sandbox) + "v1/statuses", data={"status": "图", "media_ids[]": [body["id"]]},
                             headers=AUTH)
    assert status.json()["media_attachments"] == [body]
    bad = await http.post(api(sandbox) + "v2/media", files={"file": ("a.pdf", b"%PDF", "application/pdf")},
                          headers=AUTH)
    assert bad.status_code == 422
    [held] = sandbox.services["mastodon"].received()["media"]
    assert held == {"id": body["id"], "type": "image", "content_type": "image/png", "size": len(PNG),
                    "description": "现场照片", "processed": True, "status_id": status.json()["id"],
                    "account_id": ACCOUNT_ID}


async def test_media_upload_logged_without_secrets(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """The request log keeps the upload's size, never its bytes or the token."""
    await upload(http, sandbox)
    [logged] = [r for r in sandbox.services["mastodon"].requests if r["path"].endswith("/api/v2/media")]
    assert logged["headers"]["authorization"] == "<redacted>"
    assert logged["body"].startswith("<") and logged["body"].endswith(" bytes>")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}])
async def test_media_needs_a_token(sandbox: SandboxServer, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """Uploading and looking at media without a valid token answers 401."""
    resp = await upload(http, sandbox, headers=headers)
    assert resp.status_code == 401 and resp.json() == {"error": "The access token is invalid"}
    assert (await http.get(api(sandbox) + "v1/media/1", headers=headers)).status_code == 401
    assert sandbox.services["mastodon"].received()["media"] == []


async def test_media_file_is_required(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """A form without `file` (multipart or not) answers 422 "File can't be blank"."""
    multipart = await http.post(api(sandbox) + "v2/media", files={"thumbnail": ("t.png", PNG, "image/png")},
                                data={"description": "x"}, headers=AUTH)
    plain = await http.post(api(sandbox) + "v2/media", data={"description": "x"}, headers=AUTH)
    for resp in (multipart, plain):
        assert resp.status_code == 422 and resp.json() == {"error": "Validation failed: File can't be blank"}


@pytest.mark.parametrize(("data", "ctype"), [
    (b"%PDF-1.4", "application/pdf"),
    (b"%PDF-1.4", "image/png"),  # the type is read from the bytes, not from the declared Content-Type
    (b"RIFF\0\0\0\0WAVEfmt ", "image/webp"),
])
async def test_media_type_must_be_supported(sandbox: SandboxServer, http: httpx.AsyncClient, data: bytes,
                                            ctype: str) -> None:
    """A file whose content is not a supported type answers 422 with the validation message."""
    resp = await upload(http, sandbox, data, ctype)
    assert resp.status_code == 422
    assert resp.json() == {"error": "Validation failed: File content type is invalid, File is invalid"}


async def test_media_size_limit(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """A file must be smaller than image_size_limit (which the instance document names)."""
    await settings(http, sandbox, image_size_limit=1024)
    conf = (await http.get(api(sandbox) + "v2/instance")).json()["configuration"]["media_attachments"]
    assert conf["image_size_limit"] == 1024
    assert (await upload(http, sandbox, PNG + b"\0" * (1023 - len(PNG)))).status_code == 200
    resp = await upload(http, sandbox, PNG + b"\0" * (1024 - len(PNG)))
    assert resp.status_code == 422
    assert resp.json() == {"error": "Validation failed: File file size must be less than 1 KB"}


async def test_media_description_limit(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """A description over 1500 characters answers 422."""
    assert (await upload(http, sandbox, description="述" * 1500)).status_code == 200
    resp = await upload(http, sandbox, description="述" * 1501)
    assert resp.status_code == 422 and "Description is too long" in resp.json()["error"]


async def test_instance_media_configuration(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """The instance document names the media limits a client must keep to."""
    conf = (await http.get(api(sandbox) + "v2/instance")).json()["configuration"]
    assert conf["statuses"]["max_media_attachments"] == 4
    media = conf["media_attachments"]
    assert set(media["supported_mime_types"]) == {"image/jpeg", "image/png", "image/gif", "image/webp"}
    assert media["image_size_limit"] == 16 * 1024 * 1024 and media["description_limit"] == 1500


async def test_async_processing(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """With media_async, an upload answers 202 with url null; GET answers 206 until it is processed, then 200;
    a status naming it meanwhile is refused with 422."""
    await settings(http, sandbox, media_async=True, media_processing_polls=2)
    accepted = await upload(http, sandbox)
    assert accepted.status_code == 202
    media = accepted.json()
    assert media["url"] is None and media["preview_url"]
    early = await http.post(api(sandbox) + "v1/statuses", data={"status": "图", "media_ids[]": [media["id"]]},
                            headers=AUTH)
    assert early.status_code == 422
    assert early.json() == {"error": "Cannot attach files that have not finished processing. Try again in a moment!"}
    url = api(sandbox) + f"v1/media/{media['id']}"
    looks = [await http.get(url, headers=AUTH) for _ in range(3)]
    assert [r.status_code for r in looks] == [206, 206, 200]
    assert looks[0].json()["url"] is None and looks[2].json()["url"]
    status = await http.post(api(sandbox) + "v1/statuses", data={"status": "图", "media_ids[]": [media["id"]]},
                             headers=AUTH)
    assert status.status_code == 200 and status.json()["media_attachments"][0]["url"]


async def test_animated_gif_is_processed_in_the_background(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """An animated GIF becomes gifv, a larger format that always answers 202."""
    resp = await upload(http, sandbox, ANIMATED_GIF, "image/gif")
    assert resp.status_code == 202 and resp.json()["type"] == "gifv"
    assert (await upload(http, sandbox, b"GIF89a" + b"\0" * 20, "image/gif")).status_code == 200


async def test_unknown_media_id(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """GET of an unknown media id is 404; a status naming one is refused with 422."""
    resp = await http.get(api(sandbox) + "v1/media/999", headers=AUTH)
    assert resp.status_code == 404 and resp.json() == {"error": "Record not found"}
    status = await http.post(api(sandbox) + "v1/statuses", data={"status": "图", "media_ids[]": ["999"]}, headers=AUTH)
    assert status.status_code == 422
    assert status.json() == {"error": "Media 999 not found or already attached to another post"}
    assert sandbox.services["mastodon"].received()["statuses"] == []


async def test_at_most_four_media(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """Five media ids answer 422 "Cannot attach more than 4 files"; four are fine, in the order given."""
    ids = [(await upload(http, sandbox)).json()["id"] for _ in range(5)]
    five = await http.post(api(sandbox) + "v1/statuses", data={"status": "图", "media_ids[]": ids}, headers=AUTH)
    assert five.status_code == 422 and five.json() == {"error": "Cannot attach more than 4 files"}
    four = await http.post(api(sandbox) + "v1/statuses", data={"status": "图", "media_ids[]": ids[3::-1]}, headers=AUTH)
    assert [m["id"] for m in four.json()["media_attachments"]] == ids[3::-1]


async def test_media_of_another_account(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """Media uploaded by another account cannot be seen (404) nor attached (422) by ours."""
    theirs = (await upload(http, sandbox, headers={"Authorization": f"Bearer {OTHER_TOKEN}"})).json()
    assert (await http.get(api(sandbox) + f"v1/media/{theirs['id']}", headers=AUTH)).status_code == 404
    status = await http.post(api(sandbox) + "v1/statuses", data={"status": "图", "media_ids[]": [theirs["id"]]},
                             headers=AUTH)
    assert status.status_code == 422 and "not found or already attached" in status.json()["error"]


async def test_attached_media_cannot_be_reused(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """Once attached, media no longer answers GET and cannot go on a second status."""
    mid = (await upload(http, sandbox)).json()["id"]
    first = await http.post(api(sandbox) + "v1/statuses", data={"status": "一", "media_ids[]": [mid]}, headers=AUTH)
    assert first.status_code == 200
    assert (await http.get(api(sandbox) + f"v1/media/{mid}", headers=AUTH)).status_code == 404
    second = await http.post(api(sandbox) + "v1/statuses", data={"status": "二", "media_ids[]": [mid]}, headers=AUTH)
    assert second.status_code == 422


async def test_media_ids_as_json(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """A JSON body names media as a `media_ids` array."""
    mid = (await upload(http, sandbox)).json()["id"]
    resp = await http.post(api(sandbox) + "v1/statuses", json={"status": "图", "media_ids": [mid]}, headers=AUTH)
    assert resp.status_code == 200 and [m["id"] for m in resp.json()["media_attachments"]] == [mid]


async def test_edit_media(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """An edit names the status's media again (its own attached ids are allowed); an edit naming none detaches them."""
    old, new = [(await upload(http, sandbox)).json()["id"] for _ in range(2)]
    status = (await http.post(api(sandbox) + "v1/statuses", data={"status": "原", "media_ids[]": [old]},
                              headers=AUTH)).json()
    url = api(sandbox) + f"v1/statuses/{status['id']}"
    both = await http.put(url, data={"status": "改", "media_ids[]": [old, new]}, headers=AUTH)
    assert [m["id"] for m in both.json()["media_attachments"]] == [old, new]
    unknown = await http.put(url, data={"status": "改", "media_ids[]": ["999"]}, headers=AUTH)
    assert unknown.status_code == 422
    too_many = await http.put(url, data={"status": "改", "media_ids[]": [old] * 5}, headers=AUTH)
    assert too_many.status_code == 422
    bare = await http.put(url, data={"status": "再改"}, headers=AUTH)
    assert bare.status_code == 200 and bare.json()["media_attachments"] == []
    held = {m["id"]: m["status_id"] for m in sandbox.services["mastodon"].received()["media"]}
    assert held == {old: None, new: None}


async def test_edit_refuses_processing_media(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """An edit naming media still being processed is refused like a new status."""
    status = (await post(http, sandbox, "原")).json()
    await settings(http, sandbox, media_async=True)
    mid = (await upload(http, sandbox)).json()["id"]
    resp = await http.put(api(sandbox) + f"v1/statuses/{status['id']}", data={"status": "改", "media_ids[]": [mid]},
                          headers=AUTH)
    assert resp.status_code == 422 and "not finished processing" in resp.json()["error"]


async def test_media_upload_throttle(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """Uploads have their own window (30 per 30 minutes per account); past it, 429 naming the reset."""
    await settings(http, sandbox, media_rate_limit=1)
    assert (await upload(http, sandbox)).status_code == 200
    resp = await upload(http, sandbox)
    assert resp.status_code == 429 and resp.json() == {"error": "Too many requests"}
    assert resp.headers["X-RateLimit-Remaining"] == "0" and "Retry-After" not in resp.headers
    reset = datetime.fromisoformat(resp.headers["X-RateLimit-Reset"].replace("Z", "+00:00"))
    assert 0 < (reset - datetime.now(UTC)).total_seconds() <= 1800
    assert (await post(http, sandbox, "文字照发")).status_code == 200  # other calls keep their own budget
