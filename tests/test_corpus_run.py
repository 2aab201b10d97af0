"""The whole corpus of one bureau-year through a fresh working directory, checked on the peers' side."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from publisher.app.cli.main import main as cli
from publisher.app.daemon import Daemon
from publisher.app.web.context import WebContext
from publisher.clock import FrozenClock
from publisher.config.settings import Config
from publisher.model import RevisionState
from publisher.review.accounts import Accounts
from publisher.sandbox import SandboxProcess
from publisher.sandbox.corpus import make_corpus
from publisher.store.db import Store
from tests.harness import free_port, load, received, settings, web_server, write_config
from tests.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.slow
SCALE = float(os.environ.get("CORPUS_SCALE", "1"))


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess() as sb:
        yield sb


@dataclass
class CorpusRun:
    """One bureau-year taken in, reviewed and delivered; the tests below read what it left."""

    root: Path
    config_path: Path
    cfg: Config
    manifest: dict[str, Any]
    counts: dict[str, int]
    blocked: set[str]  # the items the confidentiality screen stopped at intake
    store: Store


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory, sandbox: SandboxProcess) -> Iterator[CorpusRun]:
    """The corpus (planted secrets and broken files included) through the daemon and the sandbox: reviewers
    sign everything off and release the items the screen stopped (the planted secrets are synthetic)."""
    tmp_path = tmp_path_factory.mktemp("corpus")
    port = free_port()
    config_path = write_config(tmp_path, sandbox, web_port=port)
    cfg = load(config_path)
    inbox = tmp_path / "queue" / "inbox"
    manifest = make_corpus(inbox, broken=True, scale=SCALE)
    (inbox / "manifest.json").unlink()  # not an item file; keep the inbox as editors would leave it
    # our client-side 30/h is what is tested here; the stand-in counts real time, our clock is frozen
    settings(sandbox, "weibo", posts_per_hour=10_000, calls_per_day=100_000)
    settings(sandbox, "wechat", publish_seconds=0)
    clock = FrozenClock(datetime.now(UTC))
    daemon = Daemon(cfg, clock=clock)

    async def go() -> tuple[dict[str, int], set[str]]:
        try:
            # run_once serves the feed on `port`, where the collector fetches it after each WebSub ping
            counts = await daemon.run_once()
            blocked = {r.item_id for r in daemon.store.revisions_in([RevisionState.BLOCKED])}
            # reviewers (one account per role: separation of duties) release what the screen stopped and
            # sign everything off, in each category's chain order
            accounts = Accounts(daemon.store, clock)
            signer = {role: accounts.add(f"reviewer_{role}", f"测试审核员 {label}", [role], None, None)
                      for role, label in cfg.roles.items()}
            for item_id in blocked:
                daemon.review.override(item_id, signer["legal"], reason="演示数据，号码系虚构")
            for w in daemon.review.waiting():
                if w.state == "review":
                    for role in cfg.categories[w.category].review[len(w.signed):]:
                        daemon.review.approve(w.item_id, signer[role], role=role)
            for _ in range(6):  # the microblog's 30/h: a few hours of the frozen clock
                await daemon.run_once()
                await asyncio.sleep(0.3)
                clock.advance(timedelta(hours=1, minutes=1))
            await daemon.run_once()
            return counts, blocked
        finally:
            await daemon.aclose()  # in the loop that made its clients and its web server

    counts, blocked = asyncio.run(go())
    yield CorpusRun(root=tmp_path, config_path=config_path, cfg=cfg, manifest=manifest, counts=counts,
                    blocked=blocked, store=daemon.store)


def test_corpus_year_is_delivered_exactly_once_per_routed_channel(corpus_run: CorpusRun,
                                                                  sandbox: SandboxProcess) -> None:
    """Every item reaches each routed channel once; planted items are blocked until released; broken files
    are rejected."""
    run = corpus_run
    tmp_path, manifest, counts, cfg = run.root, run.manifest, run.counts, run.cfg
    inbox = tmp_path / "queue" / "inbox"
    sensitive = {s["id"] for s in manifest["sensitive"]}
    broken = [b for b in manifest["broken"] if b["reason"]]
    accepted_odd = [b["accept_as"] for b in manifest["broken"] if not b["reason"]]
    rejected = tmp_path / "queue" / "rejected"
    assert counts["rejected"] == len(broken)
    for b in broken:
        assert (rejected / b["file"]).exists(), b
        note = (rejected / (b["file"] + ".error.txt")).read_text(encoding="utf-8")
        assert "问题" in note and "Problem" in note
        assert (rejected / b["file"]).read_bytes() == _original(b["file"], tmp_path)
    assert counts["accepted"] == len(manifest["items"]) + len(accepted_odd)
    assert list(inbox.glob("*.md")) == []

    store = run.store
    assert run.blocked == sensitive

    expected: Counter[str] = Counter()
    for it in manifest["items"]:
        for ch in it["channels"] or cfg.categories[it["category"]].channels:
            expected[ch] += 1
    expected.update(dict.fromkeys(cfg.categories["notices"].channels, 2))  # the two odd encodings (notices)

    posts = Counter(p["slug"] for p in received(sandbox, "wordpress")["posts"])
    articles = Counter(a["source_id"] for a in received(sandbox, "portal"))
    statuses = received(sandbox, "weibo")["statuses"]
    hub = received(sandbox, "hub")
    assert max(posts.values()) == 1 and len(posts) == expected["bureau_site"]
    assert max(articles.values()) == 1 and len(articles) == expected["city_portal"]
    assert len(statuses) == expected["microblog"]
    if SCALE == 1:
        assert expected["microblog"] == 62
    assert len(hub["entries"]) == expected["provincial_feed"]
    # one freepublish job per routed item, told apart by its 阅读原文 link (the item's own site article)
    wechat = Counter(j["news_item"][0]["content_source_url"] for j in received(sandbox, "wechat")["jobs"])
    assert expected["wechat"] > 0 and max(wechat.values()) == 1 and len(wechat) == expected["wechat"]
    assert len(received(sandbox, "wechat")["articles"]) == expected["wechat"]

    states = store.delivery_states()
    for ch, n in expected.items():
        done = states[ch].get("live", 0) + states[ch].get("sent", 0)
        assert done == n, (ch, states[ch])
        assert not set(states[ch]) - {"live", "sent"}, (ch, states[ch])
    report = {ch: states[ch] for ch in expected}
    (tmp_path / "states.json").write_text(json.dumps(report))


def _original(name: str, root: Path) -> bytes:
    """The broken file as the generator wrote it (a fresh copy to compare byte for byte)."""
    fresh = root / "fresh"
    if not fresh.exists():
        make_corpus(fresh, broken=True, scale=SCALE)
    return (fresh / name).read_bytes()


# The bureau's own 2015 annual report on government information disclosure: items per column, and posts
# on its government microblog. The corpus generator is built to these; the store must give them back.
BUREAU_2015 = {"安监机构": 4, "安监要闻": 38, "公文公告": 205, "安全生产动态": 244, "安委会工作": 242, "事故通报": 8,
               "法律法规": 13, "服务指南": 11}
BUREAU_2015_MICROBLOG = 62


def _report(run: CorpusRun, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["report", *args, "--format", "json", "--config", str(run.config_path)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.mark.skipif(SCALE != 1, reason="the bureau's figures are of one year")
def test_annual_report_reproduces_the_bureaus_2015_table(corpus_run: CorpusRun) -> None:
    """`publisher report annual --year 2015` over the delivered corpus gives the bureau's published 2015 figures,
    the national table's rows from config.yaml's mapping, and each channel's count as the manifest routes it."""
    run = corpus_run
    doc = _report(run, "annual", "--year", "2015")
    assert {c["name"]: c["items"] for c in doc["categories"]} == BUREAU_2015
    channels = {c["key"]: c["items"] for c in doc["channels"]}
    assert channels["microblog"] == BUREAU_2015_MICROBLOG
    routed = Counter(ch for it in run.manifest["items"]
                     for ch in it["channels"] or run.cfg.categories[it["category"]].channels)
    assert channels == {ch: routed[ch] for ch in run.cfg.channels}
    assert doc["disclosed"] == sum(BUREAU_2015.values()) == len(run.manifest["items"])
    assert sum(doc["months"][c["key"]][m] for c in doc["categories"] for m in range(12)) == doc["disclosed"]
    assert doc["blocked"] == doc["released"] == len(run.manifest["sensitive"])
    assert doc["edits"] == doc["retractions"] == doc["rejected"] == 0
    # dated 2015 and published now: every item went public long after its 20 working days
    assert doc["deadline"]["late"] == doc["disclosed"] and doc["deadline"]["on_time"] == 0
    national = {row["row"]: row["values"] for row in doc["national"]}
    mapping = run.cfg.annual_report
    for row, values in national.items():
        first, *rest = values.values()
        assert first == (sum(BUREAU_2015[run.cfg.category_name(c)] for c in mapping[row]) if row in mapping else None)
        assert rest == [None] * len(rest)  # 本年废止件数, 现行有效件数: for a person to fill in
    assert national["行政规范性文件"]["本年制发件数"] == BUREAU_2015["公文公告"]

    earlier = _report(run, "annual", "--year", "2014")  # the two odd encodings the corpus dates a year before
    assert earlier["disclosed"] == 2 and {c["key"]: c["items"] for c in earlier["categories"]}["notices"] == 2


@pytest.mark.skipif(SCALE != 1, reason="the bureau's figures are of one year")
def test_districts_report_matches_the_manifest(corpus_run: CorpusRun) -> None:
    """`publisher report districts` over the year counts each district's items as the generator wrote them (127),
    and a two-month period only the items dated in it."""
    run = corpus_run
    wanted = Counter(it["source"] for it in run.manifest["items"] if it["source"])
    assert sum(wanted.values()) == 127
    doc = _report(run, "districts", "--from", "2015-01-01", "--to", "2015-12-31")
    assert {d["district"]: d["disclosed"] for d in doc["districts"]} == dict(wanted)
    assert {d["district"]: d["received"] for d in doc["districts"]} == dict(wanted)
    assert doc["total"] == {"received": 127, "disclosed": 127}

    bimonthly = _report(run, "districts", "--from", "2015-03-01", "--to", "2015-04-30")
    in_period: Counter[str] = Counter()
    for it in run.manifest["items"]:
        if it["source"] and "2015-03-01" <= run.store.revision(it["id"]).doc_date.isoformat() <= "2015-04-30":
            in_period[it["source"]] += 1
    assert {d["district"]: d["disclosed"] for d in bimonthly["districts"]} == dict(in_period)
    assert 0 < bimonthly["total"]["disclosed"] < 127


@pytest.mark.browser
@pytest.mark.skipif(SCALE != 1, reason="the bureau's figures are of one year")
@pytest.mark.skipif(not CHROMIUM.exists() and os.environ.get("CI") != "true",
                    reason="Debian's chromium is not installed (apt-get install -y chromium)")
def test_reports_page_in_a_real_browser(corpus_run: CorpusRun) -> None:
    """Chromium, with JavaScript off, shows /reports for 2015: a stacked bar a month whose segments add up to
    the year's 765 items, and the national table with its blanks marked. Set PUBLISHER_REPORTS_SCREENSHOT=
    docs/reports.png to refresh the README's screenshot."""
    from playwright.sync_api import sync_playwright

    run = corpus_run
    ctx = WebContext(config=run.cfg, store=run.store, clock=FrozenClock(datetime.now(UTC)))
    with web_server(ctx, free_port()) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900}, locale="zh-CN", java_script_enabled=False)
            page.goto(base + "/reports?year=2015")
            bars = page.locator("#bars rect.bar")
            assert sum(int(bars.nth(i).get_attribute("data-n") or 0) for i in range(bars.count())) == 765
            box = page.locator("#bars").bounding_box()
            assert box is not None and box["width"] > 600 and box["height"] > 150
            assert page.locator("td.fill").count() == 8  # 本年废止件数, 现行有效件数 ×2; 许可, 处罚, 强制, 收费
            assert "公文公告" in page.locator(".legend").inner_text()
            shot = run.root / "reports.png"
            page.screenshot(path=str(shot), full_page=True)
            if os.environ.get("PUBLISHER_REPORTS_SCREENSHOT"):
                shutil.copy(shot, os.environ["PUBLISHER_REPORTS_SCREENSHOT"])
        finally:
            browser.close()
