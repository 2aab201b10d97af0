"""Conformance of the Weibo stand-in with the documented `statuses/share.json` behaviour, over raw HTTP."""

from __future__ import annotations

import httpx
import pytest

from publisher.sandbox import CREDENTIALS, SandboxServer
from publisher.sandbox.weibo import EXPIRED_TOKEN, weibo_count, weibo_time

TOKEN = CREDENTIALS["weibo_token"]
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


def api(sandbox: SandboxServer) -> str:
    return sandbox.url("weibo") + "/2/"


async def share(http: httpx.AsyncClient, sandbox: SandboxServer, status: str, **extra: object) -> httpx.Response:
    data = {"access_token": TOKEN, "status": status, **extra}
    return await http.post(api(sandbox) + "statuses/share.json", data=data)


def link(n: int = 1) -> str:
    return f"http://127.0.0.1:8701/wordpress/2015/03/18/item-{n}/"


@pytest.mark.parametrize(("text", "expected"), [
    ("安监", 2),
    ("abcd", 2),
    ("abc", 2),  # 1.5 rounds up
    ("http://example.com/a/very/long/path/that/is/much/longer/than/twenty", 10),
    ("通报 http://127.0.0.1/x", 13),  # 2 + ½ for the space + 10 for the link
    ("中" * 140, 140),
])
def test_weibo_count(text: str, expected: int) -> None:
    """The stand-in counts full-width 1, half-width ½ (rounded up), and every link as 10."""
    assert weibo_count(text) == expected


def test_weibo_time_format() -> None:
    """`created_at` is written the way Weibo writes it, in China time."""
    from datetime import UTC, datetime

    assert weibo_time(datetime(2011, 5, 31, 9, 46, 55, tzinfo=UTC)) == "Tue May 31 17:46:55 +0800 2011"


async def test_share_returns_status_object(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """A valid share answers 200 with a status object whose link is shortened like the platform does."""
    resp = await share(http, sandbox, f"【通报】某化工企业爆炸事故 {link()}")
    assert resp.status_code == 200
    body = resp.json()
    assert body["idstr"] == str(body["id"]) == body["mid"]
    assert body["user"]["id"] and body["created_at"].endswith("+0800 " + body["created_at"][-4:])
    assert "http://t.cn/" in body["text"] and link() not in body["text"]
    assert body["url_objects"][0]["url_ori"] == link()


@pytest.mark.parametrize(("token", "code", "http_status"), [
    ("wrong-token", 21332, 401),
    (EXPIRED_TOKEN, 21327, 401),
])
async def test_bad_tokens(sandbox: SandboxServer, http: httpx.AsyncClient, token: str, code: int,
                          http_status: int) -> None:
    """An unknown token is 21332 and an expired one 21327, in Weibo's error shape."""
    resp = await http.post(api(sandbox) + "statuses/share.json", data={"access_token": token, "status": link()})
    assert resp.status_code == http_status
    assert resp.json() == {"request": "/2/statuses/share.json", "error_code": code,
                           "error": {21332: "invalid_access_token", 21327: "expired_token"}[code]}


async def test_token_in_oauth2_header(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """The token is also accepted in `Authorization: OAuth2 <token>`, as Weibo documents."""
    resp = await http.post(api(sandbox) + "statuses/share.json", data={"status": f"通报 {link()}"},
                           headers={"Authorization": f"OAuth2 {TOKEN}"})
    assert resp.status_code == 200


@pytest.mark.parametrize(("status", "code"), [
    ("中" * 130 + " " + link(), 20012),  # 130 + ½ + 10 > 140
    ("通报没有链接", 20018),
    ("通报 http://evil.example.com/x", 20018),
    ("#安全生产# 通报 " + link(), 10017),
    ("", 10016),
])
async def test_share_refusals(sandbox: SandboxServer, http: httpx.AsyncClient, status: str, code: int) -> None:
    """Too long, no link under the safe domain, a #topic#, or no text is refused with the documented code."""
    resp = await share(http, sandbox, status)
    assert resp.status_code == 400
    assert resp.json()["error_code"] == code
    assert resp.json()["request"] == "/2/statuses/share.json"


async def test_exactly_140_is_accepted(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """A status that counts exactly 140 is accepted (129 + ½ rounded + 10)."""
    assert (await share(http, sandbox, "中" * 129 + " " + link())).status_code == 200


async def test_safe_domain_setting(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """A link under a configured safe domain (or its subdomain) passes."""
    sandbox.services["weibo"].store["settings"]["safe_domains"] = ["aj.example.gov.cn"]
    assert (await share(http, sandbox, "通报 http://www.aj.example.gov.cn/a")).status_code == 200
    assert (await share(http, sandbox, f"通报 {link()}")).json()["error_code"] == 20018


async def test_repeat_content(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """The same text twice is refused the second time as repeat content (20019)."""
    assert (await share(http, sandbox, f"通报 {link()}")).status_code == 200
    again = await share(http, sandbox, f"通报 {link()}")
    assert again.status_code == 400 and again.json()["error_code"] == 20019


async def test_hourly_post_limit(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """Past the posts-per-hour limit the share is refused with 20016."""
    sandbox.services["weibo"].store["settings"]["posts_per_hour"] = 2
    for n in range(2):
        assert (await share(http, sandbox, f"通报{n} {link(n)}")).status_code == 200
    resp = await share(http, sandbox, f"通报 {link(9)}")
    assert resp.json()["error_code"] == 20016


async def test_daily_call_limit(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """Past the calls-per-day limit every call is refused with 10024 and HTTP 403, failed calls included."""
    sandbox.services["weibo"].store["settings"]["calls_per_day"] = 2
    await share(http, sandbox, "没有链接")
    assert (await share(http, sandbox, f"通报 {link()}")).status_code == 200
    resp = await share(http, sandbox, f"通报 {link(2)}")
    assert resp.status_code == 403 and resp.json()["error_code"] == 10024


@pytest.mark.parametrize(("pic", "code"), [
    (b"GIF89a" + b"\0" * 10, None),
    (b"\xff\xd8\xff\xe0" + b"\0" * 10, None),
    (PNG, None),
    (b"%PDF-1.4 not an image", 20005),
    (b"\xff\xd8\xff" + b"\0" * (5 * 1024 * 1024), 20006),
])
async def test_pic_upload(sandbox: SandboxServer, http: httpx.AsyncClient, pic: bytes, code: int | None) -> None:
    """`pic` must be a JPEG, GIF or PNG (by its bytes) under 5 MB, sent as multipart."""
    resp = await http.post(api(sandbox) + "statuses/share.json", data={"access_token": TOKEN, "status": f"图 {link()}"},
                           files={"pic": ("a.img", pic, "application/octet-stream")})
    if code is None:
        assert resp.status_code == 200 and "original_pic" in resp.json()
    else:
        assert resp.json()["error_code"] == code


async def test_pic_needs_multipart(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """A `pic` sent as a plain form field is refused (20007)."""
    resp = await share(http, sandbox, f"图 {link()}", pic="not-a-file")
    assert resp.json()["error_code"] == 20007


async def test_bad_rip(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """`rip` must be an IP address; a valid one is accepted."""
    assert (await share(http, sandbox, f"a {link()}", rip="not-an-ip")).json()["error_code"] == 10017
    assert (await share(http, sandbox, f"b {link()}", rip="211.156.0.1")).status_code == 200


async def test_show_and_timeline(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """show.json answers a status or 20101; user_timeline lists the user's statuses newest first."""
    first = (await share(http, sandbox, f"一 {link(1)}")).json()
    second = (await share(http, sandbox, f"二 {link(2)}")).json()
    shown = await http.get(api(sandbox) + "statuses/show.json", params={"id": first["idstr"], "access_token": TOKEN})
    assert shown.status_code == 200 and shown.json()["idstr"] == first["idstr"]
    missing = await http.get(api(sandbox) + "statuses/show.json", params={"id": "1", "access_token": TOKEN})
    assert missing.status_code == 400 and missing.json()["error_code"] == 20101
    timeline = await http.get(api(sandbox) + "statuses/user_timeline.json", params={"access_token": TOKEN, "count": 5})
    assert [s["idstr"] for s in timeline.json()["statuses"]] == [second["idstr"], first["idstr"]]
    assert timeline.json()["total_number"] == 2


async def test_status_page(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """The status has a page at `/<uid>/<id>`, like weibo.com."""
    status = (await share(http, sandbox, f"一 {link(1)}")).json()
    page = await http.get(f"{sandbox.url('weibo')}/{status['user']['id']}/{status['idstr']}")
    assert page.status_code == 200 and "一" in page.text


async def test_no_edit_or_delete(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """There is no edit or delete method for ordinary apps."""
    resp = await http.post(api(sandbox) + "statuses/destroy.json", data={"access_token": TOKEN, "id": "1"})
    assert resp.status_code == 404
    wrong_method = await http.get(api(sandbox) + "statuses/share.json", params={"access_token": TOKEN})
    assert wrong_method.json()["error_code"] == 10021


@pytest.mark.parametrize(("knob", "http_status", "code"), [
    ({"burst_429": 1}, 403, 10023),
    ({"unauthorized": True}, 401, 21332),
    ({"error_rate": 1.0}, 503, 10002),
])
async def test_faults_in_weibo_shape(sandbox: SandboxServer, http: httpx.AsyncClient, knob: dict[str, object],
                                     http_status: int, code: int) -> None:
    """Fault knobs answer in Weibo's own error shape."""
    sandbox.services["weibo"].faults.update(knob)
    resp = await share(http, sandbox, f"通报 {link()}")
    assert resp.status_code == http_status and resp.json()["error_code"] == code


async def test_request_log_never_shows_the_token(sandbox: SandboxServer, http: httpx.AsyncClient) -> None:
    """A token sent as a form field or a query parameter is redacted in /_sandbox/weibo/requests."""
    token = CREDENTIALS["weibo_token"]
    await http.post(sandbox.url("weibo") + "/2/statuses/share.json",
                    data={"access_token": token, "status": "测试 http://127.0.0.1/x"})
    await http.get(sandbox.url("weibo") + "/2/statuses/user_timeline.json", params={"access_token": token})
    log = (await http.get(sandbox.base_url + "/_sandbox/weibo/requests")).text
    assert token not in log and "redacted" in log
