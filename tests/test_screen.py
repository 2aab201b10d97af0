"""The confidentiality screen: markings as markings, checksum-valid ID numbers, mobiles, terms."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from publisher.clock import FrozenClock
from publisher.intake.queue import Intake
from publisher.review.chain import Review
from publisher.review.screen import Finding, id_check_char, is_resident_id, screen
from publisher.store.db import Store
from tests.harness import drop, load, write_config


def _id(first17: str) -> str:
    return first17 + id_check_char(first17)


VALID_ID = _id("37030219901115543")  # 370302199011155432, a synthetic 张店区 number
BAD_CHECK = VALID_ID[:-1] + ("0" if VALID_ID[-1] != "0" else "1")


def kinds(body: str, **kw: object) -> list[tuple[str, str]]:
    return [(f.kind, f.text) for f in screen("", body, **kw)]  # type: ignore[arg-type]


@pytest.mark.parametrize(("body", "text"), [
    ("机密★10年\n\n各区县安监局：", "机密★10年"),
    ("秘密★1年", "秘密★1年"),
    ("绝密★长期", "绝密★长期"),
    ("文件右上角标注机密★，请注意", "机密★"),
    ("【机密】关于某事故的情况报告", "【机密】"),
    ("〔秘密★6个月〕", "〔秘密★6个月〕"),
    ("秘密级", "秘密级"),
    ("**机密**\n\n正文", "机密"),
    ("# 机密★10年\n\n正文", "机密★10年"),
    ("> 秘密 1年\n正文", "秘密 1年"),
    ("密级：绝密", "密级：绝密"),
    ("机密*10年", "机密*10年"),
    ("机密★１０年", "机密★１０年"),
])
def test_classified_markings_are_found(body: str, text: str) -> None:
    """A secrecy level written as a marking (star, brackets, label, alone on a line) is a classified finding."""
    assert kinds(body) == [("classified_marking", text)]


@pytest.mark.parametrize("body", [
    "公民有保守国家秘密的义务，各单位要严守保密纪律。",
    "国家秘密的密级分为绝密、机密、秘密三级。",
    "绝密级国家秘密是最重要的国家秘密。",
    "机密文件管理办法已印发。",
    "依法保护企业的商业秘密和个人隐私。",
    "**秘密**的泄露往往源于疏忽。",
    "淄安监发〔2015〕12号",
    "秘密地",
])
def test_secrecy_words_in_prose_are_not_markings(body: str) -> None:
    """The level words inside a sentence, or starting a longer word, are not flagged."""
    assert kinds(body) == []


@pytest.mark.parametrize(("body", "text"), [
    ("内部资料 注意保存", "内部资料 注意保存"),
    ("通知如下。内部资料，请勿外传。", "内部资料，请勿外传"),
    ("内部\n\n关于某事的通报", "内部"),
    ("内部文件\n", "内部文件"),
    ("本材料仅供内部使用。", "仅供内部使用"),
    ("【内部】市安委会简报", "【内部】"),
    ("〔内部资料〕", "〔内部资料〕"),
])
def test_internal_markings_are_found(body: str, text: str) -> None:
    """An internal-use marking or handling instruction is an internal finding."""
    assert kinds(body) == [("internal_marking", text)]


@pytest.mark.parametrize("body", [
    "市安监局开展内部审计工作。",
    "机关内部设机构8个。",
    "内部审计结果已公开。",
    "各单位要加强内部资料管理。",
    "企业内部安全管理制度",
])
def test_internal_in_prose_is_not_a_marking(body: str) -> None:
    """内部 inside an ordinary word or sentence is not flagged."""
    assert kinds(body) == []


def test_valid_resident_id_is_found() -> None:
    """An 18-character ID with a right MOD 11-2 check character and a real birth date is found."""
    assert kinds(f"联系人身份证号码{VALID_ID}。") == [("resident_id", VALID_ID)]


def test_resident_id_with_x_check_is_found() -> None:
    """An ID whose check character is X (either case) is found."""
    first17 = next(c for n in range(1000) if id_check_char(c := f"37030219850101{n:03d}") == "X")
    assert kinds(f"身份证：{first17}x") == [("resident_id", first17 + "x")]


@pytest.mark.parametrize("body", [
    BAD_CHECK,                              # wrong check character
    _id("37030219901315543"),               # month 13
    _id("99030219901115543"),               # no such province
    "1" + VALID_ID,                         # part of a longer digit run
    f"A{VALID_ID}",                         # part of a serial code
])
def test_implausible_id_numbers_are_not_flagged(body: str) -> None:
    """ID-shaped numbers with a bad checksum, date or region, or inside a longer run, are not flagged."""
    assert kinds(body) == []


def test_old_fifteen_digit_id_is_found() -> None:
    """The old 15-digit form with a valid region and birth date is found."""
    assert is_resident_id("370302801115543")
    assert kinds("身份证370302801115543") == [("resident_id", "370302801115543")]


@pytest.mark.parametrize(("body", "text"), [
    ("联系电话13812345678。", "13812345678"),
    ("电话：+86 138 1234 5678", "+86 138 1234 5678"),
    ("电话 86-159-0533-1234", "86-159-0533-1234"),
    ("手机 199 1234 5678", "199 1234 5678"),
    ("+8617712345678", "+8617712345678"),
    ("１３８１２３４５６７８", "１３８１２３４５６７８"),
])
def test_mobile_numbers_are_found(body: str, text: str) -> None:
    """Mainland mobiles, with or without +86 and in 3-4-4 groups, are found."""
    assert kinds(body) == [("mobile_number", text)]


@pytest.mark.parametrize("body", [
    "12812345678",          # 12x is not a mobile segment
    "213812345678",         # part of a longer run
    "13812345678901",
    "咨询电话：0533-3184163，举报电话12350",
    "发现隐患13812项",
])
def test_non_mobile_digits_are_not_flagged(body: str) -> None:
    """Landlines, hotlines, other segments and longer digit runs are not mobiles."""
    assert kinds(body) == []


def test_configured_terms_match_every_occurrence() -> None:
    """Each configured term is found as an exact substring, every time it occurs; blank terms are ignored."""
    assert kinds("甲项目和甲项目", terms=["甲项目", "", "  "]) == [("term", "甲项目"), ("term", "甲项目")]
    assert kinds("乙项目", terms=["甲项目"]) == []


def test_findings_carry_place_and_offsets() -> None:
    """A finding says whether it is in the title or the body, and its offsets slice out its text."""
    title, body = "【机密】通报", "正文\n联系电话13812345678"
    findings = screen(title, body)
    assert [(f.where, f.kind) for f in findings] == [("title", "classified_marking"), ("body", "mobile_number")]
    for f in findings:
        assert (title if f.where == "title" else body)[f.start:f.end] == f.text


def test_finding_is_frozen_and_described_in_both_languages() -> None:
    """A finding cannot be changed, and describes itself in Chinese and English."""
    f = screen("", "机密★10年")[0]
    assert isinstance(f, Finding)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.text = "x"  # type: ignore[misc]
    assert f.describe("zh-CN") == "正文中发现密级标志\u201c机密★10年\u201d"
    assert f.describe("en") == "classified marking \u201c机密★10年\u201d found in the body"


def test_clean_item_passes() -> None:
    """An ordinary notice with document numbers, dates, counts and a landline has no finding."""
    body = ("各区县安监局，市安委会有关成员单位：\n\n根据淄安监发〔2015〕45号文件要求，2015年3月18日至4月30日"
            "开展专项检查，共检查企业165家，发现并整改隐患724项。\n\n咨询电话：0533-3184163。")
    assert screen("关于开展危险化学品专项整治的通知", body) == []


# --- every field of an item file, through intake and the store ----------------------------------------------

@pytest.fixture
def intake(tmp_path: Path, sandbox: object) -> Intake:
    cfg = load(write_config(tmp_path, sandbox, **{"screen.links.check": False}))
    clock = FrozenClock(datetime(2015, 3, 18, 1, 0, tzinfo=UTC))
    store = Store.open(cfg.store_url)
    return Intake(cfg, store, Review(store, cfg, clock), clock)


async def test_every_field_that_reaches_a_channel_is_screened(intake: Intake) -> None:
    """Title, summary, body, source, author, tags and attachment names are each screened, and each finding
    names its field: the summary's findings are no longer reported as in the body."""
    (intake.inbox / "【内部】调查报告.pdf").write_bytes(b"%PDF-1.4 test")
    drop(intake.inbox, "all.md", {
        "id": "all-1", "title": "&#26426;&#23494;★ 通报", "category": "updates", "summary": "联系电话138.1234.5678",
        "source": "淄川区 13912345678", "author": f"张科长 {VALID_ID}", "tags": ["安全生产", "內部資料 注意保存"],
        "attachments": ["【内部】调查报告.pdf"]}, "正文：机<span></span>密★10年")
    assert await intake.scan() == 1
    rev = intake.store.revision("all-1")
    assert rev is not None and rev.state == "blocked"
    got = [(f["field"], f["index"], f["kind"], f["text"], f["level"]) for f in rev.findings]
    assert got == [
        ("title", None, "classified_marking", "&#26426;&#23494;★", "blocking"),
        ("summary", None, "mobile_number", "138.1234.5678", "blocking"),
        ("body", None, "classified_marking", "机<span></span>密★10年", "blocking"),
        ("source", None, "mobile_number", "13912345678", "blocking"),
        ("author", None, "resident_id", VALID_ID, "blocking"),
        ("tags", 1, "internal_marking", "內部資料 注意保存", "blocking"),
        ("attachment", 0, "internal_marking", "【内部】", "blocking"),
    ]
    title = rev.findings[0]
    assert (title["seen"], title["start"], title["end"]) == ("机密★", 0, 17)
    assert title["reason_zh"] == "发现密级标志" and title["reason_en"] == "classified marking"
    assert rev.findings[1]["zh"] == "摘要中发现手机号码\u201c138.1234.5678\u201d"


async def test_advisory_findings_do_not_hold_a_revision(intake: Intake) -> None:
    """A wrong form (advisory) is stored and shown, and the revision still goes out; a blocking one holds it."""
    drop(intake.inbox, "adv.md", {"id": "adv-1", "title": "截止到目前的检查情况", "category": "updates"}, "正文。")
    drop(intake.inbox, "blk.md", {"id": "blk-1", "title": "检查情况", "category": "updates"}, "所谓台湾总统")
    assert await intake.scan() == 2
    adv, blk = intake.store.revision("adv-1"), intake.store.revision("blk-1")
    assert adv is not None and blk is not None
    assert adv.state == "approved" and [(f["kind"], f["level"], f["suggest"]) for f in adv.findings] == [
        ("wording", "advisory", "截至")]
    assert blk.state == "blocked" and [(f["kind"], f["level"]) for f in blk.findings] == [("wording", "blocking")]


async def test_show_prints_each_finding_with_field_text_and_reason(intake: Intake, tmp_path: Path) -> None:
    """`publisher show` names each finding's level, field, the text as written and the reason in both languages."""
    from click.testing import CliRunner

    from publisher.app.cli.main import main

    drop(intake.inbox, "show.md", {"id": "show-1", "title": "截止到目前", "category": "news",
                                   "tags": ["电话13812345678"]}, "正文。")
    await intake.scan()
    result = CliRunner().invoke(main, ["show", "show-1", "--config", str(tmp_path / "config.yaml")],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines() if "finding" in line]
    assert lines == [
        "finding (advisory) title: \u201c截止到\u201d → \u201c截至\u201d — "
        "截止意为到期停止，后面不带时间宾语；表示“到某时为止”用截至 / 截止 means 'to close'; 'up to (a time)' is 截至",
        "finding (blocking) tags[0]: \u201c13812345678\u201d — 发现手机号码 / mobile number",
    ]


def test_findings_of_one_field_are_capped_per_level() -> None:
    """A body repeating a wrong form and a mobile 300 times keeps the first 100 findings of each level, in
    reading order: enough to act on, and the revision's stored findings stay small."""
    from publisher.review.screen import MOST_PER_FIELD
    from publisher.review.wording import Dictionary, starter_rules

    found = screen("", "截止到，13812345678。" * 300, dictionary=Dictionary(starter_rules()))
    assert sum(f.level == "blocking" for f in found) == sum(f.level == "advisory" for f in found) == MOST_PER_FIELD
    assert [f.start for f in found] == sorted(f.start for f in found if f.start is not None)
    assert found[0].kind == "wording" and found[1].kind == "mobile_number"


@pytest.mark.parametrize(("body", "start"), [("R&amp;D 机密★", 8), ("R&amp;D&amp;机&#23494;★", 12), ("`&amp;` 机密★", 8)])
def test_offsets_survive_entities_before_the_finding(body: str, start: int) -> None:
    """An entity (or a literal one in a code span) before a finding does not shift the finding's offsets."""
    f = screen("", body)[0]
    assert f.start == start and body[f.start:f.end] == f.text
