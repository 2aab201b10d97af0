"""The dashboard page, /api/lag, /metrics, the retry action and the token login, over a real store."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from publisher.app.web.app import create_app
from publisher.app.web.context import WebContext
from publisher.clock import FrozenClock
from publisher.lag import json_form as lag_json
from publisher.model import DeliveryState
from publisher.store.db import Store
from publisher.store.schema import deliveries
from tests.test_lag import T0, World, make_config


def csrf_token(page: str) -> str:
    """The CSRF token a served page put in its forms."""
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert match, "the page carries no CSRF token"
    return match.group(1)


def _client(world: World, base: str = "http://127.0.0.1:8700") -> httpx.AsyncClient:
    ctx = WebContext(config=world.config, store=world.store, clock=world.clock)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)), base_url=base,
                             follow_redirects=False)


@pytest.fixture
def world(tmp_path: Path) -> World:
    config = make_config(tmp_path)
    store = Store.open(config.store_url)
    yield World(config=config, store=store, clock=FrozenClock(T0))
    store.close()


@pytest.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(world) as c:
        yield c


def _broken_portal(world: World) -> None:
    """city_portal failed an hour ago with the portal's error; the others went live in seconds."""
    item = world.item(title="关于开展安全生产大检查的通知", item_id="2015-notices-0001")
    for ch in ("bureau_site", "provincial_feed"):
        world.delivery(ch, item=item, due_at=T0, state=DeliveryState.LIVE, live_at=T0 + timedelta(seconds=4))
    world.delivery("city_portal", item=item, due_at=T0, state=DeliveryState.FAILED, attempts=1,
                   error='401 Unauthorized: {"code": "invalid_token", "message": "token rejected"}')
    world.clock.set(T0 + timedelta(days=1, hours=1))


async def test_page_shows_the_late_channel_with_its_error(world: World, client: httpx.AsyncClient) -> None:
    """The page marks city_portal late with its last error and a retry button; the others on time."""
    _broken_portal(world)
    page = (await client.get("/")).text
    assert 'id="channel-city_portal" class="status-late"' in page
    assert 'id="channel-bureau_site" class="status-on_time"' in page
    assert "市政府门户网站" in page and "超时" in page
    assert "invalid_token" in page and 'action="/retry"' in page
    assert "<script" not in page
    plot = (await client.get("/?range=7d")).text
    assert "<svg" in plot and "<circle" in plot  # the lag plot, drawn without JavaScript


async def test_page_lists_an_item_taken_down_after_it_went_live(world: World, client: httpx.AsyncClient) -> None:
    """A live article the channel took down is listed apart, with where it was and the platform's reason; the
    table is there only while something is lost."""
    assert 'id="lost"' not in (await client.get("/")).text
    item = world.item(title="隐患排查通报", item_id="2015-news-0007")
    row = world.delivery("wechat", item=item, due_at=T0, state=DeliveryState.LIVE, live_at=T0 + timedelta(seconds=9))
    with world.store.tx() as conn:
        world.store.live_lost(conn, row, T0 + timedelta(hours=6),
                              error="taken down after it went live: 政务公众号: 成功后用户删除 (publish_status 5)")
    old_url = "http://127.0.0.1:8701/wechat/s?mid=1"
    with world.store.tx() as conn:
        conn.execute(deliveries.update().where(deliveries.c.id == row).values(url=old_url))
    page = (await client.get("/")).text
    assert 'id="lost"' in page and "上线后被撤下的条目" in page and "隐患排查通报" in page
    assert f'href="{old_url}"' in page and "成功后用户删除" in page


async def test_english_labels_on_request(world: World, client: httpx.AsyncClient) -> None:
    """?lang=en switches the fixed labels to English and remembers it in a cookie."""
    _broken_portal(world)
    response = await client.get("/?lang=en&range=7d")
    assert "Late items" in response.text and "Last error" in response.text
    assert response.cookies.get("lang") == "en"


async def test_api_lag_is_the_cli_schema(world: World, client: httpx.AsyncClient) -> None:
    """/api/lag answers the same JSON as `publisher lag --json`, and filters by channel."""
    _broken_portal(world)
    response = await client.get("/api/lag")
    assert response.json() == lag_json.to_json(world.report(), source="daemon")
    assert response.headers["X-Publisher-Config"] == world.config.digest != ""  # `publisher lag` trusts its own daemon only
    past = (await client.get("/api/lag", params={"at": "2015-01-01T00:00:00Z", "since": "1d"})).json()
    assert (past["generated_at"], past["window"]["since"]) == ("2015-01-01T00:00:00Z", "2014-12-31T00:00:00Z")
    bad = await client.get("/api/lag", params={"since": "yesterday"})
    assert bad.status_code == 400 and "'yesterday' is neither a duration" in bad.json()["error"]
    one = (await client.get("/api/lag", params={"channel": "city_portal"})).json()
    assert [c["name"] for c in one["channels"]] == ["city_portal"] and one["channels"][0]["status"] == "late"
    assert (await client.get("/api/lag", params={"channel": "nope"})).status_code == 404


async def test_metrics(world: World, client: httpx.AsyncClient) -> None:
    """/metrics has the lag histogram per channel (rows seen live after start), states and last-live time."""
    first = (await client.get("/metrics")).text
    assert 'publisher_delivery_lag_seconds_count{channel="bureau_site"} 0.0' in first
    _broken_portal(world)  # rows go live after the server started
    text = (await client.get("/metrics")).text
    assert 'publisher_delivery_lag_seconds_bucket{channel="bureau_site",le="5.0"} 1.0' in text
    assert 'publisher_delivery_lag_seconds_count{channel="bureau_site"} 1.0' in text
    assert 'publisher_deliveries{channel="city_portal",state="failed"} 1.0' in text
    assert 'publisher_channel_late_deliveries{channel="city_portal"} 1.0' in text
    gauge = next(line for line in text.splitlines()
                 if line.startswith('publisher_channel_last_live_timestamp_seconds{channel="bureau_site"}'))
    assert float(gauge.split()[-1]) == (T0 + timedelta(seconds=4)).timestamp()
    again = (await client.get("/metrics")).text  # each delivery is observed once
    assert 'publisher_delivery_lag_seconds_count{channel="bureau_site"} 1.0' in again


async def test_retry_requeues_the_failed_delivery(world: World, client: httpx.AsyncClient) -> None:
    """The retry button puts the failed delivery back to pending and audits who asked."""
    _broken_portal(world)
    token = csrf_token((await client.get("/")).text)
    response = await client.post("/retry", data={"item_id": "2015-notices-0001", "channel": "city_portal",
                                                  "csrf_token": token})
    assert response.status_code == 303 and response.headers["location"] == "/?retried=1"
    row = next(r for r in world.store.deliveries_of("2015-notices-0001") if r.channel == "city_portal")
    assert row.state == DeliveryState.PENDING and row.attempts == 1  # counted as a repeat: a create asks `find` first
    assert world.store.audit_log("2015-notices-0001")[0].actor.startswith("dashboard@")
    cross = await client.post("/retry", data={"item_id": "x", "channel": "city_portal", "csrf_token": token},
                              headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403
    forged = await client.post("/retry", data={"item_id": "2015-notices-0001", "channel": "city_portal"})
    assert forged.status_code == 403  # no CSRF token: refused even from this origin


async def test_token_login_off_loopback(tmp_path: Path) -> None:
    """Listening off loopback, every route needs the token: a login cookie or a Bearer header."""
    config = make_config(tmp_path, web={"listen": "0.0.0.0:8700", "token": "s3cret-token",
                                        "public_url": "http://bureau.example:8700"})
    store = Store.open(config.store_url)
    world = World(config=config, store=store, clock=FrozenClock(T0))
    async with _client(world, base="http://bureau.example:8700") as c:
        assert (await c.get("/")).headers["location"] == "/login"
        assert (await c.get("/api/lag")).status_code == 401
        assert (await c.get("/metrics")).status_code == 401
        assert (await c.post("/retry", data={"item_id": "x"})).status_code == 303
        assert (await c.get("/api/lag", headers={"Authorization": "Bearer s3cret-token"})).status_code == 200
        token = csrf_token((await c.get("/login")).text)
        assert (await c.post("/login", data={"password": "wrong", "csrf_token": token})).status_code == 401
        ok = await c.post("/login", data={"password": "s3cret-token", "csrf_token": token})
        assert ok.status_code == 303 and "httponly" in ok.headers["set-cookie"].lower()
        assert (await c.get("/")).status_code == 200  # the session cookie now rides along
    store.close()


async def test_off_loopback_without_a_token_refuses(tmp_path: Path) -> None:
    """Off loopback with no web.token configured, the dashboard refuses and says why."""
    config = make_config(tmp_path, web={"listen": "0.0.0.0:8700"})
    store = Store.open(config.store_url)
    async with _client(World(config=config, store=store, clock=FrozenClock(T0))) as c:
        response = await c.get("/")
        assert response.status_code == 403 and "web.token" in response.text
    store.close()
