"""Conformance of the city-portal stand-in to the portal push API, with raw HTTP requests."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import feedparser
import httpx
import pytest

from publisher.sandbox import CREDENTIALS, SandboxServer

BEARER = {"Authorization": f"Bearer {CREDENTIALS['portal_token']}"}


def article(**overrides: Any) -> dict[str, Any]:
    body = {"source_id": "2015-news-0001", "title": "市安监局召开安全生产工作会议", "content": "<p>会议要求。</p>",
            "column": "安监要闻", "summary": "会议摘要", "publish_time": "2015-03-18 17:00:00", "source": "市安监局"}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def signed(body: bytes, *, secret: str | None = None, stamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if stamp is None else stamp)
    key = (secret or CREDENTIALS["portal_hmac_secret"]).encode()
    sig = hmac.new(key, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Timestamp": ts, "X-Signature": f"sha256={sig}", "Content-Type": "application/json"}


async def create(http: httpx.AsyncClient, base: str, **overrides: Any) -> dict[str, Any]:
    resp = await http.post(f"{base}/api/articles", json=article(**overrides), headers=BEARER)
    assert resp.status_code == 201, resp.text
    return resp.json()["data"]  # type: ignore[no-any-return]


async def test_create_returns_id_and_public_page(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """A valid POST answers 201 with the portal id and a page URL that serves the article as HTML."""
    base = sandbox.url("portal")
    resp = await http.post(f"{base}/api/articles", json=article(), headers=BEARER)
    assert resp.status_code == 201
    body = resp.json()
    assert body["code"] == 0 and body["data"]["id"] and body["data"]["url"].startswith(base)
    page = await http.get(body["data"]["url"])
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "市安监局召开安全生产工作会议" in page.text
    held = (await http.get(f"{sandbox.base_url}/_sandbox/portal/received")).json()
    assert [a["source_id"] for a in held] == ["2015-news-0001"]


async def test_duplicate_source_id_is_409_with_the_existing_article(sandbox: SandboxServer,
                                                                    http: httpx.AsyncClient) -> None:
    """A second POST with a known source_id answers 409 code 40901 and names the existing article."""
    first = await create(http, sandbox.url("portal"))
    resp = await http.post(f"{sandbox.url('portal')}/api/articles", json=article(title="另一个标题"), headers=BEARER)
    assert resp.status_code == 409
    assert resp.json() == {"code": 40901, "message": "duplicate source_id", "data": first}


@pytest.mark.parametrize(("payload", "needle"), [
    (article(source_id=None), "source_id"),
    (article(title=None), "title"),
    (article(content=None), "content"),
    (article(column=None), "column"),
    (article(title=""), "title"),
    (article(title="长" * 201), "title"),
    (article(publish_time="2015-03-18T17:00:00+08:00"), "publish_time"),
    (article(summary=7), "summary"),
    (article(source_id=12), "source_id"),
    (article(author="办公室"), "author"),
    (["not", "an", "object"], "object"),
])
async def test_invalid_bodies_are_400(sandbox: SandboxServer, http: httpx.AsyncClient, payload: Any,
                                      needle: str) -> None:
    """Missing, empty, mistyped, too long or unknown fields are refused with 400 code 40001 naming the field."""
    resp = await http.post(f"{sandbox.url('portal')}/api/articles", json=payload, headers=BEARER)
    assert resp.status_code == 400
    assert resp.json()["code"] == 40001 and needle in resp.json()["message"]


async def test_title_of_exactly_200_characters_is_accepted(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """The title limit counts characters, so 200 Chinese characters pass."""
    await create(http, sandbox.url("portal"), title="长" * 200)


async def test_body_that_is_not_json_is_refused(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """Broken JSON is 400 code 40001; a non-JSON content type is 415."""
    url = f"{sandbox.url('portal')}/api/articles"
    broken = await http.post(url, content=b"{", headers={**BEARER, "Content-Type": "application/json"})
    assert broken.status_code == 400 and broken.json()["code"] == 40001
    form = await http.post(url, data={"title": "x"}, headers=BEARER)
    assert form.status_code == 415 and form.json()["code"] == 41501


def _auth_cases() -> list[Any]:
    body = json.dumps(article()).encode()
    return [
        pytest.param(BEARER, body, 201, id="bearer"),
        pytest.param(signed(body), body, 201, id="hmac"),
        pytest.param({}, body, 401, id="none"),
        pytest.param({"Authorization": "Bearer wrong"}, body, 401, id="bad-bearer"),
        pytest.param({"Authorization": "Basic cHVibGlzaGVyOnNhbmRib3g="}, body, 401, id="basic"),
        pytest.param(signed(body, secret="wrong"), body, 401, id="hmac-wrong-secret"),
        pytest.param(signed(body, stamp=int(time.time()) - 301), body, 401, id="hmac-stale"),
        pytest.param(signed(b"{}"), body, 401, id="hmac-other-body"),
        pytest.param({"X-Timestamp": str(int(time.time()))}, body, 401, id="hmac-no-signature"),
    ]


@pytest.mark.parametrize(("headers", "body", "status"), _auth_cases())
async def test_auth(sandbox: SandboxServer, http: httpx.AsyncClient, headers: dict[str, str], body: bytes,
                    status: int) -> None:
    """The API takes a bearer token or an HMAC signature over timestamp.body; anything else is 401 code 40101."""
    resp = await http.post(f"{sandbox.url('portal')}/api/articles", content=body,
                           headers={"Content-Type": "application/json", **headers})
    assert resp.status_code == status, resp.text
    if status == 401:
        assert resp.json()["code"] == 40101 and resp.json()["message"]


async def test_hmac_signs_delete_with_an_empty_body(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """A bodiless request is signed over the timestamp and the dot alone."""
    created = await create(http, sandbox.url("portal"))
    resp = await http.delete(f"{sandbox.url('portal')}/api/articles/{created['id']}", headers=signed(b""))
    assert resp.status_code == 200 and resp.json() == {"code": 0}


async def test_update_replaces_the_article(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """PUT with the same body shape answers 200 and the page shows the new title."""
    base = sandbox.url("portal")
    created = await create(http, base)
    resp = await http.put(f"{base}/api/articles/{created['id']}", json=article(title="会议精神（修订）"),
                          headers=BEARER)
    assert resp.status_code == 200 and resp.json() == {"code": 0, "data": created}
    assert "会议精神（修订）" in (await http.get(created["url"])).text


@pytest.mark.parametrize(("method", "target", "payload", "status"), [
    ("PUT", "missing", article(), 404),
    ("DELETE", "missing", None, 404),
    ("PUT", "created", article(source_id="other"), 400),
    ("PUT", "created", article(column=""), 400),
])
async def test_update_and_delete_refusals(sandbox: SandboxServer, http: httpx.AsyncClient, method: str,
                                          target: str, payload: Any, status: int) -> None:
    """Unknown ids are 404; a changed source_id or an invalid body is 400; all in the portal's error shape."""
    created = await create(http, sandbox.url("portal"))
    article_id = created["id"] if target == "created" else "999999"
    resp = await http.request(method, f"{sandbox.url('portal')}/api/articles/{article_id}", json=payload,
                              headers=BEARER)
    assert resp.status_code == status
    assert resp.json()["code"] == status * 100 + 1


async def test_delete_removes_page_and_is_not_repeatable(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """DELETE answers 200 code 0; the page is then 404, and a second DELETE is 404."""
    base = sandbox.url("portal")
    created = await create(http, base)
    first = await http.delete(f"{base}/api/articles/{created['id']}", headers=BEARER)
    assert first.status_code == 200 and first.json() == {"code": 0}
    assert (await http.get(created["url"])).status_code == 404
    assert (await http.delete(f"{base}/api/articles/{created['id']}", headers=BEARER)).status_code == 404


async def test_find_by_source_id(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """GET ?source_id= lists the matching articles, needs auth, and needs the parameter."""
    base = sandbox.url("portal")
    created = await create(http, base)
    await create(http, base, source_id="2015-news-0002")
    found = await http.get(f"{base}/api/articles", params={"source_id": "2015-news-0001"}, headers=BEARER)
    assert found.status_code == 200 and found.json()["code"] == 0
    assert [(a["id"], a["url"]) for a in found.json()["data"]] == [(created["id"], created["url"])]
    none = await http.get(f"{base}/api/articles", params={"source_id": "nope"}, headers=BEARER)
    assert none.json() == {"code": 0, "data": []}
    assert (await http.get(f"{base}/api/articles", params={"source_id": "x"})).status_code == 401
    assert (await http.get(f"{base}/api/articles", headers=BEARER)).status_code == 400


async def test_rss_lists_newest_50_with_the_rss2_fields(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """The feed is RSS 2.0 with title, link, guid and pubDate (Beijing time) of the newest 50 articles."""
    base = sandbox.url("portal")
    for n in range(52):
        await create(http, base, source_id=f"id-{n}", title=f"第{n}条")
    resp = await http.get(f"{base}/rss.xml")
    assert resp.status_code == 200 and "xml" in resp.headers["content-type"]
    feed = feedparser.parse(resp.content)
    assert not feed.bozo and feed.version == "rss20"
    assert len(feed.entries) == 50
    newest = feed.entries[0]
    assert newest.title == "第51条" and newest.link.startswith(base) and newest.id == newest.link
    assert newest.published == "Wed, 18 Mar 2015 17:00:00 +0800"
    assert "第0条" not in {e.title for e in feed.entries}


async def test_rss_conditional_get(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """The feed answers 304 to a matching If-None-Match or If-Modified-Since, and changes ETag on an edit."""
    base = sandbox.url("portal")
    created = await create(http, base)
    first = await http.get(f"{base}/rss.xml")
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    again = await http.get(f"{base}/rss.xml", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["ETag"] == etag and not again.content
    assert (await http.get(f"{base}/rss.xml", headers={"If-Modified-Since": modified})).status_code == 304
    assert (await http.get(f"{base}/rss.xml", headers={"If-None-Match": '"other"'})).status_code == 200
    await http.put(f"{base}/api/articles/{created['id']}", json=article(title="新标题"), headers=BEARER)
    changed = await http.get(f"{base}/rss.xml", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert "新标题" in changed.text


async def test_rss_column_filter(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """`?column=` narrows the feed to one column."""
    base = sandbox.url("portal")
    await create(http, base, source_id="a", column="安监要闻")
    await create(http, base, source_id="b", column="事故通报", title="事故通报标题")
    feed = feedparser.parse((await http.get(f"{base}/rss.xml", params={"column": "事故通报"})).content)
    assert [e.title for e in feed.entries] == ["事故通报标题"]


@pytest.mark.parametrize(("knobs", "status", "code", "retry_after"), [
    ({"unauthorized": True}, 401, 40101, None),
    ({"burst_429": 1, "retry_after": "7"}, 429, 42901, "7"),
    ({"burst_429": 1}, 429, 42901, None),
    ({"error_rate": 1.0, "retry_after": "3"}, 503, 50301, "3"),
    ({"error_rate": 1.0, "error_status": 500}, 500, 50001, None),
])
async def test_faults_render_in_the_portal_shape(sandbox: SandboxServer, http: httpx.AsyncClient,
                                                 knobs: dict[str, Any], status: int, code: int,
                                                 retry_after: str | None) -> None:
    """Injected faults answer with the status, code status*100+1, and Retry-After when one was given."""
    (await http.put(f"{sandbox.base_url}/_sandbox/portal/faults", json=knobs)).raise_for_status()
    resp = await http.post(f"{sandbox.url('portal')}/api/articles", json=article(), headers=BEARER)
    assert resp.status_code == status
    assert resp.json()["code"] == code and resp.json()["message"]
    assert resp.headers.get("Retry-After") == retry_after


async def test_unknown_routes_and_methods_use_the_error_shape(sandbox: SandboxServer,
                                                              http: httpx.AsyncClient) -> None:
    """An unknown path is 404 code 40401 and a wrong method 405 code 40501."""
    base = sandbox.url("portal")
    missing = await http.get(f"{base}/api/nothing", headers=BEARER)
    assert missing.status_code == 404 and missing.json()["code"] == 40401
    wrong = await http.patch(f"{base}/api/articles", headers=BEARER)
    assert wrong.status_code == 405 and wrong.json()["code"] == 40501
