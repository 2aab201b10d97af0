"""`publisher report annual|districts` and /reports over a small bureau-year run through the daemon and the
sandbox: what counts in which year, edits, retractions, blocked and rejected items, the legal deadline,
the national table's blank cells, every output format, and a reader's config without channel secrets."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner
from openpyxl import load_workbook

from publisher.app.cli.main import main as cli
from publisher.app.daemon import Daemon
from publisher.app.web.app import create_app
from publisher.app.web.context import WebContext
from publisher.clock import FrozenClock
from publisher.config.settings import Config, ConfigError, load_config
from publisher.review.accounts import Accounts
from publisher.sandbox import SandboxServer
from publisher.store.db import Store
from tests.harness import SHIPPED, drop, free_port, load, write_config

T0 = datetime(2015, 3, 20, 1, 0, tzinfo=UTC)  # Friday 20 March 2015, 09:00 in Beijing


@dataclass
class Year:
    root: Path
    config_path: Path
    daemon: Daemon
    clock: FrozenClock

    def report(self, *args: str) -> dict[str, Any]:
        result = CliRunner().invoke(cli, ["report", *args, "--format", "json", "--config", str(self.config_path)])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    async def run(self) -> None:
        await self.daemon.run_once()
        await asyncio.sleep(0.2)
        self.clock.advance(timedelta(minutes=1))
        await self.daemon.run_once()


def make_year(tmp_path: Path, sandbox: SandboxServer, store_url: str | None = None) -> Year:
    """Items of early 2015 taken in, reviewed, delivered, edited and retracted with the clock at 20 March 2015."""
    config_path = write_config(tmp_path, sandbox, web_port=free_port(), store_url=store_url)
    clock = FrozenClock(T0)
    daemon = Daemon(load(config_path), clock=clock)
    inbox = tmp_path / "queue" / "inbox"
    y = Year(tmp_path, config_path, daemon, clock)
    items = {
        "a": {"id": "2015-updates-a", "title": "淄川区开展危险化学品专项整治", "category": "updates",
              "date": "2015-03-18", "source": "淄川区"},  # public two working days later: in time
        "b": {"id": "2015-updates-b", "title": "全市非煤矿山安全检查取得阶段性成效", "category": "updates",
              "date": "2015-01-05"},  # public ten weeks later: late
        "c": {"id": "2015-notices-c", "title": "关于开展安全生产大检查的通知", "category": "notices",
              "date": "2015-03-19", "source": "博山区"},  # rejected in review
        "d": {"id": "2015-committee-d", "title": "市安委会办公室关于2月份全市安全生产情况的通报",
              "category": "committee", "date": "2015-03-02"},  # blocked: a mobile number
        "e": {"id": "2015-updates-e", "title": "市安监局开展烟花爆竹打非治违", "category": "updates",
              "source": "淄川区"},  # no date: counts on the day it went public
        "f": {"id": "2014-updates-f", "title": "高青县召开冬季安全生产工作会议", "category": "updates",
              "date": "2014-12-31", "source": "高青县"},  # the year before
    }
    for key, front in items.items():
        drop(inbox, f"{key}.md", front, "联系人：王同志，手机13800138000。" if key == "d" else "检查企业 12 家。")

    async def go() -> None:
        try:
            await y.run()
            accounts = Accounts(daemon.store, clock)
            li = accounts.add("li", "李科长", ["section_chief"], None, None)
            zhao = accounts.add("zhao", "赵局长", ["director"], None, None)
            daemon.review.reject("2015-notices-c", li, reason="请补充文号")
            drop(inbox, "a2.md", {**items["a"], "title": "淄川区开展危险化学品专项整治（更正）"}, "检查企业 13 家。")
            daemon.review.retract("2015-updates-b", zhao, reason="数据有误")
            await y.run()
        finally:
            await daemon.aclose()  # in the loop that made its clients

    asyncio.run(go())
    return y


@pytest.fixture(scope="module")
def year(tmp_path_factory: pytest.TempPathFactory, sandbox_server: SandboxServer) -> Iterator[Year]:
    y = make_year(tmp_path_factory.mktemp("year"), sandbox_server)
    yield y
    y.daemon.store.close()


async def test_annual_figures_follow_the_rules(year: Year) -> None:
    """Disclosed items count by document date (else first public day); an edit, a retraction, a blocked and a
    rejected item are counted as such; the legal deadline is met by the prompt items and missed by the late one."""
    doc = year.report("annual", "--year", "2015")
    cats = {c["key"]: c["items"] for c in doc["categories"]}
    assert cats["updates"] == 3 and sum(cats.values()) == doc["disclosed"] == 3  # a, b (retracted since), e
    assert doc["months"]["updates"][0] == 1 and doc["months"]["updates"][2] == 2  # b in January; a, e in March
    channels = {c["key"]: c["items"] for c in doc["channels"]}
    assert channels == {"bureau_site": 3, "city_portal": 3, "provincial_feed": 3, "microblog": 0, "wechat": 0, "press": 0}
    assert (doc["edits"], doc["retractions"], doc["blocked"], doc["released"], doc["rejected"]) == (1, 1, 1, 0, 1)
    # 5 January to 20 March 2015: 19 working days in January, 17 in February (Spring Festival 18–24 off, Sunday
    # the 15th and Saturday the 28th worked), 15 in March
    assert doc["deadline"] == {"working_days": 20, "on_time": 2, "late": 1, "worst_item": "2015-updates-b",
                               "worst_days": 19 + 17 + 15, "calendar_known": True}
    national = {row["row"]: row["values"] for row in doc["national"]}
    assert national["规章"] == {"本年制发件数": 0, "本年废止件数": None, "现行有效件数": None}  # laws: none this year
    assert national["行政许可"] == {"本年处理决定数量": None}  # not mapped in config.yaml: for a person
    assert national["行政事业性收费"] == {"本年收费金额（单位：万元）": None}

    earlier = year.report("annual", "--year", "2014")
    assert earlier["disclosed"] == 1 and {c["key"]: c["items"] for c in earlier["categories"]}["updates"] == 1


async def test_districts_count_received_and_disclosed(year: Year) -> None:
    """Items per district in a period: received (the rejected one too) and disclosed, per category."""
    doc = year.report("districts", "--from", "2015-03-01", "--to", "2015-04-30")
    rows = {d["district"]: (d["received"], d["disclosed"], d["categories"]) for d in doc["districts"]}
    assert rows == {"淄川区": (2, 2, {"updates": 2}), "博山区": (1, 0, {})}
    assert [d["district"] for d in doc["districts"]] == ["淄川区", "博山区"]  # most disclosed first
    assert year.report("districts", "--from", "2014-12-01", "--to", "2014-12-31")["total"] == {
        "received": 1, "disclosed": 1}


async def test_every_format_and_visible_blanks(year: Year, tmp_path: Path) -> None:
    """The table, Markdown, CSV (with a BOM for Excel) and xlsx show the same figures; the national table's
    unknown cells are marked for a person, yellow and empty in the workbook."""
    base = ["report", "annual", "--year", "2015", "--config", str(year.config_path)]
    table = CliRunner().invoke(cli, base)
    assert table.exit_code == 0, table.output
    assert "2015年政府信息公开统计" in table.stdout and "安全生产动态" in table.stdout and "（人工填写）" in table.stdout
    english = CliRunner().invoke(cli, [*base, "--lang", "en", "--format", "md"]).stdout
    assert english.startswith("# Disclosure statistics 2015") and "| 安全生产动态 | 3 |" in english
    assert "(fill in)" in english

    out = tmp_path / "annual.csv"
    assert CliRunner().invoke(cli, [*base, "--format", "csv", "--output", str(out)]).exit_code == 0
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert ["安全生产动态", "3"] in rows and ["规章", "0", "", ""] in rows

    xlsx = tmp_path / "annual.xlsx"
    result = CliRunner().invoke(cli, [*base, "--format", "xlsx", "--output", str(xlsx)])
    assert result.exit_code == 0, result.output
    sheet = load_workbook(xlsx).active
    assert sheet is not None
    cells = {(r[0].value, i): r for i, r in enumerate(sheet.iter_rows())}
    rule = next(r for (first, _), r in cells.items() if first == "规章")
    assert rule[1].value == 0 and rule[2].value is None and rule[2].fill.fgColor.rgb.endswith("FFF2CC")
    assert any(first == "安全生产动态" and r[1].value == 3 for (first, _), r in cells.items())

    refused = CliRunner().invoke(cli, [*base, "--format", "xlsx"])
    assert refused.exit_code == 2 and "--output" in refused.output
    backwards = CliRunner().invoke(cli, ["report", "districts", "--from", "2015-05-01", "--to", "2015-04-01",
                                         "--config", str(year.config_path)])
    assert backwards.exit_code == 2 and "before it starts" in backwards.output
    bad_day = CliRunner().invoke(cli, ["report", "districts", "--from", "2015-02-30", "--to", "2015-04-01",
                                       "--config", str(year.config_path)])
    assert bad_day.exit_code == 2 and "is not a date" in bad_day.output


async def test_reports_page_draws_the_months_without_javascript(year: Year) -> None:
    """/reports shows the year's tables and a bar per category and month in inline SVG, in both languages,
    and hands the office the workbook; off loopback it asks for the token like the dashboard."""
    ctx = WebContext(config=year.daemon.config, store=year.daemon.store, clock=year.clock)
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8700") as c:
        page = (await c.get("/reports")).text  # the newest year with documents is shown by default
        assert "2015年政府信息公开统计" in page and "<script" not in page
        assert page.count('class="bar" data-category="updates"') == 2  # January and March
        assert 'data-month="3" data-n="2"' in page and "（人工填写）" in page and "淄川区" in page
        bimonthly = (await c.get("/reports?year=2015&from=2015-03-01&to=2015-04-30")).text
        assert "2015-03-01 至 2015-04-30" in bimonthly and "博山区" in bimonthly
        january = (await c.get("/reports?year=2015&from=2015-01-01&to=2015-01-31")).text
        assert "博山区" not in january and "这段时间没有条目。" in january
        english = (await c.get("/reports?year=2015&lang=en")).text
        assert "Disclosure statistics 2015" in english and "Mar" in english
        book = await c.get("/reports?year=2015&format=xlsx")
        assert book.status_code == 200 and book.content.startswith(b"PK")
        assert (await c.get("/reports?format=pdf&year=2015")).status_code == 400
        assert "/reports" in (await c.get("/")).text


def _off_loopback(tmp_path: Path) -> tuple[Config, Store]:
    path = tmp_path / "config.yaml"
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    data.update(store={"url": f"sqlite:///{tmp_path / 'p.db'}"}, web={"listen": "0.0.0.0:8700", "token": "reports-s3cret-token",
                                                                "public_url": "http://10.0.0.5:8700"})
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    config = load_config(path, env={})
    return config, Store.open(config.store_url)


async def test_off_loopback_reports_need_the_token(tmp_path: Path) -> None:
    """Listening off loopback, /reports redirects to the login page without the token and answers with it."""
    config, store = _off_loopback(tmp_path)
    ctx = WebContext(config=config, store=store, clock=FrozenClock(T0))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)),
                                     base_url="http://10.0.0.5:8700") as c:
            assert (await c.get("/reports")).status_code == 303
            ok = await c.get("/reports", headers={"Authorization": "Bearer reports-s3cret-token"})
            assert ok.status_code == 200 and "政府信息公开统计" in ok.text
    finally:
        store.close()


def test_report_runs_without_channel_secrets(tmp_path: Path) -> None:
    """A reader's config: a channel secret unset in the environment does not stop `publisher report`."""
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    data["store"] = {"url": f"sqlite:///{tmp_path / 'p.db'}"}
    data["sandbox"] = {"enabled": False}
    data["channels"]["bureau_site"]["app_password"] = "${PUBLISHER_TEST_UNSET_WP_PASSWORD}"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = CliRunner(env={"PUBLISHER_TEST_UNSET_WP_PASSWORD": None}).invoke(
        cli, ["report", "annual", "--year", "2015", "--format", "json", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["disclosed"] == 0


def test_annual_report_mapping_is_checked(tmp_path: Path) -> None:
    """config.yaml's annual_report names rows of the national table and configured categories, or says which not."""
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    data["annual_report"] = {"规章": ["rules"], "部门文件": ["notices"]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={}, adapters=False)
    text = str(err.value)
    assert "annual_report.部门文件" in text and "行政规范性文件" in text
    assert "annual_report.规章: category 'rules' is not defined" in text


@pytest.mark.postgres
def test_postgresql_gives_the_same_figures(year: Year, tmp_path: Path, sandbox_server: SandboxServer,
                                           pg_url: str) -> None:
    """The same items through a PostgreSQL store give the same annual and district reports as on SQLite."""
    pg = make_year(tmp_path, sandbox_server, store_url=pg_url)
    try:
        for args in (("annual", "--year", "2015"), ("districts", "--from", "2015-01-01", "--to", "2015-12-31")):
            assert pg.report(*args) == year.report(*args)
    finally:
        pg.daemon.store.close()


def test_config_maps_exactly_the_national_rows_that_count_items() -> None:
    """Every row of 主动公开政府信息情况 that counts documents or decisions can be mapped in config.yaml, and
    only those: 行政事业性收费 is an amount of money, which no item carries."""
    from publisher.config.settings import ANNUAL_REPORT_ROWS
    from publisher.stats.annual import NATIONAL_TABLE

    rows = [row for _section, _headers, rows in NATIONAL_TABLE for row in rows]
    assert sorted(set(rows) - {"行政事业性收费"}) == sorted(ANNUAL_REPORT_ROWS) and len(rows) == len(set(rows)) == 6
