"""The queue folder: what intake takes, what it leaves alone, and that no file is ever lost or changed."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from publisher.clock import FrozenClock
from publisher.intake.queue import Intake
from publisher.review.chain import Review
from publisher.store.db import Store
from tests.harness import drop, load, write_config


@pytest.fixture
def intake(tmp_path: Path, sandbox: object) -> Intake:
    cfg = load(write_config(tmp_path, sandbox))
    clock = FrozenClock(datetime(2015, 3, 18, 1, 0, tzinfo=UTC))
    store = Store.open(cfg.store_url)
    return Intake(cfg, store, Review(store, cfg, clock), clock)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_lock_files_temp_files_and_attachments_are_left_alone(intake: Intake) -> None:
    """Dotfiles, *.tmp, ~$ Office lock files and non-Markdown files stay in the inbox untouched."""
    for name in (".hidden.md", "draft.md.tmp", "~$通知.md", "report.pdf", "notes.txt"):
        (intake.inbox / name).write_bytes(b"---\ntitle: x\ncategory: news\n---\nx\n")
    assert await intake.scan() == 0
    assert sorted(p.name for p in intake.inbox.iterdir()) == sorted(
        [".hidden.md", "draft.md.tmp", "~$通知.md", "report.pdf", "notes.txt"])


async def test_accepted_file_and_its_attachment_are_archived_byte_identical(intake: Intake) -> None:
    """An item with an attachment: both end in the archive unchanged, and the revision points there."""
    (intake.inbox / "附件.pdf").write_bytes(b"%PDF-1.4 test")
    path = drop(intake.inbox, "notice.md", {"id": "n-1", "title": "通知", "category": "updates",
                                            "attachments": ["附件.pdf"]}, "正文。")
    digest = _sha(path)
    assert await intake.scan() == 1
    archived = intake.archive / "notice.md"
    assert _sha(archived) == digest
    attached = intake.archive / "notice.md.files" / "附件.pdf"
    assert attached.read_bytes() == b"%PDF-1.4 test"
    rev = intake.store.revision("n-1")
    assert rev.attachments[0]["path"] == str(attached)
    assert list(intake.inbox.iterdir()) == []


async def test_same_file_dropped_twice_is_archived_not_ingested_again(intake: Intake) -> None:
    """A byte-identical second drop changes nothing in the store and is kept beside the first."""
    front = {"id": "dup-1", "title": "重复", "category": "updates"}
    drop(intake.inbox, "dup.md", front, "正文。")
    await intake.scan()
    drop(intake.inbox, "dup.md", front, "正文。")
    await intake.scan()
    assert intake.store.revision("dup-1").number == 1
    assert sorted(p.name for p in intake.archive.iterdir()) == ["dup-2.md", "dup.md"]
    assert intake.counts["duplicate"] == 1


async def test_a_file_still_growing_is_not_read(intake: Intake) -> None:
    """A file whose size changes during the settle time is left for a later scan, then taken whole."""
    intake.config.queue.settle = timedelta(milliseconds=100)  # time to append during it
    path = intake.inbox / "slow.md"
    path.write_bytes("---\nid: slow-1\ntitle: 慢慢写\ncategory: updates\n---\n第一段".encode())

    async def keep_writing() -> None:
        await asyncio.sleep(0.03)
        with path.open("ab") as f:
            f.write("，第二段。\n".encode())

    handled, _ = await asyncio.gather(intake.scan(), keep_writing())
    assert handled == 0 and path.exists()
    assert await intake.scan() == 1
    assert intake.store.revision("slow-1").body.endswith("第二段。")


async def test_gbk_and_bom_files_are_read_without_garbling(intake: Intake) -> None:
    """GB18030/GBK and UTF-8 with BOM, as Windows editors save them, are decoded to the same text."""
    text = "---\nid: {id}\ntitle: 关于做好汛期安全生产工作的通知\ncategory: updates\n---\n各区县安监局：请做好汛期工作。\n"
    (intake.inbox / "gbk.md").write_bytes(text.format(id="gbk-1").encode("gbk"))
    (intake.inbox / "bom.md").write_bytes(b"\xef\xbb\xbf" + text.format(id="bom-1").encode())
    assert await intake.scan() == 2
    for item in ("gbk-1", "bom-1"):
        rev = intake.store.revision(item)
        assert rev.title == "关于做好汛期安全生产工作的通知" and rev.body == "各区县安监局：请做好汛期工作。"


@pytest.mark.parametrize(("text", "zh", "en"), [
    ("---\ntitle: [unclosed\ncategory: news\n---\n正文\n", "YAML", "not valid YAML"),
    ("---\ncategory: news\n---\n正文\n", "缺少标题", "title is missing"),
    ("---\ntitle: 测试\ncategory: gossip\n---\n正文\n", "没有配置", "not configured"),
    ("---\ntitle: 测试\ncategory: 安监要闻\n---\n正文\n", "请写 news", "not configured"),
    ("只有正文，没有元数据。\n", "元数据", "No front matter"),
    ("", "空的", "empty"),
    ("---\ntitle: 测试\ncategory: news\npublish_at: 2015-13-45\n---\n正文\n", "publish_at", "publish_at"),
    ("---\ntitle: 测试\ncategory: news\nattachments: [nowhere.pdf]\n---\n正文\n", "找不到附件", "not found"),
    ("---\ntitle: 测试\ncategory: news\nattachments: [../../etc/passwd]\n---\n正文\n", "超出", "leaves the inbox"),
    ("---\ntitel: 测试\ncategory: news\n---\n正文\n", "title", "Did you mean 'title'"),
    ("---\ntitle: 测试\ncategory: news\nchannels: [weixin]\n---\n正文\n", "weixin", "not configured"),
])
async def test_rejected_file_gets_a_note_in_both_languages(intake: Intake, text: str, zh: str, en: str) -> None:
    """Each kind of broken file goes to rejected/ unchanged, beside a note that says what to fix."""
    (intake.inbox / "bad.md").write_text(text, encoding="utf-8")
    await intake.scan()
    assert (intake.rejected / "bad.md").read_text(encoding="utf-8") == text
    note = (intake.rejected / "bad.md.error.txt").read_text(encoding="utf-8")
    assert zh in note and en in note
    with intake.store.read() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM audit WHERE action = 'reject_file'")).scalar() == 1
