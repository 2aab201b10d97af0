"""The web server under attack, over a real loopback server: DNS rebinding (Host), CSRF, login throttling,
signed server-side sessions with expiry and logout, weak tokens refused, and bad input answered 4xx."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from publisher.app.web.context import WebContext
from publisher.clock import FrozenClock
from publisher.config.file import ConfigError
from publisher.model import DeliveryState
from publisher.store.db import Store
from tests.harness import free_port, web_server
from tests.test_lag import T0, World, make_config

TOKEN = "安监局口令2015"  # non-ASCII: must log in like any other


@dataclass
class Server:
    world: World
    url: str

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=10, **kw)


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """The daemon's web app on a free loopback port; `listen` off loopback (so the dashboard needs a login)."""
    port = free_port()
    web: dict[str, Any] = {"listen": f"0.0.0.0:{port}", "token": TOKEN, "public_url": f"http://127.0.0.1:{port}",
                           **getattr(request, "param", {})}
    config = make_config(tmp_path, web=web)
    store = Store.open(config.store_url)
    world = World(config=config, store=store, clock=FrozenClock(T0))
    with web_server(WebContext(config=config, store=store, clock=world.clock), port) as url:
        yield Server(world, url)
    store.close()


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert match, page[:500]
    return match.group(1)


def login(c: httpx.Client, password: str = TOKEN, name: str = "") -> httpx.Response:
    token = csrf_of(c.get("/login").text)
    return c.post("/login", data={"name": name, "password": password, "csrf_token": token})


def test_a_foreign_host_is_refused(server: Server) -> None:
    """A DNS-rebinding request (`Host: evil.example` aimed at our address) is refused before any route runs."""
    with server.client() as c:
        assert login(c).status_code == 303
        page = c.get("/")
        assert page.status_code == 200
        for path, method in (("/", "GET"), ("/api/lag", "GET"), ("/retry", "POST"), ("/login", "POST")):
            evil = c.request(method, path, headers={"Host": "evil.example"}, data={"item_id": "x"})
            assert evil.status_code == 400, (path, evil.status_code)
        assert c.get("/healthz", headers={"Host": f"localhost:{server.url.rsplit(':', 1)[1]}"}).status_code == 200
    assert server.world.store.audit_log("x") == []


def test_forms_need_their_csrf_token(server: Server) -> None:
    """/retry and /login refuse a form without the page's token, with a wrong one, or from another origin."""
    item = server.world.item(title="关于开展安全生产大检查的通知", item_id="2015-notices-0001")
    server.world.delivery("city_portal", item=item, state=DeliveryState.FAILED, attempts=1, error="boom")
    with server.client() as c:
        assert c.post("/login", data={"password": TOKEN}).status_code == 403  # login CSRF too
        assert login(c).status_code == 303
        token = csrf_of(c.get("/").text)
        form = {"item_id": "2015-notices-0001", "channel": "city_portal"}
        assert c.post("/retry", data=form).status_code == 403
        assert c.post("/retry", data={**form, "csrf_token": "0" * 64}).status_code == 403
        assert c.post("/retry", data={**form, "csrf_token": token},
                      headers={"Origin": "http://evil.example"}).status_code == 403
        assert server.world.store.audit_log("2015-notices-0001") == []
        ok = c.post("/retry", data={**form, "csrf_token": token}, headers={"Origin": server.url})
        assert ok.status_code == 303 and ok.headers["location"] == "/?retried=1"
    assert server.world.store.audit_log("2015-notices-0001")[0].actor == "token@127.0.0.1"
    with server.client() as other:  # another browser's token is no good with this browser's cookie
        other.get("/login")
        assert other.post("/retry", data={**form, "csrf_token": token}).status_code in (303, 403)
        assert login(other).status_code == 303
        assert other.post("/retry", data={**form, "csrf_token": token}).status_code == 403


def test_logins_are_throttled_per_address(server: Server) -> None:
    """Five wrong tokens in a row pause this address's logins (429, even with the right token) until the pause
    has passed; a success then clears the count."""
    with server.client() as c:
        for _ in range(5):
            assert login(c, "wrong-token-1").status_code == 401
        paused = login(c)
        assert paused.status_code == 429 and int(paused.headers["Retry-After"]) > 0
        assert "分钟后再试" in paused.text
        assert c.get("/").status_code == 303  # not signed in
        server.world.clock.advance(timedelta(minutes=15, seconds=1))
        assert login(c).status_code == 303
        assert c.get("/").status_code == 200


def test_sessions_are_signed_random_and_expire(server: Server) -> None:
    """Each login gets its own signed session id (HttpOnly, SameSite=Strict); an altered cookie is not let in;
    the session ends after web.session_ttl and at logout, on the server (a copied cookie is useless)."""
    with server.client() as a, server.client() as b:
        first, second = login(a), login(b)
        cookie_a, cookie_b = first.cookies["publisher_session"], second.cookies["publisher_session"]
        assert cookie_a != cookie_b
        header = first.headers["set-cookie"].lower()
        assert "httponly" in header and "samesite=strict" in header and "secure" not in header
        assert a.get("/").status_code == 200
        with server.client() as forger:
            value, _, mac = cookie_a.rpartition(".")
            forger.cookies.set("publisher_session", value[:-1] + ("A" if value[-1] != "A" else "B") + "." + mac)
            assert forger.get("/").status_code == 303
        copied = server.client()
        copied.cookies.set("publisher_session", cookie_a)
        assert copied.get("/").status_code == 200
        token = csrf_of(a.get("/").text)
        assert a.post("/logout", data={"csrf_token": token}).status_code == 303
        assert copied.get("/").status_code == 303  # logout ended it on the server
        copied.close()
        assert b.get("/").status_code == 200
        server.world.clock.advance(timedelta(hours=8, seconds=1))
        assert b.get("/").status_code == 303  # expired


@pytest.mark.parametrize("server", [{"public_url": "https://bureau.example"}], indirect=True)
def test_https_public_url_makes_cookies_secure(server: Server) -> None:
    """When readers reach the server over https, its cookies are marked Secure."""
    with server.client(headers={"Host": "bureau.example"}) as c:
        page = c.get("/login")
        assert "secure" in page.headers["set-cookie"].lower()
        assert c.get("/login", headers={"Host": "evil.example"}).status_code == 400


def test_check_config_refuses_a_weak_token(tmp_path: Path) -> None:
    """`token: "1"` (and other guessable tokens) fail config validation with advice; a Chinese pass phrase passes."""
    for weak in ("1", "12345678901234", "aaaaaaaaaaaa", "abcabcabc"):
        with pytest.raises(ConfigError) as err:
            make_config(tmp_path, web={"listen": "127.0.0.1:8700", "token": weak})
        assert "web.token" in str(err.value) and "too easy to guess" in str(err.value)
    assert make_config(tmp_path, web={"listen": "127.0.0.1:8700", "token": TOKEN}).web.token is not None


def test_bad_input_gets_a_clean_4xx(server: Server) -> None:
    """Non-ASCII, malformed and oversized input anywhere is answered 4xx, never 500."""
    with server.client() as c:
        token = csrf_of(c.get("/login").text)
        posts: list[dict[str, Any]] = [
            {"content": "password=%E5%AE%89%ZZ&csrf_token=" + token},
            {"content": b"password=\xff\xfe\x00&csrf_token=" + token.encode()},
            {"content": b"--x\r\nbroken", "headers": {"Content-Type": "multipart/form-data; boundary=x"}},
            {"content": b"{}", "headers": {"Content-Type": "application/json"}},
            {"data": {"name": "局长" * 500, "password": "口令" * 2000, "csrf_token": token}},
            {"data": {"password": TOKEN, "csrf_token": "令牌"}},
        ]
        for n, kw in enumerate(posts):
            r = c.post("/login", **kw)
            assert 400 <= r.status_code < 500, (n, r.status_code, r.text[:200])
        for path in ("/?range=%FF%FE", "/api/lag?since=%E4%BD%A0", "/api/lag?at=\u00ff", "/login?next=//evil.example",
                     "/feeds/%E4%BD%A0.xml", "/api/lag?limit=99999999999999999999"):
            r = c.get(path, headers={"Cookie": "publisher_session=局长.abc; publisher_csrf=☃".encode()})
            assert r.status_code < 500, (path, r.status_code)
        assert c.get("/", headers={"Authorization": "Bearer 安监局".encode()}).status_code == 303
        assert login(c).status_code == 303  # and the Chinese token itself logs in
        assert c.get("/").status_code == 200


async def test_account_logins_are_throttled_per_account_and_per_address(tmp_path: Path) -> None:
    """Five wrong passwords for one account from five addresses pause that account's logins anywhere; five failures
    from one address (for five names) pause that address; a password never reaches the log."""
    from argon2 import PasswordHasher
    from structlog.testing import capture_logs

    from publisher.app.web.app import create_app
    from publisher.review.accounts import Accounts

    config = make_config(tmp_path, web={"listen": "127.0.0.1:8700"})
    store = Store.open(config.store_url)
    clock = FrozenClock(T0)
    accounts = Accounts(store, clock, roles=config.roles, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    accounts.add("li", "李科长", ["section_chief"], None, "李科长的口令2015")
    app = create_app(WebContext(config=config, store=store, clock=clock, accounts=accounts))

    async def attempt(address: str, name: str, password: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8700") as c:
            token = csrf_of((await c.get("/login")).text)
            return await c.post("/login", data={"name": name, "password": password, "csrf_token": token})

    with capture_logs() as logs:
        for n in range(5):
            assert (await attempt(f"10.0.0.{n}", "li", f"guess-{n}-秘密")).status_code == 401
        assert (await attempt("10.0.0.99", "li", "李科长的口令2015")).status_code == 429  # the account pauses
        for n in range(5):
            assert (await attempt("10.0.1.1", f"user{n}", "guess-秘密")).status_code == 401
        assert (await attempt("10.0.1.1", "li", "李科长的口令2015")).status_code == 429  # and so does the address
        clock.advance(timedelta(minutes=16))
        ok = await attempt("10.0.1.1", "li", "李科长的口令2015")
        assert ok.status_code == 303 and ok.headers["location"] == "/"
    assert not [e for e in logs if "秘密" in repr(e) or "口令" in repr(e)]
    assert {e["event"] for e in logs} >= {"web.login_refused", "web.login_throttled", "web.login"}
    store.close()


def test_an_account_session_ends_at_logout_and_expiry(tmp_path: Path) -> None:
    """A reviewer's session lives in the store: logout ends it for a copied cookie too, and it expires after
    review.session_ttl."""
    from argon2 import PasswordHasher

    from publisher.review.accounts import Accounts

    port = free_port()
    config = make_config(tmp_path, web={"listen": f"127.0.0.1:{port}"})
    store = Store.open(config.store_url)
    clock = FrozenClock(T0)
    accounts = Accounts(store, clock, roles=config.roles, session_ttl=config.review.session_ttl,
                        hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    accounts.add("li", "李科长", ["section_chief"], None, "李科长的口令2015")
    with web_server(WebContext(config=config, store=store, clock=clock, accounts=accounts), port) as url:
        with httpx.Client(base_url=url) as a, httpx.Client(base_url=url) as b:
            assert login(a, "李科长的口令2015", name="li").status_code == 303
            copied = httpx.Client(base_url=url, cookies={"publisher_session": a.cookies["publisher_session"]})
            assert copied.get("/desk").status_code == 200
            a.post("/logout", data={"csrf_token": csrf_of(a.get("/desk").text)})
            assert copied.get("/desk").status_code == 303
            copied.close()
            assert login(b, "李科长的口令2015", name="li").status_code == 303
            assert b.get("/desk").status_code == 200
            clock.advance(config.review.session_ttl + timedelta(seconds=1))
            assert b.get("/desk").status_code == 303
    store.close()


def test_check_config_names_a_weak_token_without_showing_it(tmp_path: Path) -> None:
    """`publisher check-config` on a config with `token: "1x"`-like weakness fails, names web.token and never
    prints the token itself."""
    import subprocess
    import sys

    import yaml

    from tests.harness import SHIPPED

    data = yaml.safe_load(SHIPPED.read_text("utf-8"))
    data["web"] = {"listen": "127.0.0.1:8700", "token": "zz1zz1zz1"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    out = subprocess.run([sys.executable, "-m", "publisher", "check-config", "--config", str(path)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "web.token" in out.stderr and "too easy to guess" in out.stderr
    assert "zz1zz1zz1" not in out.stdout + out.stderr
