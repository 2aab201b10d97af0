"""The screen corpus: every evasion and every false positive of issue 13 item 9 as its own case, the wording
dictionary's cases, and the link check against real loopback servers (docs/RELIABILITY.md, "Screen corpus")."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from publisher.clock import FrozenClock
from publisher.config.screen import LinksConfig, ScreenConfig
from publisher.intake.queue import Intake
from publisher.review.chain import Review
from publisher.review.links import LinkChecker, allowed, extract_links, link_findings
from publisher.review.screen import Finding, id_check_char, screen
from publisher.review.wording import Dictionary, starter_rules
from publisher.store.db import Store
from publisher.store.revisions import LINKS_CHECKED
from publisher.units import parse_duration
from tests.harness import drop, load, write_config

ID = "37030219901115543" + id_check_char("37030219901115543")  # a synthetic 张店区 number: 370302199011155432
ZW = "\u200b"  # zero-width space
NBSP = "\u00a0"


@dataclass(frozen=True)
class Case:
    """An item's fields and what the screen must find in them: (kind, field, text as written)."""

    name: str
    fields: dict[str, Any]
    expect: list[tuple[str, str, str]] = field(default_factory=list)
    seen: str | None = None  # what a reader sees of the (only) finding, when it differs from the text


def _screen(fields: dict[str, Any], **kw: Any) -> list[Finding]:
    return screen(fields.get("title", ""), fields.get("body", ""), summary=fields.get("summary"),
                  source=fields.get("source"), author=fields.get("author"), tags=fields.get("tags", ()),
                  attachments=fields.get("attachments", ()), **kw)


def body(text: str) -> dict[str, Any]:
    return {"body": text}


# --- evasions: each must still be found, in its field, with the text as the editor wrote it -------------
EVASIONS = [
    Case("decimal entities", body("&#26426;&#23494;★"), [("classified_marking", "body", "&#26426;&#23494;★")], "机密★"),
    Case("hex entities", body("&#x673a;&#x5bc6;★10年"), [("classified_marking", "body", "&#x673a;&#x5bc6;★10年")],
         "机密★10年"),
    Case("named entity between", body("机密&starf;1年"), [("classified_marking", "body", "机密&starf;1年")], "机密★1年"),
    Case("empty span between characters", body("机<span></span>密★"),
         [("classified_marking", "body", "机<span></span>密★")], "机密★"),
    Case("comment between characters", body("机<!-- x -->密★10年"),
         [("classified_marking", "body", "机<!-- x -->密★10年")]),
    Case("emphasis between characters", body("机**密**★10年"), [("classified_marking", "body", "机**密**★10年")]),
    Case("space between characters", body("机 密★10年"), [("classified_marking", "body", "机 密★10年")]),
    Case("ideographic space, alone on a line", body("秘\u3000密\n\n正文"), [("classified_marking", "body", "秘\u3000密")]),
    Case("traditional characters", body("機密★"), [("classified_marking", "body", "機密★")]),
    Case("traditional internal marking", body("內部資料，請勿外傳"), [("internal_marking", "body", "內部資料，請勿外傳")]),
    Case("traditional variant 祕", body("【祕密】"), [("classified_marking", "body", "【祕密】")]),
    Case("zero-width space inside a marking", body(f"机{ZW}密★"), [("classified_marking", "body", f"机{ZW}密★")]),
    Case("inline code", body("`机密★10年`"), [("classified_marking", "body", "机密★10年")]),
    Case("zero-width spaces inside an ID number", body(f"身份证{ID[:6]}{ZW}{ID[6:14]}{ZW}{ID[14:]}"),
         [("resident_id", "body", f"{ID[:6]}{ZW}{ID[6:14]}{ZW}{ID[14:]}")]),
    Case("ID grouped 6-8-4", body(f"身份证 {ID[:6]} {ID[6:14]} {ID[14:]}。"),
         [("resident_id", "body", f"{ID[:6]} {ID[6:14]} {ID[14:]}")]),
    Case("ID grouped with dashes", body(f"{ID[:6]}-{ID[6:14]}-{ID[14:]}"),
         [("resident_id", "body", f"{ID[:6]}-{ID[6:14]}-{ID[14:]}")]),
    Case("ID grouped 4-4-4-4-2 with NBSP", body(NBSP.join([ID[0:4], ID[4:8], ID[8:12], ID[12:16], ID[16:]])),
         [("resident_id", "body", NBSP.join([ID[0:4], ID[4:8], ID[8:12], ID[12:16], ID[16:]]))]),
    Case("ID in full-width digits", body("身份证" + ID.translate(str.maketrans("0123456789", "０１２３４５６７８９"))),
         [("resident_id", "body", ID.translate(str.maketrans("0123456789", "０１２３４５６７８９")))]),
    Case("ID as entities", body("".join(f"&#{ord(c)};" for c in ID)),
         [("resident_id", "body", "".join(f"&#{ord(c)};" for c in ID))], ID),
    Case("old 15-digit ID grouped", body("身份证 370302 801115 543"), [("resident_id", "body", "370302 801115 543")]),
    Case("mobile with dots", body("电话138.1234.5678"), [("mobile_number", "body", "138.1234.5678")]),
    Case("mobile with NBSP", body(f"电话138{NBSP}1234{NBSP}5678"), [("mobile_number", "body", f"138{NBSP}1234{NBSP}5678")]),
    Case("mobile with ideographic spaces and full-width digits", body("电话１３８　１２３４　５６７８"),
         [("mobile_number", "body", "１３８　１２３４　５６７８")]),
    Case("mobile with zero-width spaces", body(f"1{ZW}3{ZW}8{ZW}12345678"),
         [("mobile_number", "body", f"1{ZW}3{ZW}8{ZW}12345678")]),
    Case("mobile in 3-3-5 groups", body("电话 138 123 45678"), [("mobile_number", "body", "138 123 45678")]),
    Case("mobile split by tags", body("138<b></b>1234<i></i>5678"), [("mobile_number", "body", "138<b></b>1234<i></i>5678")]),
    Case("mobile only in a tel: link", body("[联系我们](tel:13812345678)"), [("mobile_number", "body", "13812345678")]),
    Case("mobile in an HTML comment", body("正文<!-- 13812345678 -->"), [("mobile_number", "body", "13812345678")]),
    Case("marking in the title, as entities", {"title": "&#26426;&#23494;★ 通报"},
         [("classified_marking", "title", "&#26426;&#23494;★")]),
    Case("mobile in the summary is reported in the summary", {"summary": "联系电话13812345678", "body": "正文"},
         [("mobile_number", "summary", "13812345678")]),
    Case("source field", {"source": "淄川区 13812345678"}, [("mobile_number", "source", "13812345678")]),
    Case("author field", {"author": f"张科长 身份证{ID}"}, [("resident_id", "author", ID)]),
    Case("tags field", {"tags": ["安全生产", "机密★"]}, [("classified_marking", "tags", "机密★")]),
    Case("attachment file name", {"attachments": ["【内部】事故调查报告.pdf"]}, [("internal_marking", "attachment", "【内部】")]),
]

# --- false positives: ordinary text that must pass ---------------------------------------------------------
FALSE_POSITIVES = [
    Case("15 digits whose date no old ID can hold", body("110101900101123")),
    Case("a serial number shaped like a mobile", body("编号13912012015")),
    Case("a count before a range of years", body("共检查企业130 2014-2015年度")),
    Case("heading 秘密 used as a word", body("## 秘密\n\n本节说明国家秘密的范围。")),
    Case("heading 内部 used as a word", body("## 内部\n\n内部管理制度如下。")),
    Case("list item 秘密 used as a word", body("国家秘密的密级分为：\n\n- 绝密\n- 机密\n- 秘密")),
    Case("table cell 秘密 used as a word", body("| 文件 | 密级 |\n|---|---|\n| 甲 | 秘密 |")),
    Case("（内部） in running text", body("（内部）审计部门负责")),
    Case("traditional prose stays prose", body("公民有保守國家秘密的義務；內部審計。")),
    Case("a landline and a hotline", body("咨询电话：0533-3184163，举报电话12350")),
    Case("document number and dates", body("淄安监发〔2015〕12号，2015年3月18日至4月30日")),
]


@pytest.mark.parametrize("case", EVASIONS, ids=[c.name for c in EVASIONS])
def test_evasion_is_found(case: Case) -> None:
    """An evasion tried in issue 13 is found, in its field, with the text exactly as written there."""
    found = _screen(case.fields)
    assert [(f.kind, f.where, f.text) for f in found] == case.expect
    if case.seen is not None:
        assert found[0].seen == case.seen
    for f in found:  # the offsets point at the text in the field as written
        value = case.fields.get(f.where) if f.index is None else case.fields[
            "tags" if f.where == "tags" else "attachments"][f.index]
        assert f.start is not None and value[f.start:f.end] == f.text
        assert f.level == "blocking"


@pytest.mark.parametrize("case", FALSE_POSITIVES, ids=[c.name for c in FALSE_POSITIVES])
def test_false_positive_is_clear(case: Case) -> None:
    """Ordinary text that an earlier screen flagged, or that the stricter reading could flag, passes."""
    assert _screen(case.fields) == []


@pytest.mark.parametrize(("text", "expect"), [
    ("（内部）\n\n关于审计工作的说明", "（内部）"),  # alone on its line: the marking
    ("【内部】审计部门负责", "【内部】"),  # lenticular brackets: the marking wherever it stands
    ("本材料（内部资料）请勿外传", "（内部资料）请勿外传"),  # with a handling instruction
])
def test_internal_rule_for_brackets(text: str, expect: str) -> None:
    """The documented 内部 rule: round parentheses mark only alone on a line or with an instruction; 【】 always."""
    assert [(f.kind, f.text) for f in _screen(body(text))] == [("internal_marking", expect)]


# --- the wording dictionary -----------------------------------------------------------------------------------
STARTER = Dictionary(starter_rules())
BUREAU = ScreenConfig(
    official_name="淄博市安全生产监督管理局", wrong_names=["淄博市安全监督管理局"],
    leaders=[{"name": "张三", "title": "局长", "former_titles": ["副局长"]},  # type: ignore[list-item]
             {"name": "李四", "title": "副局长", "former_titles": ["局长"], "wrong_names": ["李泗"]}],
    forbidden=["内部讨论稿"],
)
BOTH = Dictionary([*starter_rules(), *BUREAU.wording_rules()])


@pytest.mark.parametrize(("text", "expect"), [
    ("截止到2015年底，共检查企业165家。", [("wording", "截止到", "截至", "advisory")]),
    ("截止目前，已整改隐患724项。", [("wording", "截止目前", "截至目前", "advisory")]),
    ("截止到2015年底", [("wording", "截止到", "截至", "advisory")]),  # traditional 截止 folded first
    ("报名于4月30日截止。", []),  # 截止 used rightly: nothing
    ("截至目前，已整改隐患724项。", []),
    ("发生一起特大事故", [("wording", "特大事故", "特别重大事故", "advisory")]),
    ("修订应急预按", [("wording", "应急预按", "应急预案", "advisory")]),
    ("所谓台湾总统", [("wording", "台湾总统", "台湾地区领导人", "blocking")]),
    ("再接再励", [("wording", "再接再励", "再接再厉", "advisory")]),
])
def test_starter_dictionary(text: str, expect: list[tuple[str, str, str | None, str]]) -> None:
    """The shipped dictionary finds wrong forms with their right form and level, after folding to simplified."""
    found = _screen(body(text), dictionary=STARTER)
    assert [(f.kind, f.text, f.suggest, f.level) for f in found] == expect


@pytest.mark.parametrize(("text", "expect"), [
    ("淄博市安全监督管理局召开会议", [("wording", "淄博市安全监督管理局", "淄博市安全生产监督管理局", "advisory")]),
    ("张三副局长出席", [("wording", "张三副局长", "张三局长", "advisory")]),
    ("副局长张三出席", [("wording", "副局长张三", "局长张三", "advisory")]),
    ("副局长李四出席", []),  # the former title 局长 inside the current one: the right form stands here
    ("局长李四出席", [("wording", "局长李四", "副局长李四", "advisory")]),
    ("李泗同志", [("wording", "李泗", "李四", "advisory")]),
    ("附件：内部讨论稿", [("forbidden", "内部讨论稿", None, "blocking")]),
])
def test_bureau_entries_from_config(text: str, expect: list[tuple[str, str, str | None, str]]) -> None:
    """config.yaml's official name, leaders' current titles and forbidden expressions extend the dictionary."""
    found = _screen(body(text), dictionary=BOTH)
    assert [(f.kind, f.text, f.suggest, f.level) for f in found] == expect


def test_starter_dictionary_entries_each_carry_a_reason_and_a_source() -> None:
    """Every shipped entry names its source and its reason in both languages, and folding leaves it meaningful."""
    rules = starter_rules()
    assert len(rules) >= 30
    assert all(r.source and r.reason and r.reason_en for r in rules)
    assert STARTER.size == len({r.match for r in rules})  # no entry is made void by folding to simplified


def test_wording_finding_describes_itself_in_both_languages() -> None:
    """A wording finding carries its field, its right form and its reason in zh-CN and en."""
    f = _screen({"title": "截止到目前的通报"}, dictionary=STARTER)[0]
    stored = f.as_dict()
    assert (stored["field"], stored["level"], stored["suggest"]) == ("title", "advisory", "截至")
    assert stored["zh"].startswith("标题中\u201c截止到\u201d应为\u201c截至\u201d")
    assert "should be \u201c截至\u201d" in stored["en"] and stored["reason_en"]


# --- links against real loopback servers ---------------------------------------------------------------------
class _Peer(BaseHTTPRequestHandler):
    def _answer(self, with_body: bool) -> None:
        path = self.path.split("?")[0]
        if path == "/slow":
            time.sleep(3.0)
        status = {"/ok": 200, "/slow": 200, "/missing": 404, "/broken": 503, "/moved": 301}.get(path, 404)
        if path == "/nohead" and self.command == "HEAD":
            status = 405
        elif path == "/nohead":
            status = 200
        self.send_response(status)
        if status == 301:
            self.send_header("Location", "/missing")
        self.send_header("Content-Length", "2")
        self.end_headers()
        if with_body:
            self.wfile.write(b"ok")

    def do_HEAD(self) -> None:  # noqa: N802  # http.server's naming
        self._answer(False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(True)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  # quiet
        pass


@pytest.fixture(scope="module")
def peer() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Peer)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _links_config(**kw: Any) -> LinksConfig:
    return LinksConfig(**{"timeout": parse_duration("1500ms"), **kw})  # below /slow's 3 s, far above a loopback answer


def test_links_are_taken_from_what_readers_can_follow() -> None:
    """Markdown links, autolinks, images, HTML hrefs and bare addresses count, each once; mailto and tel do not."""
    text = ("见[通知](https://a.gov.cn/1)和<https://b.gov.cn/2>，![图](http://c.gov.cn/p.png)\n\n"
            "<a href=\"https://d.gov.cn/4\">此处</a> 详见 https://e.gov.cn/5。[信](mailto:x@y.cn) [电话](tel:12350) "
            "再见[通知](https://a.gov.cn/1)")
    assert extract_links(text) == ["https://a.gov.cn/1", "https://b.gov.cn/2", "http://c.gov.cn/p.png",
                                   "https://d.gov.cn/4", "https://e.gov.cn/5"]


@pytest.mark.parametrize(("url", "ok"), [
    ("https://www.zibo.gov.cn/x", True), ("https://zibo.gov.cn/", True), ("https://GOV.CN/", True),
    ("https://evilgov.cn/", False), ("https://gov.cn.evil.example/", False), ("http://example.com/", False),
])
def test_allow_list_takes_domains_and_their_subdomains(url: str, ok: bool) -> None:
    """A domain on the allow-list admits itself and its subdomains, not look-alikes."""
    assert allowed(url, ["gov.cn"]) is ok


async def test_link_check_against_a_loopback_peer(peer: str) -> None:
    """A live link passes (HEAD refused: asked again with GET); 404, 503, a redirect to a 404 and a timeout
    are advisory findings with their reason; one slow link does not hold the others up."""
    links = ["ok", "nohead", "missing", "broken", "moved", "slow"]
    text = "\n".join(f"[{name}]({peer}/{name})" for name in links)
    async with httpx.AsyncClient() as http:
        started = time.monotonic()
        found, count = await link_findings(http, text, _links_config())
        elapsed = time.monotonic() - started
    assert count == 6
    by_url = {f.text.rsplit("/", 1)[1]: f for f in found}
    assert sorted(by_url) == ["broken", "missing", "moved", "slow"], {k: f.reason_en for k, f in by_url.items()}
    assert "HTTP 404" in by_url["missing"].reason_en and "HTTP 503" in by_url["broken"].reason_en
    assert "HTTP 404" in by_url["moved"].reason_en
    assert "did not answer within 1.5 s" in by_url["slow"].reason_en and "秒内没有响应" in by_url["slow"].reason_zh
    assert all(f.level == "advisory" and f.where == "body" and text[f.start:f.end] == f.text for f in found)
    assert elapsed < 30  # loose: the links are checked side by side, never one timeout after another


async def test_link_outside_the_allow_list_is_reported_without_a_request(peer: str) -> None:
    """A link to a domain outside `screen.links.allow` is an advisory finding; it is not fetched."""
    async with httpx.AsyncClient() as http:
        found, count = await link_findings(http, f"[x]({peer}/ok)", _links_config(allow=["gov.cn"]))
    assert count == 1 and [f.kind for f in found] == ["link"]
    assert "allowed domains (127.0.0.1)" in found[0].reason_en


async def test_unreachable_port_is_a_finding() -> None:
    """A link to a port where nothing listens is a finding (connection refused), quickly."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with httpx.AsyncClient() as http:
        found, _ = await asyncio.wait_for(link_findings(http, f"<http://127.0.0.1:{port}/>", _links_config()), 10)
    assert [f.kind for f in found] == ["link"] and "cannot be reached" in found[0].reason_en


# --- the daemon's link check over a real store ----------------------------------------------------------------

def _intake(tmp_path: Path, sandbox: object, store_url: str | None = None, **overrides: Any) -> Intake:
    cfg = load(write_config(tmp_path, sandbox, store_url=store_url, **overrides))
    clock = FrozenClock(datetime(2015, 3, 18, 1, 0, tzinfo=UTC))
    store = Store.open(cfg.store_url)
    return Intake(cfg, store, Review(store, cfg, clock), clock)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_link_checker_checks_each_revision_in_review_once(peer: str, tmp_path: Path, sandbox: object,
                                                                backend: str, request: pytest.FixtureRequest) -> None:
    """Revisions in review get their link problems as advisory findings and one `links_checked` audit entry;
    a second pass and a second node write nothing; an approved revision and a linkless one are not marked; the
    revision's state is untouched. On SQLite and on PostgreSQL."""
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    intake = _intake(tmp_path, sandbox, url, **{"screen.links.timeout": "5s"})
    drop(intake.inbox, "ln.md", {"id": "ln-1", "title": "通知", "category": "news"},
         f"见[通知]({peer}/missing)和[首页]({peer}/ok)。")
    drop(intake.inbox, "none.md", {"id": "ln-2", "title": "通知", "category": "news"}, "没有链接。")
    drop(intake.inbox, "out.md", {"id": "ln-3", "title": "动态", "category": "updates"}, f"[x]({peer}/missing)")
    assert await intake.scan() == 3
    store, links = intake.store, intake.config.screen.links
    async with httpx.AsyncClient() as http:
        one = LinkChecker(store=store, config=links, clock=intake.clock, http=http)
        assert await one.check_pending() == 1
        assert await one.check_pending() == 0
        other = LinkChecker(store=store, config=links, clock=intake.clock, http=http)  # a second node
        assert await other.check_pending() == 0
    rev = store.revision("ln-1")
    assert rev is not None and rev.state == "review"
    assert [(f["kind"], f["level"], f["text"]) for f in rev.findings] == [("link", "advisory", f"{peer}/missing")]
    assert "HTTP 404" in rev.findings[0]["en"] and rev.findings[0]["field"] == "body"
    marks = [(e.item_id, e.detail) for e in store.audit_log() if e.action == LINKS_CHECKED]
    assert marks == [("ln-1", {"links": 2, "problems": 1})]
    assert store.record_link_check(rev.id, [], intake.clock.now(), links=2, problems=0) is False
    approved = store.revision("ln-3")
    assert approved is not None and approved.state == "approved" and approved.findings == []


async def test_link_checker_stops_at_once_with_a_link_in_flight(peer: str, tmp_path: Path, sandbox: object) -> None:
    """The daemon's link check ends when the daemon stops, even while a link takes its whole timeout, and
    records nothing for the revision it was checking."""
    intake = _intake(tmp_path, sandbox, **{"screen.links.timeout": "60s"})
    drop(intake.inbox, "slow.md", {"id": "sl-1", "title": "通知", "category": "news"}, f"[慢]({peer}/slow)")
    await intake.scan()
    stop = asyncio.Event()
    async with httpx.AsyncClient() as http:
        checker = LinkChecker(store=intake.store, config=intake.config.screen.links, clock=intake.clock, http=http)
        task = asyncio.create_task(checker.run(stop))
        await asyncio.sleep(0.2)  # the check is under way: the peer answers /slow after a second
        stop.set()
        await asyncio.wait_for(task, 30)  # far below the link's 60 s timeout
    assert [e for e in intake.store.audit_log() if e.action == LINKS_CHECKED] == []


async def test_a_body_full_of_links_is_checked_up_to_a_hundred(peer: str) -> None:
    """A body holding 150 links has its first 100 checked, not all: the check is for a document, not a crawl;
    a finding's offsets are those of its own link, not of a longer one that begins like it."""
    first, second = f"{peer}/missing?n=10", f"{peer}/missing?n=1"
    text = " ".join([first, second, *(f"{peer}/ok?n={n}" for n in range(148))])
    async with httpx.AsyncClient() as http:
        found, count = await link_findings(http, text, _links_config(timeout=parse_duration("10s")))
    assert count == 100 and [(f.text, f.start) for f in found] == [(first, 0), (second, len(first) + 1)]

