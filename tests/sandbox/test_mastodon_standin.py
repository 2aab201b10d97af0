"""Conformance of the Mastodon stand-in with the documented client API, over raw HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from publisher.sandbox import CREDENTIALS, SandboxServer
from publisher.sandbox.mastodon import render_content, status_length

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


async def test_media_upload(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """An image uploads to /api/v2/media and attaches by media_ids[]; other files are refused."""
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
    media = await http.post(api(sandbox) + "v2/media", files={"file": ("a.png", png, "image/png")}, headers=AUTH)
    assert media.status_code == 200 and media.json()["type"] == "image"
    status = await http.post(api(sandbox) + "v1/statuses", data={"status": "图", "media_ids[]": [media.json()["id"]]},
                             headers=AUTH)
    assert status.json()["media_attachments"][0]["id"] == media.json()["id"]
    bad = await http.post(api(sandbox) + "v2/media", files={"file": ("a.pdf", b"%PDF", "application/pdf")},
                          headers=AUTH)
    assert bad.status_code == 422
