"""End to end in a real browser: the daemon with its sandbox, one channel failing, the dashboard says so.

Needs Debian's chromium (/usr/bin/chromium) and playwright from PyPI, driving the system browser
(no `playwright install`). Skipped with the reason when chromium is absent, except in CI (CI=true),
where it must run. Set PUBLISHER_SCREENSHOT=docs/dashboard.png to refresh the README's screenshot.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from tests.harness import drop, faults, free_port, write_config

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists() and os.environ.get("CI") != "true",
                       reason="Debian's chromium is not installed (apt-get install -y chromium)"),
]


def _wait(what: str, check: Any, timeout: float = 60.0, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    tail = log.read_text(encoding="utf-8", errors="replace")[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}\n{tail}")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[SimpleNamespace]:
    """`publisher run` as its own process, with `sandbox: {enabled: true}` on a free loopback port."""
    sb_port, web_port = free_port(), free_port()
    sandbox_url = f"http://127.0.0.1:{sb_port}"
    config = write_config(tmp_path, SimpleNamespace(base_url=sandbox_url), web_port=web_port, **{
        "sandbox.enabled": True, "sandbox.listen": f"127.0.0.1:{sb_port}",
        "channels.city_portal.sla": "2s",  # so that its failure is late within the test's patience
        "channels.city_portal.verify_after": "0s", "channels.provincial_feed.verify_after": "0s",
    })
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "publisher", "run", "--config", str(config),
                                 "--log-format", "console"], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    web = f"http://127.0.0.1:{web_port}"
    try:
        _wait("the daemon's /healthz", lambda: proc.poll() is None and httpx.get(f"{web}/healthz").is_success
              or proc.poll() is not None and pytest.fail(f"daemon exited: {log.read_text()[-3000:]}"), log=log)
        yield SimpleNamespace(web=web, sandbox=SimpleNamespace(base_url=sandbox_url), inbox=tmp_path / "queue" / "inbox",
                              log=log, tmp=tmp_path)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_dashboard_shows_the_failing_channel_late_in_a_real_browser(daemon: SimpleNamespace) -> None:
    """With the city portal refusing our token, Chromium shows it late with the portal's error; others on time."""
    from playwright.sync_api import sync_playwright

    faults(daemon.sandbox, "portal", unauthorized=True)
    for n, title in enumerate(("关于做好节后复工安全生产工作的通知", "全市安全生产大检查工作进展", "危险化学品专项整治情况")):
        drop(daemon.inbox, f"update-{n}.md", {"id": f"2015-updates-{n:04d}", "title": title, "category": "updates",
                                              "date": "2015-03-18"}, "各区县安监局：现将有关情况通报如下。")

    def ready() -> dict[str, Any] | None:
        data = httpx.get(f"{daemon.web}/api/lag").json()
        ch = {c["name"]: c for c in data["channels"]}
        portal = ch["city_portal"]
        done = (portal["late_total"] == 3 and all(d["last_error"] for d in portal["late"])
                and ch["bureau_site"]["last_live_at"] and ch["provincial_feed"]["last_live_at"]
                and not ch["bureau_site"]["counts"]["pending"] and not ch["provincial_feed"]["counts"]["sent"])
        return ch if done else None

    channels = _wait("city_portal late, the others live", ready, timeout=90, log=daemon.log)
    assert channels["bureau_site"]["status"] == "on_time" and channels["provincial_feed"]["status"] == "on_time"

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
            page.goto(daemon.web + "/")
            portal_row = page.locator("#channel-city_portal")
            assert portal_row.get_attribute("data-status") == "late"
            assert "超时" in portal_row.locator("td.status").inner_text()
            for name in ("bureau_site", "provincial_feed", "microblog"):
                row = page.locator(f"#channel-{name}")
                assert row.get_attribute("data-status") == "on_time", name
                assert "按时" in row.locator("td.status").inner_text()
            late_rows = page.locator("tr.late-item[data-channel='city_portal']")
            assert late_rows.count() == 3
            error = late_rows.first.locator("td.error").inner_text()
            assert "401" in error or "unauthori" in error.lower() or "token" in error.lower(), error
            assert page.locator("tr.late-item[data-channel='bureau_site']").count() == 0
            assert page.locator("svg.plot").count() == 1  # the lag plot, drawn server-side
            shot = daemon.tmp / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            if os.environ.get("PUBLISHER_SCREENSHOT"):
                shutil.copy(shot, os.environ["PUBLISHER_SCREENSHOT"])

            late_rows.first.locator("button[type=submit]").click()  # retry: re-queued, and fails again
            page.wait_for_load_state()
            assert "已重新排队 1 条" in page.locator(".flash").inner_text()
            page.goto(daemon.web + "/?lang=en")
            assert "Late items" in page.content()
        finally:
            browser.close()
