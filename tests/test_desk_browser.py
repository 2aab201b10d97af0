"""The review desk end to end in real headless Chromium, against `publisher run` with its sandbox: two
reviewers log in; the first sees their queue, opens an item whose finding is highlighted, batch-approves 20
items that then reach the sandbox channels, sends one back (its queue/returned/ note appears) and is not
fooled by a form posted from another origin; the second cannot sign a second step of a chain he already
signed; five wrong passwords in a row are throttled.

Set PUBLISHER_SCREENSHOT_DIR=docs to refresh the README's screenshots (desk-queue.png, desk-item.png).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from publisher.clock import CHINA, SystemClock
from publisher.config.settings import load_config
from publisher.model import DeliveryState, RevisionState
from publisher.review.accounts import Accounts
from publisher.store.db import Store
from tests.harness import drop, free_port, received, write_config
from tests.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS, _wait
from tests.test_desk import LIGHT

PASSWORD = "desk-demo 口令 2015"
BATCH = [f"2015-news-{n:04d}" for n in range(20)]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists() and os.environ.get("CI") != "true",
                       reason="Debian's chromium is not installed (apt-get install -y chromium)"),
]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[SimpleNamespace]:
    """`publisher run` with its sandbox, two reviewer accounts in its store, and 25 items waiting for review."""
    sb_port, web_port = free_port(), free_port()
    sandbox_url = f"http://127.0.0.1:{sb_port}"
    config_path = write_config(tmp_path, SimpleNamespace(base_url=sandbox_url), web_port=web_port, **{
        "sandbox.enabled": True, "sandbox.listen": f"127.0.0.1:{sb_port}",
        "channels.city_portal.verify_after": "0s", "channels.provincial_feed.verify_after": "0s",
    })
    config = load_config(config_path)
    store = Store.open(config.store_url)
    # stored with light argon2 parameters (the daemon verifies with the hash's own, then raises them)
    accounts = Accounts(store, SystemClock(), roles=config.roles, hasher=LIGHT)
    accounts.add("li", "李科长", ["section_chief"], "li@bureau.example", PASSWORD)
    accounts.add("wang", "王副局长", ["section_chief", "deputy_director"], "wang@bureau.example", PASSWORD)
    store.close()
    inbox = tmp_path / "queue" / "inbox"
    today = datetime.now(CHINA).date()

    def ago(days: int) -> str:  # documents of the last weeks, so the deadlines read as they would today
        return (today - timedelta(days=days)).isoformat()

    for n, item_id in enumerate(BATCH):
        drop(inbox, f"{item_id}.md", {"id": item_id, "title": f"全市安全生产检查进展（第{n + 1}期）", "category": "news",
                                      "date": ago(3), "author": "办公室"}, "各区县安监局：现将检查进展通报如下。")
    drop(inbox, "finding.md", {"id": "2015-news-0100", "title": "关于危化品企业约谈情况的通报", "category": "news",
                               "date": ago(20), "author": "危化科"}, "约谈联系人：张某，手机13912345678。")
    for item_id, title in (("2015-notices-0001", "关于做好节后复工安全生产工作的通知"),
                           ("2015-notices-0002", "关于开展安全生产月活动的通知"),
                           ("2015-notices-0003", "关于报送季度统计数据的通知"),
                           ("2015-notices-0004", "关于调整值班安排的通知")):
        drop(inbox, f"{item_id}.md", {"id": item_id, "title": title, "category": "notices", "date": ago(1),
                                      "author": "办公室"}, "各区县安监局：请遵照执行。")
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "publisher", "run", "--config", str(config_path),
                                 "--log-format", "console"], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    web = f"http://127.0.0.1:{web_port}"
    try:
        _wait("the daemon's /healthz", lambda: proc.poll() is None and httpx.get(f"{web}/healthz").is_success
              or proc.poll() is not None and pytest.fail(f"daemon exited: {log.read_text()[-3000:]}"), log=log)
        yield SimpleNamespace(web=web, sandbox=SimpleNamespace(base_url=sandbox_url), config=config, log=log,
                              tmp=tmp_path)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def evil_site(daemon: SimpleNamespace) -> Iterator[str]:
    """A page on another origin whose form posts a batch approval to the desk (it cannot know the CSRF token)."""
    page = (f'<html><body><form method="post" action="{daemon.web}/desk/approve">'
            '<input type="hidden" name="item_id" value="2015-notices-0004">'
            '<button type="submit" id="win">领取奖品</button></form></body></html>').encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def _store(daemon: SimpleNamespace) -> Store:
    return Store.open(daemon.config.store_url, migrate=False)


def _state(daemon: SimpleNamespace, item_id: str) -> RevisionState | None:
    store = _store(daemon)
    try:
        rev = store.revision(item_id)
        return None if rev is None else rev.state
    finally:
        store.close()


def _login(page: Any, web: str, name: str, password: str = PASSWORD, path: str = "/desk") -> None:
    page.goto(web + path)
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("#login button[type=submit]")
    page.wait_for_load_state()


def _shot(page: Any, tmp: Path, name: str) -> None:
    shot = tmp / name
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("PUBLISHER_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["PUBLISHER_SCREENSHOT_DIR"]) / name)


def test_two_reviewers_clear_the_desk_in_a_real_browser(daemon: SimpleNamespace, evil_site: str) -> None:
    """The whole review desk story of issue 11's "Done when", in Chromium."""
    from playwright.sync_api import sync_playwright

    _wait("25 revisions in review", lambda: all(_state(daemon, i) is not None for i in [*BATCH, "2015-notices-0004"]),
          log=daemon.log)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            li = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN").new_page()
            _login(li, daemon.web, "li")
            assert li.url.endswith("/desk") and li.locator("#me").inner_text() == "李科长"
            rows = li.locator("tr.queue-row")
            assert rows.count() == 25
            assert rows.first.get_attribute("data-item") == "2015-news-0100"  # the oldest document: most urgent
            _shot(li, daemon.tmp, "desk-queue.png")

            li.click("a[href='/desk/item/2015-news-0100']")
            mark = li.locator("#view-bureau_site mark.finding")
            assert mark.first.inner_text() == "13912345678" and mark.first.is_visible()
            assert "手机" in (mark.first.get_attribute("title") or "")
            assert "/140" in li.locator("#view-microblog .count").inner_text()
            _shot(li, daemon.tmp, "desk-item.png")

            li.goto(daemon.web + "/desk")
            for item_id in BATCH:
                li.check(f"tr[data-item='{item_id}'] input[type=checkbox]")
            li.check("tr[data-item='2015-notices-0001'] input[type=checkbox]")
            li.click("#approve-ticked")
            li.wait_for_load_state()
            assert "已签发 21 条" in li.locator("#approved-count").inner_text()

            li.goto(daemon.web + "/desk/item/2015-notices-0003")
            li.fill("#reject-form textarea[name=reason]", "请补充报送截止时间")
            li.click("#reject")
            li.wait_for_load_state()
            assert li.locator("#item-state").get_attribute("data-state") == "rejected"
            note = daemon.tmp / "queue" / "returned" / "2015-notices-0003.r1.txt"
            assert "请补充报送截止时间" in note.read_text("utf-8") and "li" in note.read_text("utf-8")

            li.goto(evil_site)  # another origin: the same-site cookie rides along, the token cannot
            li.click("#win")
            li.wait_for_load_state()
            assert "cross-site form refused" in li.content()
            assert _state(daemon, "2015-notices-0004") == RevisionState.REVIEW

            wang_ctx = browser.new_context(locale="zh-CN")
            wang, stale = wang_ctx.new_page(), wang_ctx.new_page()
            _login(wang, daemon.web, "wang")
            for page in (wang, stale):
                page.goto(daemon.web + "/desk/item/2015-notices-0002")
            wang.click("#approve")  # step 1, section chief
            wang.wait_for_load_state()
            assert "已签发" in wang.locator("#done").inner_text()
            assert wang.locator("#approve").count() == 0  # the desk offers him no second step
            stale.click("#approve")  # a page opened before: the review module still refuses
            stale.wait_for_load_state()
            assert "wang" in stale.locator("#refused").inner_text()
            assert _state(daemon, "2015-notices-0002") == RevisionState.REVIEW
            wang.goto(daemon.web + "/desk/item/2015-notices-0001")  # li signed step 1: wang may sign step 2
            wang.click("#approve")
            wang.wait_for_load_state()
            assert wang.locator("#item-state").get_attribute("data-state") == "approved"

            stranger = browser.new_context(locale="zh-CN").new_page()
            for _ in range(5):
                _login(stranger, daemon.web, "li", "not-the-password", path="/login")
                assert "账号或密码不正确" in stranger.locator("#login-error").inner_text()
            _login(stranger, daemon.web, "li", path="/login")  # the right password, now too late
            assert "登录失败次数过多" in stranger.locator("#login-error").inner_text()
            assert "/login" in stranger.url
        finally:
            browser.close()

    def delivered() -> bool:
        store = _store(daemon)
        try:
            rows = [d for item_id in BATCH for d in store.deliveries_of(item_id)]
        finally:
            store.close()
        return len(rows) == routed * len(BATCH) and all(d.state == DeliveryState.LIVE for d in rows)

    routed = len(daemon.config.categories["news"].channels)  # the shipped routing: site, portal, feed, microblog, WeChat
    _wait("the 20 approved items live on every routed sandbox channel", delivered, timeout=120, log=daemon.log)
    titles = {p["title"]["raw"] if isinstance(p["title"], dict) else p["title"]
              for p in received(daemon.sandbox, "wordpress")["posts"]}
    assert sum("全市安全生产检查进展" in t for t in titles) == 20
    assert len(received(daemon.sandbox, "weibo")["statuses"]) == 20
