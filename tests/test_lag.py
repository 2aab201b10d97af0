"""The lag model, each rule at its exact boundary with a frozen clock, over a real SQLite store."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from publisher.app.cli.lag import lag_command, print_table
from publisher.app.cli.table import Column, Table, cells, cut, wrap
from publisher.clock import FrozenClock
from publisher.config.settings import Config, load_config
from publisher.dispatch import outbox
from publisher.lag import json_form as lag_json
from publisher.lag import report as lag
from publisher.model import DeliveryState, RevisionState
from publisher.store.db import Store
from publisher.store.schema import deliveries, items, revisions

T0 = datetime(2015, 3, 18, 1, 0, tzinfo=UTC)  # 09:00 in Beijing, a Wednesday
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "publisher" / "config" / "default.yaml"


def make_config(tmp_path: Path, **overrides: Any) -> Config:
    """The shipped config with the store in tmp_path and the sandbox off; top-level keys overridable."""
    data = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    data["store"] = {"url": f"sqlite:///{tmp_path / 'publisher.db'}"}
    data["sandbox"] = {"enabled": False}
    for key, value in overrides.items():
        data[key] = value
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_config(tmp_path / "config.yaml", env={})


@dataclass
class World:
    """A real store and a frozen clock, with helpers that insert items and deliveries directly."""

    config: Config
    store: Store
    clock: FrozenClock
    ids: count = field(default_factory=lambda: count(1))

    def item(self, *, category: str = "news", state: RevisionState = RevisionState.APPROVED, doc_date: date | None = None,
             created_at: datetime = T0, title: str = "安全生产月活动部署", item_id: str | None = None,
             retract: bool = False, findings: list[dict[str, Any]] | None = None) -> tuple[str, int]:
        n = next(self.ids)
        item_id = item_id or f"2015-{category}-{n:04d}"
        with self.store.tx() as conn:
            if conn.execute(items.select().where(items.c.id == item_id)).first() is None:
                conn.execute(items.insert().values(id=item_id, category=category, title=title, current_revision=1,
                                                   retracted=False, created_at=created_at, updated_at=created_at))
            rid = conn.execute(revisions.insert().values(
                item_id=item_id, number=1, state=state, title=title, category=category, body="正文",
                doc_date=doc_date, channels=[], attachments=[], retract=retract, findings=findings or [],
                created_at=created_at, approved_at=created_at if state == RevisionState.APPROVED else None,
            )).inserted_primary_key[0]
        return item_id, int(rid)

    def delivery(self, channel: str, *, due_at: datetime = T0, state: DeliveryState = DeliveryState.PENDING,
                 live_at: datetime | None = None, error: str | None = None, category: str = "news",
                 item: tuple[str, int] | None = None, attempts: int = 0, retract: bool = False) -> int:
        item_id, rid = item or self.item(category=category)
        with self.store.tx() as conn:
            return int(conn.execute(deliveries.insert().values(
                revision_id=rid, item_id=item_id, channel=channel, state=state, retract=retract, due_at=due_at,
                next_attempt_at=due_at, attempts=attempts, verify_attempts=0, sent_at=live_at, live_at=live_at,
                last_error=error, created_at=due_at, updated_at=live_at or due_at,
            )).inserted_primary_key[0])

    def report(self, **kw: Any) -> lag.LagReport:
        return lag.build_report(self.store, self.config, self.clock.now(), **kw)

    def channel(self, name: str, **kw: Any) -> lag.ChannelLag:
        return next(ch for ch in self.report(**kw).channels if ch.name == name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> World:
    """The same rules on SQLite and on PostgreSQL (skipped when no PostgreSQL answers, except in CI)."""
    if request.param == "postgresql":
        config = make_config(tmp_path, store={"url": request.getfixturevalue("pg_url")})
    else:
        config = make_config(tmp_path)
    store = Store.open(config.store_url)
    yield World(config=config, store=store, clock=FrozenClock(T0))
    store.close()


def test_late_exactly_after_the_sla(world: World) -> None:
    """A delivery is late only once now − due exceeds the SLA (15 min on bureau_site), not at it."""
    world.delivery("bureau_site", state=DeliveryState.RETRYING, error="503 Service Unavailable")
    world.clock.set(T0 + timedelta(minutes=15))
    assert world.channel("bureau_site").late_total == 0
    assert world.channel("bureau_site").status == "on_time"
    world.clock.advance(timedelta(microseconds=1))
    ch = world.channel("bureau_site")
    assert ch.status == "late" and ch.late_total == 1
    assert ch.late[0].last_error == "503 Service Unavailable"
    assert ch.late[0].over_sla == timedelta(microseconds=1)


def test_live_superseded_and_future_rows_are_never_late(world: World) -> None:
    """Live rows (even slow ones), superseded rows and rows not yet due are not late."""
    world.delivery("bureau_site", state=DeliveryState.LIVE, live_at=T0 + timedelta(hours=3))
    world.delivery("bureau_site", state=DeliveryState.SUPERSEDED)
    world.delivery("bureau_site", state=DeliveryState.PENDING, due_at=T0 + timedelta(days=2))  # embargoed
    world.clock.set(T0 + timedelta(days=1))
    assert world.channel("bureau_site").late_total == 0


def test_late_items_oldest_first_with_state_and_count_beyond_limit(world: World) -> None:
    """Late rows are listed oldest first; the total counts the ones past the listing limit."""
    for minutes, state in ((30, DeliveryState.FAILED), (10, DeliveryState.SENT), (50, DeliveryState.MANUAL),
                          (40, DeliveryState.WAITING)):
        world.delivery("bureau_site", due_at=T0 - timedelta(minutes=minutes), state=state, error=f"e{minutes}")
    world.clock.set(T0 + timedelta(minutes=10))
    ch = world.channel("bureau_site", late_limit=3)
    assert ch.late_total == 4
    assert [d.state for d in ch.late] == [DeliveryState.MANUAL, DeliveryState.WAITING, DeliveryState.FAILED]
    assert ch.late[0].lag == timedelta(minutes=60)


def test_each_channel_has_its_own_sla(world: World) -> None:
    """Two hours behind is late on bureau_site (15 min) but on time on city_portal (1 day)."""
    item = world.item()
    world.delivery("bureau_site", item=item, state=DeliveryState.FAILED)
    world.delivery("city_portal", item=item, state=DeliveryState.RETRYING)
    world.clock.set(T0 + timedelta(hours=2))
    report = world.report()
    status = {ch.name: ch.status for ch in report.channels}
    assert status == {"bureau_site": "late", "city_portal": "on_time", "provincial_feed": "on_time",
                      "microblog": "on_time", "wechat": "on_time", "press": "on_time"}


def test_percentiles_over_the_window(world: World) -> None:
    """p50/p95/max are nearest-rank over rows due in the window; a row not live counts now − due."""
    world.clock.set(T0 + timedelta(hours=1))
    for secs in range(1, 20):  # 19 live rows with lags 1..19 s
        world.delivery("bureau_site", due_at=T0, state=DeliveryState.LIVE, live_at=T0 + timedelta(seconds=secs))
    world.delivery("bureau_site", due_at=T0, state=DeliveryState.FAILED)  # lag 3600 s so far
    world.delivery("bureau_site", due_at=T0 - timedelta(days=7, seconds=1), state=DeliveryState.LIVE,
                   live_at=T0)  # due before the window: left out
    ch = world.channel("bureau_site")
    assert ch.window_total == 20
    assert ch.p50 == timedelta(seconds=10)
    assert ch.p95 == timedelta(seconds=19)
    assert ch.max == timedelta(hours=1)
    assert ch.window_over_sla == 1


def test_window_boundary_and_since(world: World) -> None:
    """A row due exactly at the window's start is in it; --since narrows both stats and the late list."""
    now = T0 + timedelta(days=7)
    world.delivery("bureau_site", due_at=T0, state=DeliveryState.LIVE, live_at=T0 + timedelta(seconds=5))
    world.delivery("bureau_site", due_at=T0 + timedelta(days=6), state=DeliveryState.FAILED)
    world.clock.set(now)
    assert world.channel("bureau_site").window_total == 2
    ch = world.channel("bureau_site", since=now - timedelta(hours=12))
    assert ch.window_total == 0 and ch.late_total == 0


def test_freshness_boundaries(tmp_path: Path) -> None:
    """With a 14-day threshold and a 3-day warning: ok before 11 days, warning at 11, breached at 14."""
    config = make_config(tmp_path, lag={"freshness_warn_before": "3d"})
    world = World(config=config, store=Store.open(config.store_url), clock=FrozenClock(T0))
    world.delivery("microblog", state=DeliveryState.LIVE, live_at=T0, category="news")

    def status(**kw: Any) -> dict[str | None, str]:
        return {f.category: f.status for f in world.report().freshness if f.channel == "microblog"}

    world.clock.set(T0 + timedelta(days=11) - timedelta(microseconds=1))
    assert status()[None] == "ok" and status()["news"] == "ok"
    world.clock.set(T0 + timedelta(days=11))
    assert status()[None] == "warning"
    world.clock.set(T0 + timedelta(days=14))
    assert status()[None] == "breached" and status()["news"] == "breached"
    assert status()["accidents"] == "never"  # routed to microblog, never published there


def test_freshness_per_category_and_threshold(world: World) -> None:
    """A 180-day category is fresh at 20 days while a 14-day one is breached on the same channel."""
    world.delivery("bureau_site", state=DeliveryState.LIVE, live_at=T0, category="notices")
    world.delivery("bureau_site", state=DeliveryState.LIVE, live_at=T0 - timedelta(days=5), category="news")
    world.clock.set(T0 + timedelta(days=20))
    fresh = {f.category: f for f in world.report().freshness if f.channel == "bureau_site"}
    assert fresh["notices"].status == "ok" and fresh["notices"].threshold == timedelta(days=180)
    assert fresh["news"].status == "breached" and fresh["news"].age == timedelta(days=25)
    assert fresh[None].last_live_at == T0 and fresh[None].threshold == timedelta(days=14)


def test_retractions_do_not_count_as_fresh(world: World) -> None:
    """Taking an item down is not new content: freshness ignores retraction rows."""
    world.delivery("bureau_site", state=DeliveryState.LIVE, live_at=T0 - timedelta(days=30), category="news")
    world.delivery("bureau_site", state=DeliveryState.LIVE, live_at=T0, category="news", retract=True)
    entry = next(f for f in world.report().freshness if f.channel == "bureau_site" and f.category is None)
    assert entry.last_live_at == T0 - timedelta(days=30)


def test_legal_deadline_over_the_spring_festival(world: World) -> None:
    """Dated Feb 10 2015, an item must be public by the end of Mar 13 (Beijing), the 20th working day."""
    item = world.item(category="notices", doc_date=date(2015, 2, 10))
    world.delivery("bureau_site", item=item, state=DeliveryState.FAILED, due_at=datetime(2015, 2, 11, tzinfo=UTC))
    world.clock.set(datetime(2015, 3, 5, 16, 0, tzinfo=UTC))  # Mar 6 in Beijing: Mar 9–13 left, 5 days
    risk = world.report().deadlines
    assert [(d.status, d.working_days_left, d.last_day) for d in risk] == [("at_risk", 5, date(2015, 3, 13))]
    world.clock.set(datetime(2015, 3, 5, 15, 59, 59, tzinfo=UTC))  # still Mar 5 in Beijing: 6 left
    assert world.report().deadlines == []
    world.clock.set(datetime(2015, 3, 13, 15, 59, 59, tzinfo=UTC))
    assert world.report().deadlines[0].status == "at_risk"
    world.clock.set(datetime(2015, 3, 13, 16, 0, tzinfo=UTC))  # midnight in Beijing
    assert world.report().deadlines[0].status == "overdue"


def test_deadline_counts_review_and_stops_once_live_anywhere(world: World) -> None:
    """A revision stuck in review is at risk; one live on any channel is public and not listed."""
    world.item(state=RevisionState.REVIEW, created_at=datetime(2015, 2, 10, 2, tzinfo=UTC), item_id="stuck")
    public = world.item(doc_date=date(2015, 2, 10), item_id="public")
    world.delivery("bureau_site", item=public, state=DeliveryState.LIVE, live_at=T0)
    world.delivery("city_portal", item=public, state=DeliveryState.FAILED)
    world.clock.set(datetime(2015, 3, 10, 2, tzinfo=UTC))
    assert [d.item_id for d in world.report().deadlines] == ["stuck"]


def test_history_buckets(world: World) -> None:
    """Lag over time: each hourly bucket of the last 24 h holds the p95 and max of the rows due in it."""
    now = T0 + timedelta(hours=24)
    world.clock.set(now)
    world.delivery("bureau_site", due_at=now - timedelta(minutes=90), state=DeliveryState.LIVE,
                   live_at=now - timedelta(minutes=89))
    world.delivery("bureau_site", due_at=now - timedelta(minutes=30), state=DeliveryState.FAILED)
    buckets = lag.history(world.store, world.config, now, "24h")["bureau_site"]
    assert len(buckets) == 24
    assert (buckets[22].count, buckets[22].max) == (1, 60.0)
    assert (buckets[23].count, buckets[23].p95) == (1, 1800.0)
    assert sum(b.count for b in buckets) == 2


def test_the_report_and_the_web_leave_sql_to_the_store() -> None:
    """No module of publisher/lag or publisher/app/web imports SQLAlchemy: their SQL is in publisher/store."""
    root = Path(lag.__file__).resolve().parent.parent
    offenders = []
    for path in [*(root / "lag").glob("*.py"), *(root / "app" / "web").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "sqlalchemy"]
    assert offenders == []


def test_requeue_without_a_dispatcher(world: World) -> None:
    """The retry fallback puts failed rows back to pending, due now, and writes an audit row."""
    item = world.item(item_id="again")
    did = world.delivery("city_portal", item=item, state=DeliveryState.FAILED, attempts=5, error="401")
    assert outbox.requeue(world.store, world.config, world.clock.now(), "again", "city_portal", by="tester") == 1
    row = world.store.delivery(did)
    # attempts 1, a repeat: a create asks `find` first
    assert (row.state, row.attempts, row.last_error) == (DeliveryState.PENDING, 1, None)
    assert world.store.audit_log("again")[0].action == "retry"


def test_json_schema_is_stable(world: World) -> None:
    """The JSON form has exactly the documented fields (docs/LAG_JSON.md)."""
    item = world.item(doc_date=date(2015, 2, 10))
    world.delivery("bureau_site", item=item, state=DeliveryState.FAILED, error="boom", due_at=T0 - timedelta(hours=1))
    taken = world.delivery("bureau_site", state=DeliveryState.LIVE, live_at=T0 - timedelta(minutes=5))
    with world.store.tx() as conn:
        world.store.live_lost(conn, taken, T0, error="taken down after it went live: deleted on the account")
    data = lag_json.to_json(world.report())
    assert set(data) == {"schema", "source", "locale", "generated_at", "window", "channels", "freshness", "deadlines",
                         "review", "deadlines_total", "deadline_counts", "sources"}
    assert set(data["review"]) == {"waiting", "blocked", "with_findings", "findings", "kinds"}
    assert set(data["review"]["findings"]) == {"blocking", "advisory"}
    assert (data["source"], data["locale"]) == ("store", "zh-CN")
    assert data["schema"] == "publisher.lag/1"
    assert set(data["sources"][0]) == {"name", "district", "url", "category", "category_name", "status", "interval_s",
                                       "silent_after_s", "last_attempt_at", "last_success_at", "last_error_at",
                                       "last_error", "entries", "imported", "last_import_at"}
    ch = data["channels"][0]
    assert set(ch) == {"name", "display_name", "type", "status", "sla_s", "counts", "late_total", "late", "lost",
                       "window", "last_live_at"}
    assert set(ch["lost"][0]) == {"delivery_id", "item_id", "revision", "title", "state", "lost_at", "url",
                                  "last_error"}
    assert set(ch["late"][0]) == {"delivery_id", "item_id", "revision", "title", "state", "retract", "due_at",
                                  "sent_at", "lag_s", "over_sla_s", "attempts", "last_error", "next_attempt_at"}
    assert set(ch["window"]) == {"deliveries", "over_sla", "p50_s", "p95_s", "max_s"}
    assert set(data["freshness"][0]) == {"channel", "category", "category_name", "threshold_s", "last_live_at",
                                         "age_s", "status"}
    assert set(data["deadlines"][0]) == {"item_id", "revision", "title", "category", "category_name", "state", "start",
                                         "last_day", "deadline", "working_days_left", "status", "calendar_known"}
    assert ch["late"][0]["due_at"] == "2015-03-18T00:00:00Z" and ch["late"][0]["lag_s"] == 3600.0


def test_a_lost_delivery_is_listed_until_its_item_is_live_there_again(world: World,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A live row the channel took down is lost (and remembers when) while it is not live again: a person's retry
    of it keeps it listed until it is live; a newer revision live on the channel ends it; other channels' rows,
    and rows never live, are not lost."""
    retried, replaced = world.item(), world.item()
    ids = {}
    for name, item in (("retried", retried), ("replaced", replaced)):
        ids[name] = world.delivery("bureau_site", item=item, state=DeliveryState.LIVE, live_at=T0 - timedelta(days=2))
        with world.store.tx() as conn:
            world.store.live_lost(conn, ids[name], T0 - timedelta(hours=1), error="taken down after it went live: 封禁")
    world.delivery("bureau_site", state=DeliveryState.FAILED, error="boom")
    world.delivery("city_portal", item=retried, state=DeliveryState.LIVE, live_at=T0)
    lost = world.channel("bureau_site").lost
    assert [(d.delivery_id, d.state, d.lost_at) for d in lost] == [
        (ids["retried"], DeliveryState.FAILED, T0 - timedelta(hours=1)),
        (ids["replaced"], DeliveryState.FAILED, T0 - timedelta(hours=1))]
    assert lost[0].last_error and "封禁" in lost[0].last_error and world.channel("city_portal").lost == []
    print_table(lag_json.to_json(world.report()))  # `publisher lag` lists them apart, with the channel's reason
    table = capsys.readouterr().out
    assert "上线后被撤下的条目" in table and f"{retried[0]} r1" in table and "封禁" in table
    with world.store.tx() as conn:
        world.store.requeue(conn, retried[0], "bureau_site", T0)
    with world.store.tx() as conn:  # a newer revision of the other item, live on the channel since
        rev2 = conn.execute(revisions.insert().values(
            item_id=replaced[0], number=2, state=RevisionState.APPROVED, title="更正", category="news", body="正文",
            channels=[], attachments=[], retract=False, findings=[], created_at=T0)).inserted_primary_key[0]
    world.delivery("bureau_site", item=(replaced[0], int(rev2)), state=DeliveryState.LIVE, live_at=T0)
    assert [(d.delivery_id, d.state) for d in world.channel("bureau_site").lost] == [
        (ids["retried"], DeliveryState.PENDING)]
    with world.store.tx() as conn:
        conn.execute(deliveries.update().where(deliveries.c.id == ids["retried"]).values(
            state=DeliveryState.LIVE, live_at=T0 + timedelta(minutes=1)))
    assert world.channel("bureau_site").lost == []


def test_the_deadlines_listed_are_limited_and_all_are_counted(world: World) -> None:
    """A store years deep holds a thousand revisions past their deadline: the JSON lists the `limit` most
    urgent and counts them all, by status."""
    for day in (2, 3, 4):
        world.item(doc_date=date(2015, 1, day), state=RevisionState.REVIEW)
    full = lag_json.to_json(world.report())
    assert full["deadlines_total"] == len(full["deadlines"]) == 3
    assert full["deadline_counts"] == {"at_risk": 0, "overdue": 3}
    cut = lag_json.to_json(world.report(), limit=2)
    assert cut["deadlines"] == full["deadlines"][:2]
    assert (cut["deadlines_total"], cut["deadline_counts"]) == (3, full["deadline_counts"])


def test_cli_json_and_table(world: World, tmp_path: Path) -> None:
    """`publisher lag --json --channel` prints the schema for one channel; the table shows display names."""
    world.delivery("bureau_site", state=DeliveryState.FAILED, error="401 incorrect_password", due_at=T0 - timedelta(hours=1))
    runner = CliRunner()
    cfg = str(tmp_path / "config.yaml")
    result = runner.invoke(lag_command, ["--config", cfg, "--json", "--channel", "bureau_site",
                                         "--at", T0.isoformat()])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [c["name"] for c in data["channels"]] == ["bureau_site"]
    assert data["channels"][0]["late"][0]["last_error"] == "401 incorrect_password"
    table = runner.invoke(lag_command, ["--config", cfg, "--at", T0.isoformat()], env={"COLUMNS": "160"})
    assert table.exit_code == 0, table.output
    assert "市安监局门户网站" in table.output and "401 incorrect_password" in table.output
    bad = runner.invoke(lag_command, ["--config", cfg, "--channel", "nope"])
    assert bad.exit_code == 2 and "bureau_site" in bad.output


def test_table_fits_an_80_column_terminal_and_keeps_names_and_counts_whole(world: World, tmp_path: Path) -> None:
    """At 80 columns every line fits; channel names, item ids and counts are whole, errors are cut with "…",
    and p50/p95 give way to the max. Wider, the error and the percentiles come back. No colour when piped."""
    long = "503 Service Unavailable: upstream 城市门户 gateway timed out after 30 s while the queue was full"
    for k in range(3):
        world.delivery("city_portal", state=DeliveryState.MANUAL, error=long, attempts=12, due_at=T0 - timedelta(days=3, hours=k))
    world.delivery("bureau_site", state=DeliveryState.LIVE, due_at=T0 - timedelta(hours=1), live_at=T0 - timedelta(minutes=50))
    runner = CliRunner()
    cfg = str(tmp_path / "config.yaml")
    narrow = runner.invoke(lag_command, ["--config", cfg, "--at", T0.isoformat(), "--store"], env={"COLUMNS": "80"})
    assert narrow.exit_code == 0, narrow.output
    lines = narrow.output.splitlines()
    assert max(cells(line) for line in lines) <= 80, narrow.output
    assert "\x1b[" not in narrow.output
    for name in ("市安监局门户网站", "市政府门户网站", "政务微博", "省安监局信息报送"):
        assert any(f"│ {name} " in line for line in lines), name
    assert any("0/0/0/3" in line for line in lines)  # pending/retrying/failed/manual of the portal
    late = [line for line in lines if "市政府门户网站" in line and "r1" in line]
    assert len(late) == 3 and all("503 Se" in line and "…" in line for line in late)
    assert "中位延迟" not in narrow.output and "最大延迟" in narrow.output
    wide = runner.invoke(lag_command, ["--config", cfg, "--at", T0.isoformat(), "--store"], env={"COLUMNS": "200"})
    assert long in wide.output and "中位延迟" in wide.output and max(cells(x) for x in wide.output.splitlines()) <= 200


def test_table_cells_cut_and_wrap_count_wide_characters_twice() -> None:
    """Chinese characters take two terminal cells when a table measures, cuts and wraps its text."""
    assert (cells("abc"), cells("渠道"), cells("e\u0301")) == (3, 4, 1)
    assert cut("市安监局门户网站", 9) == "市安监局…" and cells(cut("市安监局门户网站", 9)) == 9
    assert cut("503 Service", 20) == "503 Service"
    assert wrap("发送状态", 6) == ["发送", "状态"]
    assert wrap("待发/重试中/失败/待人工", 14) == ["待发/重试中/", "失败/待人工"]
    table = Table("t", [Column("名称"), Column("n", right=True), Column("error", shrink=5)])
    table.add_row("政务微博", "12", ("boom " * 10, "red"))
    plain, coloured = table.render(30, color=False), table.render(30, color=True)
    assert all(cells(line) <= 30 for line in plain.splitlines())
    assert "│ 政务微博 │ 12 │" in plain and "\x1b[31m" in coloured and "\x1b[" not in plain


def test_review_section_counts_the_queue_and_its_findings(world: World) -> None:
    """The report's review section counts revisions waiting (and blocked), and the screen's findings on them by
    level and kind; approved revisions and retractions are not counted; a finding without a level is blocking."""
    mobile = {"kind": "mobile_number", "level": "blocking", "text": "13812345678"}
    wording = {"kind": "wording", "level": "advisory", "text": "截止到"}
    world.item(state=RevisionState.BLOCKED, findings=[mobile, wording])
    world.item(state=RevisionState.REVIEW, findings=[wording, {"kind": "link", "level": "advisory", "text": "x"}])
    world.item(state=RevisionState.REVIEW)
    world.item(state=RevisionState.BLOCKED, findings=[{"kind": "classified_marking", "text": "机密★"}])  # stored before levels
    world.item(state=RevisionState.APPROVED, findings=[wording])
    review = world.report().review
    assert (review.waiting, review.blocked, review.with_findings) == (4, 2, 3)
    assert (review.blocking, review.advisory) == (2, 3)
    assert review.kinds == {"classified_marking": 1, "link": 1, "mobile_number": 1, "wording": 2}
    assert lag_json.to_json(world.report())["review"]["findings"] == {"blocking": 2, "advisory": 3}


def test_table_shows_the_review_section_within_80_columns(world: World, tmp_path: Path) -> None:
    """`publisher lag` prints the review queue and the screen's findings by kind, each line within 80 columns."""
    world.item(state=RevisionState.BLOCKED, findings=[{"kind": "mobile_number", "level": "blocking"},
                                                      {"kind": "wording", "level": "advisory"}])
    world.item(state=RevisionState.REVIEW, findings=[{"kind": "link", "level": "advisory"}])
    out = CliRunner().invoke(lag_command, ["--config", str(tmp_path / "config.yaml"), "--at", T0.isoformat(), "--store"],
                             env={"COLUMNS": "80"})
    assert out.exit_code == 0, out.output
    assert "审核：待审 2 条（保密审查拦下 1 条）；审查发现须处理 1 处、提示 2 处" in out.output
    assert "审查发现：链接问题 1，手机号码 1，用词错误 1" in out.output  # by kind
    assert max(cells(line) for line in out.output.splitlines()) <= 80
