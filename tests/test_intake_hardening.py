"""Intake under attack and carelessness: files written slowly, odd names and dates, NUL bytes, shared and
corrected attachments, symlinks, YAML aliases, huge fields and characters XML cannot carry. Every file
ends in archive/ or rejected/ (with a note), never stuck in .claimed, and nothing outside the inbox is read."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
import structlog.testing

from publisher.clock import FrozenClock
from publisher.intake.queue import Intake
from publisher.intake.watch import watch_inbox
from publisher.review.chain import Review
from publisher.store.db import Store
from tests.harness import drop, load, write_config

NO_SANDBOX = SimpleNamespace(base_url="http://127.0.0.1:9")  # intake talks to no channel


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite store with every migration applied, copied into each test (a copy costs far less)."""
    path = tmp_path_factory.mktemp("template") / "publisher.db"
    Store.open(f"sqlite:///{path}").close()
    return path


def make_intake(root: Path, store_url: str | None = None, template: Path | None = None) -> Intake:
    cfg = load(write_config(root, NO_SANDBOX, store_url=store_url))
    if template is not None and store_url is None:
        (root / "var").mkdir(exist_ok=True)
        shutil.copyfile(template, root / "var" / "publisher.db")
    clock = FrozenClock(datetime(2015, 3, 18, 1, 0, tzinfo=UTC))
    store = Store.open(cfg.store_url)
    return Intake(cfg, store, Review(store, cfg, clock), clock)


@pytest.fixture
def intake(tmp_path: Path, migrated: Path) -> Iterator[Intake]:
    it = make_intake(tmp_path, template=migrated)
    yield it
    it.store.close()


def nothing_claimed(intake: Intake) -> bool:
    return list(intake.claimed.iterdir()) == []


def note_of(intake: Intake, name: str) -> str:
    return (intake.rejected / f"{name}.error.txt").read_text(encoding="utf-8")


def audited_rejections(intake: Intake) -> int:
    with intake.store.read() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM audit WHERE action = 'reject_file'")).scalar() or 0)


ITEM = "---\nid: {id}\ntitle: 关于做好汛期安全生产工作的通知\ncategory: updates\n{extra}---\n各区县安监局：请做好汛期工作。\n"


def item_text(item_id: str, extra: str = "") -> str:
    return ITEM.format(id=item_id, extra=extra)


# --- 4: a file is read only once its writer has closed it -------------------------------------------

@pytest.fixture
async def watched(intake: Intake) -> AsyncIterator[Intake]:
    """The intake with its inotify watcher running, as in the daemon."""
    stop = asyncio.Event()
    task = asyncio.create_task(watch_inbox(intake.inbox, intake.writes, intake.scan, stop))
    for _ in range(200):
        if intake.writes.active:
            break
        await asyncio.sleep(0.01)
    assert intake.writes.active
    yield intake
    stop.set()
    await asyncio.wait_for(task, 10)


def content(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def exists(path: str | Path | bytes) -> bool:
    return os.path.lexists(path)


async def until(check: object, limit: float = 20.0) -> None:
    assert callable(check)
    for _ in range(int(limit / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def test_a_file_written_in_place_slowly_is_read_whole(watched: Intake) -> None:
    """A writer that pauses far longer than the settle time mid-file: the store gets the whole file, not a prefix."""
    text = item_text("slow-1").encode()
    path = watched.inbox / "slow.md"
    with path.open("wb") as fh:
        fh.write(text[:73])
        fh.flush()
        await asyncio.sleep(0.5)  # 500 × the configured settle (1 ms): the old size-stable check read it here
        assert path.exists() and nothing_claimed(watched)
        fh.write(text[73:])
    await until(lambda: (watched.archive / "slow.md").exists())
    rev = watched.store.revision("slow-1")
    assert rev is not None and rev.body == "各区县安监局：请做好汛期工作。"
    assert (watched.archive / "slow.md").read_bytes() == text


async def test_a_renamed_in_file_is_taken_without_the_settle_wait(watched: Intake) -> None:
    """The fast path: a file renamed in is whole, so even a ten-minute settle does not hold it up."""
    watched.config.queue.settle = timedelta(minutes=10)
    drop(watched.inbox, "fast.md", {"id": "fast-1", "title": "快速", "category": "updates"})
    await until(lambda: (watched.archive / "fast.md").exists(), limit=30)
    assert watched.store.revision("fast-1") is not None


async def test_an_item_waits_for_its_attachment_still_being_written(watched: Intake) -> None:
    """An item renamed in while its attachment is written in place is taken once the attachment is whole."""
    pdf = watched.inbox / "report.pdf"
    with pdf.open("wb") as fh:
        fh.write(b"%PDF-1.4 first half ")
        fh.flush()
        await asyncio.sleep(0.1)
        drop(watched.inbox, "withpdf.md", {"id": "att-1", "title": "附件", "category": "updates",
                                           "attachments": ["report.pdf"]})
        await asyncio.sleep(0.3)
        assert watched.store.revision("att-1") is None
        fh.write(b"second half")
    await until(lambda: watched.store.revision("att-1") is not None)
    rev = watched.store.revision("att-1")
    assert rev is not None
    assert content(rev.attachments[0]["path"]) == b"%PDF-1.4 first half second half"
    assert rev.attachments[0]["sha256"] == hashlib.sha256(b"%PDF-1.4 first half second half").hexdigest()


# --- 5: nothing stuck in .claimed ----------------------------------------------------------------

async def test_a_name_too_long_for_its_note_is_still_rejected_with_a_note(intake: Intake) -> None:
    """A 250-byte name (its `.error.txt` would pass the 255-byte limit): rejected under a shorter name, with a note."""
    name = "关" * 83 + "x.md"  # 254 bytes
    assert len(os.fsencode(name)) > 255 - len(".error.txt")
    (intake.inbox / name).write_text("---\ntitle: [unclosed\ncategory: news\n---\n正文\n", encoding="utf-8")
    await intake.scan()
    assert nothing_claimed(intake)
    rejected = [p for p in intake.rejected.iterdir() if not p.name.endswith(".error.txt")]
    assert len(rejected) == 1 and rejected[0].read_text(encoding="utf-8").startswith("---\ntitle: [unclosed")
    note = content(f"{rejected[0]}.error.txt").decode()
    assert name in note and "not valid YAML" in note
    assert audited_rejections(intake) == 1


async def test_a_long_named_item_with_an_attachment_is_archived(intake: Intake) -> None:
    """A valid item under a 245-byte name: archived (with its attachments' folder), nothing left claimed."""
    name = "关" * 83 + "x.md"
    (intake.inbox / "a.pdf").write_bytes(b"%PDF")
    (intake.inbox / name).write_text(item_text("long-1", "attachments: [a.pdf]\n"), encoding="utf-8")
    await intake.scan()
    assert nothing_claimed(intake) and list(intake.inbox.iterdir()) == []
    rev = intake.store.revision("long-1")
    assert rev is not None and content(rev.attachments[0]["path"]) == b"%PDF"


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+08:00", "9999-12-31T23:00:00-10:00", "1000-01-01",
                                  "2300-01-01T09:00:00+08:00"])
async def test_publish_at_out_of_any_range_is_rejected_with_a_note(intake: Intake, when: str) -> None:
    """An embargo no database (or UTC) can hold: rejected with a note."""
    (intake.inbox / "far.md").write_text(item_text("far-1", f"publish_at: {when}\n"), encoding="utf-8")
    await intake.scan()
    assert nothing_claimed(intake)
    note = note_of(intake, "far.md")
    assert "publish_at" in note and "1900" in note
    assert intake.store.revision("far-1") is None


@pytest.mark.parametrize(("text", "where"), [
    (item_text("nul-1").replace("请做好", "请\x00做好"), "Line 6"),
    (item_text("nul-2").replace("title: 关于", 'title: "\\0关于').replace("通知\n", '通知"\n', 1), "'title'"),
    (item_text("nul-3", 'source: "张店\\x00区"\n'), "'source'"),
])
async def test_nul_bytes_are_refused_with_a_note(intake: Intake, text: str, where: str) -> None:
    """NUL in the body or (as a YAML escape) in a field: refused with the place named."""
    (intake.inbox / "nul.md").write_bytes(text.encode())
    await intake.scan()
    assert nothing_claimed(intake)
    assert (intake.rejected / "nul.md").read_bytes() == text.encode()
    note = note_of(intake, "nul.md")
    assert "U+0000" in note and where in note
    assert audited_rejections(intake) == 1


@pytest.mark.postgres
async def test_on_postgresql_nul_bytes_and_far_dates_end_rejected_with_notes(tmp_path: Path, pg_url: str) -> None:
    """PostgreSQL takes no NUL in text and no UTC time before year 1: such files are rejected with notes
    (they used to stay in .claimed, retried at every scan); a good file beside them is stored."""
    intake = make_intake(tmp_path, pg_url)
    files = {
        "body.md": item_text("pg-1").replace("请做好", "请\x00做好"),
        "field.md": item_text("pg-2", 'source: "张店\\x00区"\n'),
        "early.md": item_text("pg-3", "publish_at: 0001-01-01T00:00:00+08:00\n"),
        "late.md": item_text("pg-4", "publish_at: 9999-12-31T23:00:00-10:00\n"),
        "good.md": item_text("pg-5", "publish_at: 2015-03-20T09:00:00+08:00\n"),
    }
    for name, text in files.items():
        (intake.inbox / name).write_bytes(text.encode())
    try:
        assert await intake.scan() == len(files)
        await intake.scan()  # a second scan finds nothing left claimed
        assert nothing_claimed(intake)
        for name in ("body.md", "field.md", "early.md", "late.md"):
            assert (intake.rejected / name).read_bytes() == files[name].encode() and note_of(intake, name).strip()
        assert audited_rejections(intake) == 4
        assert intake.store.revision("pg-5") is not None
    finally:
        intake.store.close()


@pytest.mark.postgres
async def test_a_store_refusing_one_file_rejects_it_alone_with_a_note(tmp_path: Path, pg_url: str) -> None:
    """A write the database refuses for one file (here a trigger): that file is rejected with a note, not
    archived as well, and the file beside it is stored; nothing waits in .claimed."""
    intake = make_intake(tmp_path, pg_url)
    try:
        with intake.store.tx() as conn:
            conn.execute(sa.text("CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                                 "RAISE EXCEPTION 'refused by the database'; END $$ LANGUAGE plpgsql"))
            conn.execute(sa.text("CREATE TRIGGER refuse BEFORE INSERT ON revisions FOR EACH ROW "
                                 "WHEN (NEW.title = '拒收') EXECUTE FUNCTION refuse()"))
        (intake.inbox / "a.pdf").write_bytes(b"%PDF")
        (intake.inbox / "bad.md").write_text(item_text("bad-1", "attachments: [a.pdf]\n").replace(
            "关于做好汛期安全生产工作的通知", "拒收"), encoding="utf-8")
        (intake.inbox / "good.md").write_text(item_text("good-1"), encoding="utf-8")
        with structlog.testing.capture_logs():
            assert await intake.scan() == 2
        assert nothing_claimed(intake)
        assert "refused by the database" in note_of(intake, "bad.md")
        assert sorted(p.name for p in intake.archive.iterdir()) == ["good.md"]
        assert intake.store.revision("good-1") is not None and intake.store.revision("bad-1") is None
        assert (intake.inbox / "a.pdf").read_bytes() == b"%PDF"  # its item was refused: the attachment stays
    finally:
        intake.store.close()


async def test_a_store_out_of_reach_leaves_the_file_claimed_until_it_is_back(intake: Intake) -> None:
    """A store that cannot be reached is a passing trouble: the file waits in .claimed (not rejected), then is taken."""
    (intake.inbox / "wait.md").write_text(item_text("wait-1"), encoding="utf-8")
    real = intake.store
    gone = Store.open("postgresql+psycopg://postgres@/nowhere?host=/nonexistent-socket-dir", migrate=False)
    intake.store = intake.review.store = gone
    try:
        with structlog.testing.capture_logs() as logs:
            await intake.scan()
        assert [p.name for p in intake.claimed.iterdir()] == ["wait.md"]
        assert [e["event"] for e in logs if e["log_level"] == "error"] == ["intake.store_unavailable"]
        assert list(intake.rejected.iterdir()) == []
    finally:
        gone.close()
    intake.store = intake.review.store = real
    await intake.scan()
    assert nothing_claimed(intake) and intake.store.revision("wait-1") is not None


# --- 6: a change is the item file and its attachments' bytes ---------------------------------------

async def test_a_corrected_attachment_makes_a_new_revision(intake: Intake) -> None:
    """The same item file dropped again with a corrected attachment is a change, not a duplicate."""
    (intake.inbox / "名单.pdf").write_bytes(b"%PDF old list")
    drop(intake.inbox, "list.md", {"id": "list-1", "title": "名单", "category": "updates", "attachments": ["名单.pdf"]})
    await intake.scan()
    (intake.inbox / "名单.pdf").write_bytes(b"%PDF corrected list")
    drop(intake.inbox, "list.md", {"id": "list-1", "title": "名单", "category": "updates", "attachments": ["名单.pdf"]})
    await intake.scan()
    rev = intake.store.revision("list-1")
    assert rev is not None and rev.number == 2
    assert content(rev.attachments[0]["path"]) == b"%PDF corrected list"
    assert intake.counts["duplicate"] == 0


async def test_the_same_item_and_attachment_twice_is_a_duplicate(intake: Intake) -> None:
    """Byte-identical item file and attachment dropped again: archived, the store unchanged."""
    for _ in range(2):
        (intake.inbox / "a.pdf").write_bytes(b"%PDF same")
        drop(intake.inbox, "same.md", {"id": "same-1", "title": "同", "category": "updates", "attachments": ["a.pdf"]})
        await intake.scan()
    rev = intake.store.revision("same-1")
    assert rev is not None and rev.number == 1 and intake.counts["duplicate"] == 1
    assert sorted(p.name for p in intake.archive.iterdir()) == ["same-2.md", "same-2.md.files", "same.md",
                                                                "same.md.files"]
    assert list(intake.inbox.iterdir()) == []


async def test_an_earlier_version_dropped_again_is_a_new_revision(intake: Intake) -> None:
    """v1, v2, then v1 again (an editor undoing a change): the item ends at v1's text, as revision 3."""
    for title in ("第一版", "第二版", "第一版"):
        drop(intake.inbox, "v.md", {"id": "v-1", "title": title, "category": "updates"})
        await intake.scan()
    rev = intake.store.revision("v-1")
    assert rev is not None and rev.number == 3 and rev.title == "第一版"


@pytest.mark.parametrize(("lister", "listed"), [("a.md", "b.md"), ("z.md", "b.md")])
async def test_an_item_file_listed_as_an_attachment_is_also_read_as_an_item(intake: Intake, lister: str,
                                                                             listed: str) -> None:
    """An item file another item lists as its attachment: both are stored, whichever is read first."""
    (intake.inbox / listed).write_text(item_text("listed-1"), encoding="utf-8")
    (intake.inbox / lister).write_text(item_text("lister-1", f"attachments: [{listed}]\n"), encoding="utf-8")
    assert await intake.scan() == 2
    assert intake.store.revision("listed-1") is not None
    lister_rev = intake.store.revision("lister-1")
    assert lister_rev is not None
    assert content(lister_rev.attachments[0]["path"]).decode() == item_text("listed-1")
    assert list(intake.inbox.iterdir()) == [] and nothing_claimed(intake)


async def test_two_items_sharing_an_attachment_are_both_taken(intake: Intake) -> None:
    """Two items listing one attachment, dropped together: both stored with it, and the inbox is emptied."""
    (intake.inbox / "共用.pdf").write_bytes(b"%PDF shared")
    for n in (1, 2):
        drop(intake.inbox, f"share{n}.md", {"id": f"share-{n}", "title": "共用附件", "category": "updates",
                                            "attachments": ["共用.pdf"]})
    assert await intake.scan() == 2
    for n in (1, 2):
        rev = intake.store.revision(f"share-{n}")
        assert rev is not None and content(rev.attachments[0]["path"]) == b"%PDF shared"
    assert list(intake.inbox.iterdir()) == [] and list(intake.rejected.iterdir()) == []


async def test_an_item_taken_after_the_settle_keeps_the_attachment_it_shares_with_one_taken_before(
        intake: Intake) -> None:
    """One scan, two passes: the first item is quiet already and taken at once, the second still settling and taken
    after the wait. The attachment both list is let go only after the second pass, so the second is stored too."""
    intake.config.queue.settle = timedelta(seconds=0.3)
    (intake.inbox / "共用.pdf").write_bytes(b"%PDF shared")
    for n in (1, 2):
        drop(intake.inbox, f"share{n}.md", {"id": f"share-{n}", "title": "共用附件", "category": "updates",
                                            "attachments": ["共用.pdf"]})
    an_hour_ago = time.time() - 3600
    for name in ("share1.md", "共用.pdf"):
        os.utime(intake.inbox / name, (an_hour_ago, an_hour_ago))
    assert await intake.scan() == 2
    for n in (1, 2):
        rev = intake.store.revision(f"share-{n}")
        assert rev is not None and content(rev.attachments[0]["path"]) == b"%PDF shared"
    assert list(intake.inbox.iterdir()) == [] and list(intake.rejected.iterdir()) == []


async def test_an_attachment_replaced_during_the_scan_is_not_removed(intake: Intake) -> None:
    """The original goes only while it is the archived file: a new version dropped meanwhile stays in the inbox."""
    (intake.inbox / "a.pdf").write_bytes(b"%PDF v1")
    drop(intake.inbox, "r.md", {"id": "r-1", "title": "替换", "category": "updates", "attachments": ["a.pdf"]})
    original = intake._let_go

    def replace_then_let_go(batch: Any) -> None:
        if batch.done:  # the item is stored: an editor drops a corrected attachment before the originals go
            tmp = intake.inbox / ".a.pdf.tmp"
            tmp.write_bytes(b"%PDF v2")
            tmp.rename(intake.inbox / "a.pdf")
        original(batch)

    intake._let_go = replace_then_let_go  # type: ignore[method-assign]
    await intake.scan()
    assert (intake.inbox / "a.pdf").read_bytes() == b"%PDF v2"


# --- 8: nothing outside the inbox is read ---------------------------------------------------------

@pytest.fixture
def secret(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    path = outside / "secret.md"
    path.write_text(item_text("secret-1").replace("各区县安监局", "SECRET-MARKER"), encoding="utf-8")
    (outside / "secret.pdf").write_bytes(b"SECRET-MARKER")
    return path


def stored_text(intake: Intake) -> str:
    with intake.store.read() as conn:
        return repr(conn.execute(sa.text("SELECT * FROM revisions")).fetchall())


async def test_a_symlinked_item_file_is_rejected_unread(intake: Intake, secret: Path) -> None:
    """A symlink in the inbox pointing outside: the link itself goes to rejected/ with a note; nothing is read."""
    (intake.inbox / "link.md").symlink_to(secret)
    await intake.scan()
    assert (intake.rejected / "link.md").is_symlink()
    assert "symbolic link" in note_of(intake, "link.md") and "符号链接" in note_of(intake, "link.md")
    assert "SECRET-MARKER" not in stored_text(intake) and exists(secret)
    assert nothing_claimed(intake)


@pytest.mark.parametrize("how", ["file", "inside", "folder"])
async def test_a_symlinked_attachment_is_rejected(intake: Intake, secret: Path, how: str) -> None:
    """An attachment that is a symlink (outside, or even inside the inbox), or under a symlinked folder: refused."""
    if how == "file":
        (intake.inbox / "a.pdf").symlink_to(secret.parent / "secret.pdf")
        att = "a.pdf"
    elif how == "inside":
        (intake.inbox / "real.pdf").write_bytes(b"%PDF")
        (intake.inbox / "a.pdf").symlink_to(intake.inbox / "real.pdf")
        att = "a.pdf"
    else:
        (intake.inbox / "sub").symlink_to(secret.parent, target_is_directory=True)
        att = "sub/secret.pdf"
    drop(intake.inbox, "att.md", {"id": "att-1", "title": "附件", "category": "updates", "attachments": [att]})
    await intake.scan()
    note = note_of(intake, "att.md")
    assert "symbolic link" in note or "leaves the inbox" in note
    assert intake.store.revision("att-1") is None and "SECRET-MARKER" not in stored_text(intake)
    assert not any(p.name.endswith(".files") for p in intake.archive.iterdir())


# --- 11: aliases and sizes -------------------------------------------------------------------------

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(7))


@pytest.mark.parametrize("front", [
    "title: &t 关于通知\nsummary: *t\ncategory: updates\n",  # harmless, but aliases are refused all the same
    "title: 通知\ncategory: updates\n" + BOMB.replace("a:", "tags:", 1),
])
async def test_yaml_aliases_are_refused(intake: Intake, front: str) -> None:
    """Aliases in the front matter (an alias bomb among them) are refused at once with a note."""
    (intake.inbox / "alias.md").write_text(f"---\n{front}---\n正文\n", encoding="utf-8")
    await intake.scan()
    note = note_of(intake, "alias.md")
    assert "alias" in note and "别名" in note


@pytest.mark.parametrize(("text", "expect"), [
    (item_text("big-1") + "长" * (4 * 1024 * 1024 // 3 + 10), "too large"),
    ("---\ntitle: 通知\ncategory: updates\nsummary: " + "摘" * 30000 + "\n---\n正文\n", "front matter is too long"),
    (item_text("src-1", f"source: {'区' * 300}\n"), "'source'"),
    (item_text("tag-1", f"tags: [{', '.join(['t'] * 60)}]\n"), "'tags'"),
    ("---\ntitle: 通知\ncategory: updates\ntags: " + "[" * 1500 + "]" * 1500 + "\n---\n正文\n", "too deep"),
])
async def test_caps_on_file_and_field_sizes(intake: Intake, text: str, expect: str) -> None:
    """Files, front matter and fields past their caps are refused with a note that says which."""
    (intake.inbox / "cap.md").write_text(text, encoding="utf-8")
    await intake.scan()
    assert expect in note_of(intake, "cap.md")
    assert nothing_claimed(intake) and (intake.rejected / "cap.md").read_text(encoding="utf-8") == text


@pytest.mark.parametrize(("length", "says"), [(20_000, "20011 chars"), (100_000, "front matter is too long")])
async def test_a_huge_title_writes_a_short_note(intake: Intake, length: int, says: str) -> None:
    """A 20,000- or 100,000-character title: a note of a few KB that quotes a few dozen characters."""
    (intake.inbox / "long.md").write_text(item_text("t-1").replace("关于做好", "长" * length), encoding="utf-8")
    await intake.scan()
    note_path = intake.rejected / "long.md.error.txt"
    assert note_path.stat().st_size < 8000
    assert says in note_path.read_text(encoding="utf-8")
    with intake.store.read() as conn:
        reason = conn.execute(sa.text("SELECT detail FROM audit WHERE action = 'reject_file'")).scalar()
    assert len(str(reason)) < 4000


# --- 13 and 16: characters XML cannot carry, surrogates -----------------------------------------------

@pytest.mark.parametrize(("text", "place"), [
    (item_text("c-1").replace("关于", "关\x07于"), "U+0007"),
    (item_text("c-5").replace("关于", '"关\\a于').replace("通知\n", '通知"\n', 1), "'title'"),
    (item_text("c-2").replace("请做好", "\x1b[31m请做好"), "Line 6"),
    (item_text("c-3").replace("请做好", "请\ufffe做好"), "U+FFFE"),
    (item_text("c-4", 'summary: "摘要\\x0b"\n'), "'summary'"),
])
async def test_characters_xml_cannot_carry_are_refused(intake: Intake, text: str, place: str) -> None:
    """Control characters (an ANSI escape among them) in a field or the body: refused, the place named."""
    (intake.inbox / "ctl.md").write_text(text, encoding="utf-8")
    await intake.scan()
    note = note_of(intake, "ctl.md")
    assert place in note and "\x1b" not in note and "\x07" not in note


async def test_an_emoji_written_as_a_surrogate_pair_escape_is_joined(intake: Intake) -> None:
    """`title: "\\ud83d\\ude00 通知"` (a JSON-style escape pair) is the emoji itself."""
    (intake.inbox / "emoji.md").write_text(
        '---\nid: emoji-1\ntitle: "\\ud83d\\ude00 通知"\ncategory: updates\n---\n正文\n', encoding="utf-8")
    await intake.scan()
    rev = intake.store.revision("emoji-1")
    assert rev is not None and rev.title == "😀 通知"


async def test_a_lone_surrogate_gets_a_full_note_and_an_audit_row(intake: Intake) -> None:
    """A lone surrogate escape: a note that says what and where (not an empty file), and an audit row."""
    (intake.inbox / "lone.md").write_text(
        '---\nid: lone-1\ntitle: "\\ud83d 通知"\ncategory: updates\n---\n正文\n', encoding="utf-8")
    await intake.scan()
    note = note_of(intake, "lone.md")
    assert "U+D83D" in note and "'title'" in note
    assert audited_rejections(intake) == 1 and nothing_claimed(intake)


async def test_a_non_utf8_file_name_is_taken_and_shown_readably(intake: Intake) -> None:
    """A GBK-named file (from a Windows share): stored under its readable name, archived under its own bytes."""
    raw = "关于通知.md".encode("gbk")
    write(intake.inbox / os.fsdecode(raw), item_text("gbk-name-1").encode())
    await intake.scan()
    rev = intake.store.revision("gbk-name-1")
    assert rev is not None and rev.file_name == "关于通知.md"
    assert exists(os.path.join(os.fsencode(intake.archive), raw))
