"""District sources through the daemon: the sandbox's three district feeds (two healthy, one broken) are
polled, each entry becomes one item pending review, never twice (across a restart, a reordered feed and an
edit), and every source's state reaches the lag report."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from publisher.app.cli.lag import print_table
from publisher.app.cli.main import main
from publisher.app.daemon import Daemon
from publisher.clock import CHINA, FrozenClock
from publisher.config.file import ConfigError
from publisher.config.settings import parse_config
from publisher.intake.sources import SourcePoller
from publisher.lag.json_form import to_json
from publisher.lag.report import build_report
from publisher.model import RevisionState
from publisher.review.chain import Review
from publisher.sandbox import SandboxServer
from publisher.store.db import Store
from publisher.store.schema import items, revisions
from tests.harness import free_port, load, received, settings, write_config
from tests.test_pipeline import signers

DISTRICT = {"zichuan": "淄川区", "zhangdian": "张店区", "zhoucun": "周村区"}


def _from_sources(store: Store) -> dict[str, list[tuple[str, int, str, str | None]]]:
    """district → [(item id, newest revision, its state, its category)] of the items the feeds made."""
    out: dict[str, list[tuple[str, int, str, str | None]]] = {}
    with store.read() as conn:
        rows = conn.execute(sa.select(revisions.c.source, revisions.c.item_id, revisions.c.number, revisions.c.state,
                                      revisions.c.category)
                            .join(items, sa.and_(items.c.id == revisions.c.item_id,
                                                 items.c.current_revision == revisions.c.number))
                            .where(revisions.c.item_id.in_(sa.text("SELECT item_id FROM source_entries")))
                            .order_by(revisions.c.item_id)).all()
    for source, item_id, number, state, category in rows:
        out.setdefault(source, []).append((item_id, number, state, category))
    return out


def _publish(sandbox: SandboxServer, slug: str, **entry: object) -> dict[str, object]:
    resp = httpx.post(f"{sandbox.url('districts')}/{slug}/entries", json=entry, timeout=10)
    resp.raise_for_status()
    return dict(resp.json())


async def test_three_district_feeds_through_the_daemon(tmp_path: Path, sandbox: SandboxServer) -> None:
    """The daemon imports every entry of the two healthy feeds once, as items pending the source's sign-off
    in its category with `source` = the district and the entry's link kept; the broken feed only records
    its error; a restart, a reordered feed and a re-read import nothing again; an edited entry becomes the
    next revision of its item and a new entry a new item; the lag report and `publisher lag` show each source."""
    cfg = load(write_config(tmp_path, sandbox, web_port=free_port(), sources=True))
    clock = FrozenClock(datetime.now(UTC))
    daemon = Daemon(cfg, clock=clock)
    try:
        await daemon.run_once()
        made = _from_sources(daemon.store)
        assert {d: len(v) for d, v in made.items()} == {"淄川区": 4, "张店区": 3}
        assert {(n, state, cat) for v in made.values() for _, n, state, cat in v} == {(1, "review", "updates")}
        waiting = {w.item_id: w.next_role for w in daemon.review.waiting()}
        assert all(waiting[item_id] == "section_chief" for v in made.values() for item_id, *_ in v)
        feed = received(sandbox, "districts")
        for slug in ("zichuan", "zhangdian"):
            links = {e["link"] for e in feed[slug]}
            kept = {daemon.store.entry_link(item_id) for item_id, *_ in made[DISTRICT[slug]]}
            assert kept == links
        first = daemon.store.revision(made["淄川区"][0][0])
        assert first is not None and first.body.endswith(f"原文：<{daemon.store.entry_link(first.item_id)}>）")
        assert "<b>" not in first.body and "认真组织" in first.body
        shown = CliRunner().invoke(main, ["show", first.item_id, "--config", str(tmp_path / "config.yaml")],
                                   env={"COLUMNS": "200"})
        assert f"revision 1: review, feed entry {daemon.store.entry_link(first.item_id)}" in shown.output

        report = to_json(build_report(daemon.store, cfg, clock.now()))
        by_name = {s["name"]: s for s in report["sources"]}
        assert {k: (s["status"], s["entries"], s["imported"]) for k, s in by_name.items()} == {
            "zichuan": ("ok", 4, 4), "zhangdian": ("ok", 3, 3), "zhoucun": ("error", 0, 0)}
        assert "not an RSS or Atom feed" in by_name["zhoucun"]["last_error"]
        out = io.StringIO()
        with redirect_stdout(out):
            print_table(json.loads(json.dumps(report)))
        table = out.getvalue()
        assert "区县信息源" in table and "周村区" in table and "出错" in table
    finally:
        await daemon.aclose()

    # a restart: a new daemon on the same store; the feeds answer 304 to the validators it kept
    daemon = Daemon(load(tmp_path / "config.yaml"), clock=clock)
    try:
        before = len(sandbox.services["districts"].requests)
        await daemon.run_once()
        asked = sandbox.services["districts"].requests[before:]
        assert all("if-none-match" in r["headers"] for r in asked if "/zichuan/" in r["path"])
        assert _from_sources(daemon.store) == made

        settings(sandbox, "districts", order="oldest_first")  # every entry again, in the other order: nothing new
        await daemon.run_once()
        assert _from_sources(daemon.store) == made

        edited = received(sandbox, "districts")["zichuan"][1]
        _publish(sandbox, "zichuan", id=edited["id"], title=edited["title"] + "（更正）")
        _publish(sandbox, "zhangdian", title="张店区开展汛期安全生产检查")
        await daemon.run_once()
        now = _from_sources(daemon.store)
        assert {d: len(v) for d, v in now.items()} == {"淄川区": 4, "张店区": 4}
        revised = [(item_id, n) for item_id, n, *_ in now["淄川区"] if n > 1]
        assert len(revised) == 1
        rev = daemon.store.revision(revised[0][0])
        assert rev is not None and rev.number == 2 and rev.title.endswith("（更正）")
        assert daemon.store.revision(revised[0][0], 1).state == RevisionState.SUPERSEDED  # type: ignore[union-attr]

        # the sign-off the source asks for publishes it like any item of its category
        item_id = now["张店区"][0][0]
        assert daemon.review.approve(item_id, signers(daemon)["section_chief"]) == RevisionState.APPROVED
        routed = {d.channel for d in daemon.store.deliveries_of(item_id)}
        assert routed == set(cfg.categories["updates"].channels)
    finally:
        await daemon.aclose()


async def test_a_broken_feed_never_stops_the_others(tmp_path: Path, sandbox: SandboxServer) -> None:
    """Whichever way the third feed breaks (an HTML page sent with 200, 500, 404, not XML, no answer, a feed
    that suddenly holds nothing), it records why and keeps its items, while the healthy feeds are read."""
    cfg = load(write_config(tmp_path, sandbox, sources=True, **{"sources.zhoucun.timeout": "300ms"}))
    clock = FrozenClock(datetime.now(UTC))
    store = Store.open(cfg.store_url)
    async with httpx.AsyncClient() as http:
        poller = SourcePoller(config=cfg, store=store, review=Review(store, cfg, clock), clock=clock, http=http)
        settings(sandbox, "districts", broken="none")  # healthy at first: one entry
        assert {k: o.new_items for k, o in (await poller.poll_all()).items()} == {"zichuan": 4, "zhangdian": 3,
                                                                                 "zhoucun": 1}
        expected = {
            "html": "not an RSS or Atom feed", "500": "HTTP 500", "404": "HTTP 404",
            "not_xml": "not a well-formed feed", "slow": "did not answer within 0.3 s",
            "empty": "held 1 entries and now holds none",
        }
        for how, words in expected.items():
            settings(sandbox, "districts", broken=how)
            _publish(sandbox, "zichuan", title=f"淄川区动态 {how}")
            clock.advance(timedelta(minutes=1))
            outcomes = await poller.poll_all()
            assert outcomes["zhoucun"].error is not None and words in outcomes["zhoucun"].error, how
            assert outcomes["zichuan"].error is None and outcomes["zichuan"].new_items == 1, how
            state = store.source_state("zhoucun")
            assert state.last_error_at == clock.now() and state.entries == 1 and state.imported == 1
    store.close()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_a_source_silent_longer_than_its_interval_times_n_is_flagged(tmp_path: Path, sandbox: SandboxServer,
                                                                         backend: str,
                                                                         request: pytest.FixtureRequest) -> None:
    """With a 15-minute interval and N = 3, a source is `ok` up to 45 minutes after its last good poll and
    `silent` after; a feed never read is silent 45 minutes after its first try; one never tried is `never`."""
    store_url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    cfg = load(write_config(tmp_path, sandbox, sources=True, store_url=store_url,
                            **{"lag.source_silent_intervals": 3}))
    clock = FrozenClock(datetime.now(UTC))
    store = Store.open(cfg.store_url)
    async with httpx.AsyncClient() as http:
        poller = SourcePoller(config=cfg, store=store, review=Review(store, cfg, clock), clock=clock, http=http)
        statuses = {s.key: s.status for s in build_report(store, cfg, clock.now()).sources}
        assert statuses == {"zichuan": "never", "zhangdian": "never", "zhoucun": "never"}
        await poller.poll_all()
        start = clock.now()
        for offset, want in ((timedelta(minutes=45), "ok"), (timedelta(minutes=45, seconds=1), "silent")):
            clock.set(start + offset)
            statuses = {s.key: s.status for s in build_report(store, cfg, clock.now()).sources}
            assert statuses == {"zichuan": want, "zhangdian": want, "zhoucun": "error" if want == "ok" else "silent"}
    store.close()


def test_a_source_must_name_a_configured_category_and_roles(tmp_path: Path) -> None:
    """A source pointing at an unknown category or role, or at no http(s) URL, is refused with its place in the file."""
    data = {"roles": {"chief": "科长"}, "categories": {"updates": {"name": "安全生产动态"}}, "channels": {},
            "sources": {"zichuan": {"url": "ftp://x", "district": "淄川区", "category": "news", "review": ["boss"]}}}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, base_dir=tmp_path)
    text = str(caught.value)
    assert "sources.zichuan.url" in text
    data["sources"]["zichuan"]["url"] = "http://x/feed.xml"  # type: ignore[index]
    with pytest.raises(ConfigError) as caught:
        parse_config(data, base_dir=tmp_path)
    text = str(caught.value)
    assert "sources.zichuan.category: category 'news' is not defined" in text
    assert "sources.zichuan.review: role 'boss' is not defined" in text


def test_an_entry_date_is_the_day_in_china(tmp_path: Path) -> None:
    """An entry published at 17:00 UTC on 30 June is dated 1 July, Beijing's day, like every document date."""
    from publisher.intake.sources import read_entry

    entry = read_entry({"id": "x", "title": "标题", "published_parsed": (2015, 6, 30, 17, 0, 0, 1, 181, 0),
                        "summary": "<p>a *b*</p><script>alert(1)</script>"}, datetime(2015, 1, 1, tzinfo=CHINA).date())
    assert entry is not None and entry.day.isoformat() == "2015-07-01"
    assert entry.body == "a \\*b\\*"


async def test_the_dashboard_and_metrics_show_each_source(tmp_path: Path) -> None:
    """The dashboard's sources table marks a failing feed with its error and a good one with its counts, and
    /metrics gives the last good read of each source that was ever read (the alert rule's gauge)."""
    from prometheus_client.parser import text_string_to_metric_families

    from publisher.app.web.app import create_app
    from publisher.app.web.context import WebContext
    from tests.test_lag import T0, make_config

    config = make_config(tmp_path)
    store = Store.open(config.store_url)
    clock = FrozenClock(T0)
    store.record_poll("zichuan", T0 - timedelta(minutes=5), entries=4, etag='"a"')
    store.record_poll("zhoucun", T0 - timedelta(minutes=5), error="http://x/feed.xml answered HTTP 500 Internal Server Error")
    ctx = WebContext(config=config, store=store, clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)), base_url="http://127.0.0.1:8700") as c:
        page = (await c.get("/")).text
        metrics = (await c.get("/metrics")).text
    assert 'id="sources"' in page and "区县信息源" in page
    assert 'data-source="zhoucun" data-status="error"' in page and "HTTP 500 Internal Server Error" in page
    assert 'data-source="zichuan" data-status="ok"' in page and 'data-source="zhangdian" data-status="never"' in page
    gauges = {sample.labels["source"]: sample.value for family in text_string_to_metric_families(metrics)
              if family.name == "publisher_source_last_success_timestamp_seconds" for sample in family.samples}
    assert gauges == {"zichuan": (T0 - timedelta(minutes=5)).timestamp()}
    store.close()


def test_migration_0008_keeps_every_row_and_adds_the_source_tables(tmp_path: Path) -> None:
    """A store at the migration before 0008, holding items and deliveries, upgraded, keeps them all and gains
    the two empty source tables; downgraded again, it still holds them."""
    from alembic import command
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    import publisher.store.db
    from publisher.store.db import make_engine
    from tests.test_store import _seed

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(publisher.store.db.__file__).parent / "migrations"))
    before = ScriptDirectory.from_config(cfg).get_revision("0008").down_revision
    assert isinstance(before, str)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, before)
    _seed(Store(engine), 4)
    engine.dispose()
    store = Store.open(url)
    with store.read() as conn:
        counts = [conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in
                  ("items", "revisions", "deliveries", "source_state", "source_entries")]
    assert counts == [4, 4, 4, 0, 0]
    store.record_poll("zichuan", datetime.now(UTC), entries=2)
    assert store.source_state("zichuan").entries == 2
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, before)
    with store.read() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM deliveries")).scalar() == 4
        assert not sa.inspect(conn).has_table("source_state")
    store.close()


async def test_a_poller_that_stops_shows_on_healthz(tmp_path: Path, sandbox: SandboxServer) -> None:
    """While the daemon runs, /healthz is ok; once its district-source poller has ended it answers 503 and
    says that the sources are no longer polled."""
    import asyncio

    from publisher.app.web.app import create_app

    daemon = Daemon(load(write_config(tmp_path, sandbox, web_port=free_port(), sources=True)),
                    clock=FrozenClock(datetime.now(UTC)))
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop))

    async def health() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(daemon.web)), base_url="http://127.0.0.1") as c:
            return await c.get("/healthz")

    try:
        for _ in range(1000):
            poller = next((t for t in asyncio.all_tasks() if t.get_name() == "sources"), None)
            if poller is not None and daemon.store.source_state("zichuan").last_success_at is not None:
                break
            await asyncio.sleep(0.02)
        assert poller is not None and (await health()).status_code == 200
        poller.cancel()  # the fault: the poller ended while the daemon runs
        await asyncio.gather(poller, return_exceptions=True)
        sick = await health()
        assert sick.status_code == 503
        assert any("district sources are no longer polled" in p for p in sick.json()["problems"])
    finally:
        stop.set()
        await asyncio.wait_for(running, 20)
