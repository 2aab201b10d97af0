"""The `http_push` adapter against the city-portal stand-in over loopback HTTP."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pydantic
import pytest
from structlog.testing import capture_logs

from channels.base import PermanentError, RateLimited, Receipt, TransientError
from channels.http_push import HttpPush
from channels.transport import channel_client
from publisher.clock import FrozenClock
from publisher.sandbox import CREDENTIALS, SandboxServer
from tests.conftest import make_revision

Factory = Callable[..., HttpPush]


@pytest.fixture
def portal(sandbox: SandboxServer, http: httpx.AsyncClient, clock: FrozenClock) -> Factory:
    """An adapter on the sandbox portal with the shipped settings; keyword overrides change its options."""

    def build(client: httpx.AsyncClient | None = None, **overrides: Any) -> HttpPush:
        base = sandbox.url("portal")
        options: dict[str, Any] = {
            "url": f"{base}/api/articles", "auth": {"bearer": CREDENTIALS["portal_token"]},
            "find_url": "{url}?source_id={item_id}", "verify_feed": f"{base}/rss.xml"}
        options.update(overrides)
        return HttpPush(name="city_portal", options=HttpPush.Options.model_validate(options), http=client or http,
                        clock=clock, display_name="市政府门户网站")

    return build


async def held(sandbox: SandboxServer, http: httpx.AsyncClient) -> list[dict[str, Any]]:
    return (await http.get(f"{sandbox.base_url}/_sandbox/portal/received")).json()  # type: ignore[no-any-return]


async def knobs(sandbox: SandboxServer, http: httpx.AsyncClient, **faults: Any) -> None:
    (await http.put(f"{sandbox.base_url}/_sandbox/portal/faults", json=faults)).raise_for_status()


async def test_publish_creates_the_article(portal: Factory, sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """Publish sends the default body and returns the portal's id and page URL, with Chinese text intact."""
    rev = make_revision(source="淄川区")
    receipt = await portal().publish(rev)
    [article] = await held(sandbox, http)
    assert receipt.remote_id == article["id"] and receipt.url == article["url"]
    assert article["source_id"] == rev.item_id and article["title"] == rev.title
    assert article["column"] == "事故通报" and article["source"] == "淄川区"
    assert article["summary"] == "通报某化工企业较大爆炸事故调查结果"
    assert article["publish_time"] == "2015-03-18 17:00:00"  # the frozen clock, in Beijing time
    assert "<strong>请各单位认真吸取教训。</strong>" in article["content"]
    assert "<li>加强隐患排查</li>" in article["content"]
    sent = (await http.get(f"{sandbox.base_url}/_sandbox/portal/requests")).json()[-1]
    assert sent["body"]["title"] == rev.title
    assert (await http.get(receipt.url or "")).status_code == 200


@pytest.mark.parametrize(("overrides", "options", "field", "expected"), [
    ({}, {"columns": {"accidents": "事故调查处理"}}, "column", "事故调查处理"),
    ({"category_name": ""}, {}, "column", "accidents"),
    ({"publish_at": datetime(2015, 3, 20, 1, 0, tzinfo=UTC)}, {}, "publish_time", "2015-03-20 09:00:00"),
    ({"summary": None}, {}, "summary", "各区县安监局："),
    ({"source": None}, {}, "source", None),
])
async def test_body_fields(portal: Factory, sandbox: SandboxServer, http: httpx.AsyncClient,
                           overrides: dict[str, Any], options: dict[str, Any], field: str, expected: Any) -> None:
    """Column mapping, the embargo time in Beijing time, the derived summary and the optional source."""
    await portal(**options).publish(make_revision(**overrides))
    [article] = await held(sandbox, http)
    assert article[field] == expected


async def test_hostile_html_is_stripped(portal: Factory, sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """Scripts, on* handlers and javascript: URLs never reach the portal; harmless markup does."""
    body = ("正文<script>alert(1)</script>\n\n<a href=\"javascript:alert(2)\" onclick=\"x()\">链接</a> "
            "<img src=\"a.png\" onerror=\"alert(3)\">\n\n[点我](javascript:alert(4)) [官网](https://www.gov.cn/)")
    await portal().publish(make_revision(body=body))
    content = (await held(sandbox, http))[0]["content"]
    for bad in ("<script", "alert(1)", "onclick", "onerror", 'href="javascript'):
        assert bad not in content
    assert '<a href="https://www.gov.cn/"' in content and "链接" in content and '<img src="a.png">' in content


async def test_custom_template_and_response_paths(sandbox: SandboxServer, http: httpx.AsyncClient,
                                                  clock: FrozenClock) -> None:
    """A configured template sees `text` and `rev` (dates as ISO); dotted response paths may index into lists."""
    peer_seen: list[dict[str, Any]] = []

    def peer(request: httpx.Request) -> httpx.Response:
        peer_seen.append(json.loads(request.content))
        return httpx.Response(200, json={"result": [{"docId": 42, "link": "https://portal.example/42"}]})

    options = HttpPush.Options(url="https://portal.example/push", body='{"t": {{ rev.title|tojson }}, '
                               '"plain": {{ text|tojson }}, "rev": {{ rev.revision }}, "d": {{ rev.date|tojson }}}',
                               response_id="result.0.docId", response_url="result.0.link")
    async with httpx.AsyncClient(transport=httpx.MockTransport(peer)) as client:
        adapter = HttpPush(name="p", options=options, http=client, clock=clock)
        rev = make_revision(body="**加粗** 与 <b>标签</b> &amp; 符号", date=date(2015, 3, 18))
        receipt = await adapter.publish(rev)
    assert receipt == Receipt(remote_id="42", url="https://portal.example/42", extra=receipt.extra)
    assert peer_seen == [{"t": make_revision().title, "plain": "加粗 与 标签 & 符号", "rev": 1, "d": "2015-03-18"}]


async def test_update_replaces_and_keeps_the_receipt(portal: Factory, sandbox: SandboxServer,
                                                     http: httpx.AsyncClient) -> None:
    """Update PUTs the new revision to {url}/{remote_id}; the portal shows the new title under the same id."""
    adapter = portal()
    first = await adapter.publish(make_revision())
    second = await adapter.update(make_revision(revision=2, title="事故调查报告（修订）"), first)
    assert (second.remote_id, second.url) == (first.remote_id, first.url)
    [article] = await held(sandbox, http)
    assert article["title"] == "事故调查报告（修订）"
    assert "事故调查报告（修订）" in (await http.get(first.url or "")).text


async def test_update_of_a_vanished_article_is_permanent(portal: Factory) -> None:
    """An edit of an article removed on the portal stops with the portal's 404."""
    with pytest.raises(PermanentError) as caught:
        await portal().update(make_revision(), Receipt(remote_id="999999"))
    assert caught.value.status == 404 and "article not found" in (caught.value.remote or "")


async def test_retract_removes_the_page_and_repeats_quietly(portal: Factory, http: httpx.AsyncClient) -> None:
    """Retract DELETEs the article; its page turns 404, and a repeat (lost answer) counts as done."""
    adapter = portal()
    receipt = await adapter.publish(make_revision())
    await adapter.retract(receipt)
    assert (await http.get(receipt.url or "")).status_code == 404
    await adapter.retract(receipt)


async def test_find_after_a_lost_response(portal: Factory) -> None:
    """After a publish whose answer was lost, find returns the same receipt, and a resend is not duplicated."""
    rev = make_revision()
    assert await portal().find(rev) is None
    original = await portal().publish(rev)
    found = await portal().find(rev)
    assert found is not None and (found.remote_id, found.url) == (original.remote_id, original.url)
    again = await portal().publish(rev)  # the portal answers 409 with the existing article
    assert (again.remote_id, again.url) == (original.remote_id, original.url)


@pytest.mark.parametrize(("options", "expect"), [
    ({"find_url": None, "feed_id_pattern": r"/art/(\d+)\.html"}, "id"),
    ({"find_url": None}, "link"),
    ({"find_url": None, "verify_feed": None}, None),
])
async def test_find_without_find_url(portal: Factory, options: dict[str, Any], expect: str | None) -> None:
    """Without find_url the column feed is searched by title; with no feed either, find cannot tell."""
    rev = make_revision()
    original = await portal().publish(rev)
    found = await portal(**options).find(rev)
    if expect is None:
        assert found is None
    else:
        assert found is not None and found.url == original.url
        assert found.remote_id == (original.remote_id if expect == "id" else original.url)


async def test_duplicate_without_data_falls_back_to_find(sandbox: SandboxServer, http: httpx.AsyncClient,
                                                         clock: FrozenClock) -> None:
    """A 409 that names no article is resolved through find, and without any way to find it is permanent."""

    def peer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(409, json={"code": 40901, "message": "duplicate source_id"})
        return httpx.Response(200, json={"code": 0, "data": [{"id": "7", "url": "https://p.example/7"}]})

    async with httpx.AsyncClient(transport=httpx.MockTransport(peer)) as client:
        with_find = HttpPush(name="p", http=client, clock=clock, options=HttpPush.Options(
            url="https://p.example/api", find_url="{url}?source_id={item_id}"))
        assert (await with_find.publish(make_revision())).remote_id == "7"
        blind = HttpPush(name="p", http=client, clock=clock, options=HttpPush.Options(url="https://p.example/api"))
        with pytest.raises(PermanentError, match="cannot be found"):
            await blind.publish(make_revision())


async def test_verify_reads_the_feed_with_conditional_get(portal: Factory, sandbox: SandboxServer,
                                                          http: httpx.AsyncClient) -> None:
    """Verify is True once the article is in the RSS, reuses the parsed feed on 304, and is False once gone."""
    adapter = portal()
    receipt = await adapter.publish(make_revision())
    assert await adapter.verify(receipt) is True
    with capture_logs() as logs:
        assert await adapter.verify(receipt) is True
    assert "http_push.feed_not_modified" in [e["event"] for e in logs]
    feed_requests = [r for r in (await http.get(f"{sandbox.base_url}/_sandbox/portal/requests")).json()
                     if r["path"].endswith("/rss.xml")]
    assert "if-none-match" not in feed_requests[0]["headers"]
    assert feed_requests[1]["headers"]["if-none-match"] and feed_requests[1]["headers"]["if-modified-since"]
    await adapter.retract(receipt)
    with capture_logs() as logs:
        assert await adapter.verify(receipt) is False
    assert "http_push.feed_not_modified" not in [e["event"] for e in logs]


@pytest.mark.parametrize(("receipt", "live"), [
    (Receipt(remote_id="x", url=None, extra={"title": "别的标题"}), False),
    (Receipt(remote_id="x", url="https://elsewhere.example/art/1.html", extra={"title": make_revision().title}), True),
    (Receipt(remote_id="x", url=None), False),
])
async def test_verify_matches_by_link_or_title(portal: Factory, receipt: Receipt, live: bool) -> None:
    """An entry counts when its link or, failing that, its title matches the receipt (no page to fall back on)."""
    await portal().publish(make_revision())
    assert await portal().verify(receipt) is live


async def test_verify_falls_back_to_the_page_when_the_feed_has_moved_on(portal: Factory) -> None:
    """An article older than the column feed's window is live when its own page answers 200."""
    adapter = portal()
    receipt = await adapter.publish(make_revision(item_id="old-one"))
    for n in range(55):  # the column feed holds the newest 50
        await adapter.publish(make_revision(item_id=f"newer-{n}", title=f"较新的稿件{n}"))
    assert await adapter.verify(receipt) is True
    await adapter.retract(receipt)
    assert await adapter.verify(receipt) is False


async def test_verify_without_feed_reads_the_page(portal: Factory) -> None:
    """Without verify_feed the article page itself decides: 200 is live, 404 is not."""
    adapter = portal(verify_feed=None)
    receipt = await adapter.publish(make_revision())
    assert await adapter.verify(receipt) is True
    await adapter.retract(receipt)
    assert await adapter.verify(receipt) is False


async def test_verify_goes_on_with_a_broken_feed(portal: Factory) -> None:
    """A feed feedparser calls bozo is logged with its exception; the article's own page then proves it live."""
    receipt = await portal().publish(make_revision())
    adapter = portal(verify_feed=receipt.url)  # an HTML page, not a feed
    with capture_logs() as logs:
        assert await adapter.verify(receipt) is True
    bozo = [e for e in logs if e["event"] == "http_push.feed_bozo"]
    assert bozo and bozo[0]["error"]


@pytest.mark.parametrize(("auth", "ok"), [
    ({"bearer": CREDENTIALS["portal_token"]}, True),
    ({"hmac": {"secret": CREDENTIALS["portal_hmac_secret"]}}, True),
    ({"bearer": "wrong-token"}, False),
    ({"hmac": {"secret": "wrong-secret"}}, False),
    ({"hmac": {"secret": CREDENTIALS["portal_hmac_secret"], "header": "X-Sig"}}, False),
    ({"basic": {"username": "publisher", "password": CREDENTIALS["portal_token"]}}, False),  # the portal wants no Basic
    (None, False),
])
async def test_auth_against_the_portal(portal: Factory, auth: dict[str, Any] | None, ok: bool) -> None:
    """Bearer and HMAC (checked by the portal) pass every call; wrong credentials are a PermanentError."""
    adapter = portal(auth=auth)
    if ok:
        receipt = await adapter.publish(make_revision())
        await adapter.update(make_revision(revision=2), receipt)
        assert await adapter.find(make_revision()) is not None
        await adapter.retract(receipt)
        return
    with pytest.raises(PermanentError) as caught:
        await adapter.publish(make_revision())
    assert caught.value.status == 401 and "credentials" in str(caught.value)


async def test_basic_auth_header(clock: FrozenClock) -> None:
    """Basic auth sends base64(username:password); the portal stand-in takes no Basic, so a peer checks it."""
    seen: list[str] = []

    def peer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(201, json={"code": 0, "data": {"id": "1", "url": "https://p.example/1"}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(peer)) as client:
        adapter = HttpPush(name="p", http=client, clock=clock, options=HttpPush.Options.model_validate(
            {"url": "https://p.example/api", "auth": {"basic": {"username": "发布员", "password": "pa:ss"}}}))
        await adapter.publish(make_revision())
    assert seen == ["Basic " + base64.b64encode("发布员:pa:ss".encode()).decode()]


@pytest.mark.parametrize(("faults", "error", "status", "retry_after"), [
    ({"error_rate": 1.0}, TransientError, 503, None),
    ({"error_rate": 1.0, "retry_after": "30"}, TransientError, 503, 30.0),
    ({"error_rate": 1.0, "error_status": 500}, TransientError, 500, None),
    ({"error_rate": 1.0, "error_status": 502}, TransientError, 502, None),
    ({"burst_429": 1, "retry_after": "7"}, RateLimited, 429, 7.0),
    ({"burst_429": 1}, RateLimited, 429, None),
    ({"unauthorized": True}, PermanentError, 401, None),
])
async def test_error_classes(portal: Factory, sandbox: SandboxServer, http: httpx.AsyncClient,
                             faults: dict[str, Any], error: type[Exception], status: int,
                             retry_after: float | None) -> None:
    """5xx and 429 are transient (with Retry-After when the portal sends one); 401 is permanent."""
    await knobs(sandbox, http, **faults)
    with pytest.raises(error) as caught:
        await portal().publish(make_revision())
    assert caught.value.status == status  # type: ignore[attr-defined]
    if isinstance(caught.value, TransientError):
        assert caught.value.retry_after == retry_after
    else:
        assert not isinstance(caught.value, TransientError)


async def test_content_refused_is_permanent_with_the_portal_message(portal: Factory) -> None:
    """A 400 (title over 200 characters) stops at once and keeps the portal's message."""
    with pytest.raises(PermanentError) as caught:
        await portal().publish(make_revision(title="长" * 201))
    assert caught.value.status == 400 and "title longer than 200" in (caught.value.remote or "")
    assert "title longer than 200" in str(caught.value)


async def test_black_hole_times_out_as_transient(portal: Factory, sandbox: SandboxServer,
                                                 http: httpx.AsyncClient) -> None:
    """A portal that never answers gives a TransientError once the client's timeout fires."""
    await knobs(sandbox, http, black_hole=True)
    async with channel_client(timeout=0.3, concurrency=1) as short:
        adapter = portal(client=short)
        for call in (adapter.publish(make_revision()), adapter.verify(Receipt(remote_id="1", url="x"))):
            with pytest.raises(TransientError, match="Timeout"):
                await call


async def test_refused_connection_is_transient(portal: Factory) -> None:
    """A port where nothing listens gives a TransientError."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransientError, match="ConnectError"):
        await portal(url=f"http://127.0.0.1:{port}/api/articles").publish(make_revision())


@pytest.mark.parametrize("options", [
    {"url": "x", "auth": {"bearer": "a", "hmac": {"secret": "b"}}},
    {"url": "x", "auth": {}},
    {"url": "x", "body": "{{ rev.title "},
    {"url": "x", "update_url": "{url}/{post_id}"},
    {"url": "x", "timeout": "5s"},
    {"url": "x", "feed_id_pattern": r"/art/\d+"},
    {"url": "x", "feed_id_pattern": r"(unclosed"},
])
def test_options_refuse_bad_config(options: dict[str, Any]) -> None:
    """Two auth kinds, none, a broken template, an unknown URL field, a core key or a bad id regex fail at load."""
    with pytest.raises(pydantic.ValidationError):
        HttpPush.Options.model_validate(options)


async def test_template_that_renders_no_json_is_permanent(portal: Factory) -> None:
    """A body template that does not render JSON is a configuration error, named as such."""
    with pytest.raises(PermanentError, match="body template"):
        await portal(body='{"title": {{ rev.title }}}').publish(make_revision())


def test_secrets_stay_out_of_repr() -> None:
    """Secrets in options never show in their repr (and so never in a log line)."""
    options = HttpPush.Options.model_validate({"url": "x", "auth": {"hmac": {"secret": "s3cr3t"}}})
    assert "s3cr3t" not in repr(options)
