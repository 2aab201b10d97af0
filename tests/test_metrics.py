"""/metrics as Prometheus and Grafana read it: values from a live scrape, promtool's checks, the shipped
alert rules and their unit tests, and a dashboard that asks only for what the daemon exports."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from publisher.app.daemon import Daemon
from publisher.app.web.context import WebContext
from publisher.clock import FrozenClock
from publisher.lag import report as lag
from publisher.model import DeliveryState, RevisionState
from publisher.review.accounts import Accounts
from publisher.review.chain import Review
from publisher.sandbox import SandboxServer
from publisher.store.db import Store
from tests.harness import drop, faults, free_port, load, web_server, write_config
from tests.test_lag import World, make_config

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "publisher-dashboard.json"
FUTURE = {"publisher_source_last_success_timestamp_seconds"}  # district sources: documented in the rules file
NOW = datetime(2015, 3, 10, 2, 0, tzinfo=UTC)  # 10:00 on Tuesday Mar 10 in Beijing
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by its name and labels."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def promtool() -> str:
    """promtool's path; a missing promtool skips the test on a workstation and fails it in CI."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing: .ci/run installs it with Debian's prometheus package")
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return path


def run_promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([promtool(), *args], input=stdin, capture_output=True, text=True, cwd=PROMETHEUS,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


# --- the report's gauges and the review queue, over a real store ---------------------------------------

@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """The shipped config over a real store, on SQLite and on PostgreSQL, with the clock at NOW."""
    if request.param == "postgresql":
        config = make_config(tmp_path, store={"url": request.getfixturevalue("pg_url")})
    else:
        config = make_config(tmp_path)
    store = Store.open(config.store_url)
    yield World(config=config, store=store, clock=FrozenClock(NOW))
    store.close()


def test_report_gauges_on_a_loopback_scrape(world: World) -> None:
    """Freshness per channel and category, late and lost counts, legal deadlines, the review queue per next role
    and the report's age come out of a real app's /metrics with the values the lag report and review hold."""
    news = world.item(category="news", item_id="2015-news-0001")
    world.delivery("bureau_site", item=news, due_at=NOW - timedelta(days=2, seconds=30), state=DeliveryState.LIVE,
                   live_at=NOW - timedelta(days=2))
    world.delivery("city_portal", item=news, due_at=NOW - timedelta(days=2), state=DeliveryState.FAILED,
                   error="503 Service Unavailable")
    taken = world.delivery("wechat", item=news, due_at=NOW - timedelta(days=2), state=DeliveryState.LIVE,
                           live_at=NOW - timedelta(days=2))
    with world.store.tx() as conn:  # the live re-check found the article deleted on the account
        world.store.live_lost(conn, taken, NOW - timedelta(hours=1), error="taken down after it went live: 成功后用户删除")
    # made on Feb 10 and still in review: 3 working days left (at risk); it waits for the section chief
    world.item(category="news", state=RevisionState.REVIEW, item_id="stuck", created_at=datetime(2015, 2, 10, 2, tzinfo=UTC))
    # dated Jan 5 and signed by the section chief only: overdue, waiting for the deputy director
    world.item(category="notices", state=RevisionState.REVIEW, item_id="old-notice", doc_date=date(2015, 1, 5))
    review = Review(world.store, world.config, world.clock)
    li = Accounts(world.store, world.clock).add("li", "李科长", ["section_chief"], None, None)
    assert review.approve("old-notice", li, role="section_chief") == RevisionState.REVIEW
    world.item(category="news", state=RevisionState.BLOCKED, item_id="held", created_at=NOW)

    with web_server(WebContext(config=world.config, store=world.store, clock=world.clock), free_port()) as base:
        response = httpx.get(f"{base}/metrics", timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    s = parse(response.text)

    two_days = timedelta(days=2).total_seconds()
    assert value(s, "publisher_freshness_age_seconds", channel="bureau_site", category="") == two_days
    assert value(s, "publisher_freshness_age_seconds", channel="bureau_site", category="news") == two_days
    assert ("publisher_freshness_age_seconds", frozenset({"channel": "bureau_site", "category": "laws"}.items())) not in s
    assert value(s, "publisher_freshness_threshold_seconds", channel="bureau_site", category="news") == 14 * 86400
    assert value(s, "publisher_freshness_threshold_seconds", channel="bureau_site", category="laws") == 180 * 86400
    assert (value(s, "publisher_freshness_threshold_seconds", channel="bureau_site", category="")
            == lag.channel_freshness_threshold(world.config, "bureau_site").total_seconds())
    assert value(s, "publisher_channel_late_deliveries", channel="city_portal") == 1
    assert value(s, "publisher_channel_late_deliveries", channel="bureau_site") == 0
    assert value(s, "publisher_channel_lost_deliveries", channel="wechat") == 1
    assert value(s, "publisher_channel_lost_deliveries", channel="bureau_site") == 0
    assert value(s, "publisher_deliveries", channel="city_portal", state="failed") == 1
    assert value(s, "publisher_channel_sla_seconds", channel="city_portal") == 86400
    assert value(s, "publisher_legal_deadline_revisions", status="at_risk") == 1
    assert value(s, "publisher_legal_deadline_revisions", status="overdue") == 1
    assert value(s, "publisher_review_waiting_revisions", role="section_chief") == 1
    assert value(s, "publisher_review_waiting_revisions", role="deputy_director") == 1
    assert value(s, "publisher_review_waiting_revisions", role="legal") == 0
    assert value(s, "publisher_review_blocked_revisions") == 1
    assert value(s, "publisher_lag_report_age_seconds") == 0  # computed during the scrape


def test_report_families_are_a_function_of_the_report(world: World) -> None:
    """A report computed earlier (as a cache holds it) gives its own gauges, and its age at the scrape."""
    from publisher.app.web.metrics import LagMetrics, report_families

    world.delivery("bureau_site", due_at=NOW - timedelta(hours=1), state=DeliveryState.LIVE, live_at=NOW - timedelta(minutes=59))
    cached = world.report(late_limit=0)
    world.clock.advance(timedelta(minutes=3))
    ctx = WebContext(config=world.config, store=world.store, clock=world.clock)
    s = parse(LagMetrics(ctx).render(cached).decode())
    assert value(s, "publisher_lag_report_age_seconds") == 180
    assert value(s, "publisher_freshness_age_seconds", channel="bureau_site", category="") == 59 * 60  # as of the report
    fresh = {m.name: m.samples for m in report_families(world.report(late_limit=0))}
    assert fresh["publisher_freshness_age_seconds"][0].value == 62 * 60  # a report of now would say so


# --- the daemon's counters, scraped live ----------------------------------------------------------------

async def live_scrape(tmp_path: Path, sandbox: SandboxServer) -> str:
    """A daemon on the sandbox takes an accepted, a rejected and a duplicate file, meets one 429 on the
    portal, sends everything live, and is scraped on its own web port while it still serves."""
    port = free_port()
    config = load(write_config(tmp_path, sandbox, web_port=port))
    clock = FrozenClock(datetime.now(UTC))
    daemon = Daemon(config, clock=clock)
    inbox = tmp_path / "queue" / "inbox"
    front = {"id": "2015-updates-00042", "title": "张店区开展危险化学品专项整治", "category": "updates"}

    async def run() -> None:  # the collector reads our feed after the WebSub ping: look again a minute later
        await daemon.run_once()
        await asyncio.sleep(0.2)
        clock.advance(timedelta(minutes=1))
        await daemon.run_once()

    try:
        faults(sandbox, "portal", burst_429=1, retry_after="120")
        drop(inbox, "u.md", front, "检查企业 12 家。")
        drop(inbox, "bad.md", {"id": "x", "title": "无类别", "category": "no_such_category"})
        await run()
        drop(inbox, "u-again.md", front, "检查企业 12 家。")  # the same bytes once more
        clock.advance(timedelta(seconds=121))
        await run()
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(f"http://127.0.0.1:{port}/metrics")
        assert response.status_code == 200
        return response.text
    finally:
        await daemon.aclose()


async def test_daemon_counters_on_a_live_scrape(tmp_path: Path, sandbox: SandboxServer) -> None:
    """Sends and read-backs by channel and outcome, adapter call durations, retries and intake files are
    counted as they happened, and promtool finds the live exposition well formed."""
    text = await live_scrape(tmp_path, sandbox)
    s = parse(text)
    for outcome in ("accepted", "rejected", "duplicate"):
        assert value(s, "publisher_intake_files_total", outcome=outcome) == 1
    for channel in ("bureau_site", "city_portal", "provincial_feed"):
        assert value(s, "publisher_sends_total", channel=channel, outcome="sent") == 1
        assert value(s, "publisher_read_backs_total", channel=channel, outcome="live") == 1
        reads = sum(value(s, "publisher_read_backs_total", channel=channel, outcome=o) for o in ("live", "not_live", "error"))
        assert value(s, "publisher_channel_request_duration_seconds_count", channel=channel, operation="verify") == reads
        assert value(s, "publisher_channel_request_duration_seconds_sum", channel=channel, operation="verify") > 0
    assert value(s, "publisher_sends_total", channel="city_portal", outcome="retry") == 1
    assert value(s, "publisher_retries_scheduled_total", channel="city_portal") == 1
    assert value(s, "publisher_retries_scheduled_total", channel="bureau_site") == 0
    assert value(s, "publisher_channel_request_duration_seconds_count", channel="city_portal", operation="send") == 2
    assert value(s, "publisher_sends_total", channel="microblog", outcome="sent") == 0  # updates are not routed there
    assert value(s, "publisher_delivery_lag_seconds_count", channel="bureau_site") == 1
    assert value(s, "publisher_lag_report_age_seconds") == 0
    assert not any('item_id' in dict(labels) for _, labels in s)  # no label with unbounded values
    run_promtool("check", "metrics", stdin=text)


# --- what deploy/ ships ------------------------------------------------------------------------------------

def exprs_of_dashboard(node: Any) -> Iterator[str]:
    """Every query of every panel, rows' nested panels included."""
    for panel in node.get("panels", []):
        yield from (t["expr"] for t in panel.get("targets", []))
        yield from exprs_of_dashboard(panel)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: the project's names, and any name before a `{`."""
    return set(re.findall(r"\bpublisher_[a-z0-9_]+", expr)) | set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr))


async def test_dashboard_and_rules_ask_only_for_exported_metrics(tmp_path: Path, sandbox: SandboxServer) -> None:
    """The Grafana dashboard is valid JSON whose panels query lag, lateness, freshness and the review queue
    by names a live /metrics exports; the alert rules use those names too (and the documented future one)."""
    exported = {name for name, _ in parse(await live_scrape(tmp_path, sandbox))} | {"up"}
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panel_names = set().union(*(metric_names(e) for e in exprs_of_dashboard(dashboard)))
    assert panel_names - exported == set()
    assert {"publisher_delivery_lag_seconds_bucket", "publisher_channel_late_deliveries", "publisher_freshness_age_seconds",
            "publisher_review_waiting_revisions"} <= panel_names
    rules = yaml.safe_load((PROMETHEUS / "publisher-alerts.yml").read_text(encoding="utf-8"))
    rule_names = set().union(*(metric_names(r["expr"]) for g in rules["groups"] for r in g["rules"]))
    assert rule_names - exported == FUTURE


def test_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    """promtool accepts the alert rules and the scrape config, and the rules' unit tests pass: late, lost, stale,
    deadline at risk and overdue, the daemon down, a district source silent."""
    assert "SUCCESS: 8 rules found" in run_promtool("check", "rules", "publisher-alerts.yml").stdout
    run_promtool("check", "config", "prometheus.yml")
    tested = run_promtool("test", "rules", "publisher-alerts.test.yml")
    assert "SUCCESS" in tested.stdout
    cases = yaml.safe_load((PROMETHEUS / "publisher-alerts.test.yml").read_text(encoding="utf-8"))["tests"]
    covered = {a["alertname"] for case in cases for a in case["alert_rule_test"] if a["exp_alerts"]}
    rules = yaml.safe_load((PROMETHEUS / "publisher-alerts.yml").read_text(encoding="utf-8"))
    assert covered == {r["alert"] for g in rules["groups"] for r in g["rules"]}  # each rule is seen firing
