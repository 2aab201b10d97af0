"""Fuzz: inbox files made by hypothesis (bytes, YAML, encodings, names, dates, sizes, aliases, symlinks,
attachments, files rewritten while read) plus the corpus generator's broken files. Whatever arrives, every
file ends in archive/ or rejected/ byte for byte (a rejected one beside a non-empty note), nothing stays
claimed, nothing outside the inbox is read, and no file makes two revisions.

Short form in CI (≥ 500 files in-process, one daemon-level batch); the long form runs with
PUBLISHER_LONG=1 (≥ 10,000 files; figures in docs/RELIABILITY.md, "Fuzz").
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import structlog.testing
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.app.daemon import Daemon
from publisher.clock import FrozenClock
from publisher.intake.queue import Intake
from publisher.review.chain import Review
from publisher.sandbox.corpus import make_corpus
from publisher.store.db import Store
from tests.harness import free_port, load, write_config

LONG = os.environ.get("PUBLISHER_LONG") == "1"
EXAMPLES = 900 if LONG else 60  # each example drops 9–14 files: ≥ 10,000 files long, ≥ 500 short
SECRET = "SECRET-MARKER-7f3a"
CATEGORIES = ["news", "notices", "accidents", "laws", "guides", "gossip", "安监要闻", ""]
TALLY: Counter[str] = Counter()  # files run and how each ended, across the module (printed at the end)


@dataclass
class Case:
    """One inbox file: its name, and its bytes or the target its symlink points at."""

    name: str
    data: bytes | None = None
    link: str | None = None  # "outside" (the secret), "inside" (a file in the inbox), "dangling"
    attachments: dict[str, bytes | str] = field(default_factory=dict)  # name -> bytes, or "symlink"


# --- strategies ----------------------------------------------------------------------------------

ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
CJK = st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x4FFF), min_size=1, max_size=30)
ESCAPES = st.sampled_from(['"\\ud83d\\ude00 通知"', '"\\ud83d 通知"', '"\\0通知"', '"\\x1b[31m通知"', '"\\u200b通知"',
                           '"\\uffff"', '"\\x85通知"', "&a 通知", "*a", "!!binary aGVsbG8=", "!!python/object:os.system x"])
DATES = st.one_of(st.dates().map(str), st.sampled_from(["2015-13-45", "0001-01-01", "9999-12-31", "2015-03-18",
                                                        "yesterday", "1e9", "2015-03-18T09:00:00+08:00"]))
ZONES = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
MOMENTS = st.one_of(st.datetimes(timezones=ZONES).map(lambda d: d.isoformat()),
                    st.datetimes().map(lambda d: d.isoformat(" ")), DATES, st.integers().map(str))


def _encode(text: str, encoding: str) -> bytes:
    try:
        return text.encode(encoding)
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


GOOD_DATES = st.dates(min_value=datetime(1990, 1, 1).date(), max_value=datetime(2100, 1, 1).date())
GOOD_MOMENTS = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=ZONES)


@st.composite
def item_bytes(draw: st.DrawFn, attachments: list[str]) -> bytes:
    """An item file as an editor (or an attacker) might write it: about half of them well-formed."""
    good = draw(st.booleans())
    fields: dict[str, Any] = {}
    if good or draw(st.booleans()):
        fields["id"] = draw(st.from_regex(r"\A[a-z0-9\-]{1,30}\Z") if good else
                            st.one_of(st.from_regex(r"\A[a-z0-9\-]{1,30}\Z"), ANY_TEXT, st.integers()))
    fields["title"] = draw(CJK if good else st.one_of(CJK, ANY_TEXT, st.integers(0, 20_000).map(lambda n: "长" * n)))
    fields["category"] = draw(st.sampled_from(CATEGORIES[:5] if good else CATEGORIES))
    optional = (("date", GOOD_DATES, DATES), ("publish_at", GOOD_MOMENTS, MOMENTS), ("source", CJK, ANY_TEXT),
                ("summary", CJK, ANY_TEXT), ("author", CJK, ANY_TEXT),
                ("tags", st.lists(CJK, max_size=5), st.lists(ANY_TEXT, max_size=60)),
                ("channels", st.just(["bureau_site"]),
                 st.lists(st.sampled_from(["bureau_site", "weixin", "microblog"]), max_size=3)),
                ("retract", st.just(False), st.sampled_from([True, False, "maybe"])), ("titel", None, CJK))
    for key, fine, rough in optional:
        strategy = fine if good else rough
        if strategy is not None and draw(st.integers(0, 3)) == 0:
            fields[key] = draw(strategy)
    if attachments or (not good and draw(st.integers(0, 9)) == 0):
        fields["attachments"] = attachments or draw(st.lists(st.sampled_from(["../../etc/passwd", "/etc/hosts",
                                                                              "nowhere.pdf", ""]), max_size=2))
    body = draw(CJK if good else st.one_of(CJK, ANY_TEXT, st.just("")))
    how = "yaml" if good else draw(st.sampled_from(["yaml", "raw", "escape", "alias-bomb", "no-front", "unclosed"]))
    if how == "yaml":
        front = yaml.safe_dump(fields, allow_unicode=True, sort_keys=False)
    elif how == "escape":
        front = yaml.safe_dump({k: v for k, v in fields.items() if k != "title"}, allow_unicode=True) + \
            f"title: {draw(ESCAPES)}\n"
    elif how == "alias-bomb":
        levels = draw(st.integers(1, 9))
        front = "title: 通知\ncategory: news\na0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, levels))
    else:
        front = "".join(f"{k}: {v}\n" for k, v in fields.items())
    text = {"no-front": body, "unclosed": f"---\n{front}{body}"}.get(how, f"---\n{front}---\n{body}\n")
    encodings = ["utf-8", "utf-8-sig", "gb18030"] if good else ["utf-8", "utf-8-sig", "gb18030", "utf-16", "latin-1"]
    return _encode(text, draw(st.sampled_from(encodings)))


NAME_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00")


@st.composite
def names(draw: st.DrawFn, index: int) -> str:
    """A candidate name (ends .md / .markdown, no leading dot): plain, any Unicode, raw bytes, or near 255 bytes."""
    kind = draw(st.sampled_from(["plain", "unicode", "bytes", "long"]))
    if kind == "plain":
        stem = draw(st.sampled_from(["通知", "notice", "关于 做好 工作", "a b", "2015-news-0001"]))
    elif kind == "unicode":
        stem = draw(st.text(NAME_CHARS, min_size=1, max_size=60))
    elif kind == "bytes":
        raw = draw(st.binary(min_size=1, max_size=60).filter(lambda b: b"/" not in b and b"\0" not in b))
        stem = os.fsdecode(raw)
    else:
        stem = "长" * draw(st.integers(60, 80))
    suffix = draw(st.sampled_from([".md", ".markdown", ".MD"]))
    raw_name = f"{index:02d}".encode() + os.fsencode(stem)[:240] + suffix.encode()
    while True:  # a cut may split a UTF-8 character: fine, it is still a name the filesystem takes
        if len(raw_name) <= 255:
            return os.fsdecode(raw_name)
        raw_name = raw_name[:-len(suffix) - 1] + suffix.encode()


@st.composite
def cases(draw: st.DrawFn, broken: list[bytes]) -> list[Case]:
    out: list[Case] = []
    shared = {"共用.pdf": b"%PDF shared"} if draw(st.booleans()) else {}
    for i in range(draw(st.integers(9, 14))):  # 60 examples: at least 540 files
        name = draw(names(i))
        kind = draw(st.sampled_from(["item", "item", "item", "bytes", "broken", "symlink", "attachments"]))
        if kind == "bytes":
            out.append(Case(name, data=draw(st.binary(max_size=3000))))
        elif kind == "broken":
            out.append(Case(name, data=draw(st.sampled_from(broken))))
        elif kind == "symlink":
            out.append(Case(name, link=draw(st.sampled_from(["outside", "inside", "dangling"]))))
        elif kind == "attachments":
            atts: dict[str, bytes | str] = dict(shared)
            for k in range(draw(st.integers(1, 3))):
                atts[f"{i}-{k}.pdf"] = draw(st.sampled_from([b"%PDF-1.4 " + bytes([k]) * 10, "symlink"]))
            out.append(Case(name, data=draw(item_bytes(list(atts))), attachments=atts))
        else:
            out.append(Case(name, data=draw(item_bytes([]))))
    return out


# --- the harness ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def broken_corpus(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """The corpus generator's broken files (`publisher corpus --broken`), and its odd-but-valid encodings."""
    out = tmp_path_factory.mktemp("broken")
    manifest = make_corpus(out, scale=0.01, broken=True)
    return [(out / entry["file"]).read_bytes() for entry in manifest["broken"]]


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("outside")
    (folder / "secret.md").write_text(f"---\ntitle: {SECRET}\ncategory: news\n---\n{SECRET}\n", encoding="utf-8")
    (folder / "secret.pdf").write_bytes(SECRET.encode())
    return folder


def lay(inbox: Path, batch: list[Case], outside: Path) -> None:
    """Put the cases into the inbox: attachments first, then each item renamed in, symlinks as symlinks."""
    (inbox / "inside.txt").write_bytes(b"inside")
    for case in batch:
        for att, content in case.attachments.items():
            path = inbox / att
            if path.exists() or path.is_symlink():
                continue
            if content == "symlink":
                path.symlink_to(outside / "secret.pdf")
            else:
                assert isinstance(content, bytes)
                path.write_bytes(content)
    for case in batch:
        path = inbox / case.name
        if case.link is not None:
            target = {"outside": outside / "secret.md", "inside": inbox / "inside.txt",
                      "dangling": inbox / "nothing-here"}[case.link]
            path.symlink_to(target)
            continue
        assert case.data is not None
        tmp = inbox / f".{len(case.name)}.tmp"
        tmp.write_bytes(case.data)
        tmp.rename(path)


def filed(folder: Path) -> Counter[bytes]:
    """What lies filed in archive/ or rejected/: each file's bytes, a symlink as b'-> target'."""
    out: Counter[bytes] = Counter()
    for entry in folder.iterdir():
        if entry.name.endswith((".error.txt", ".files")) or entry.name.startswith("."):
            continue
        out[b"-> " + os.fsencode(os.readlink(entry)) if entry.is_symlink() else entry.read_bytes()] += 1
    return out


def expected(batch: list[Case], inbox: Path, outside: Path) -> Counter[bytes]:
    out: Counter[bytes] = Counter()
    for case in batch:
        if case.link is not None:
            target = {"outside": outside / "secret.md", "inside": inbox / "inside.txt",
                      "dangling": inbox / "nothing-here"}[case.link]
            out[b"-> " + os.fsencode(str(target))] += 1
        else:
            assert case.data is not None
            out[case.data] += 1
    return out


def check_notes(rejected: Path) -> None:
    for entry in rejected.iterdir():
        if entry.name.endswith(".error.txt") or entry.name.startswith("."):
            continue
        note = Path(f"{entry}.error.txt")
        text = note.read_text(encoding="utf-8")  # a note is UTF-8 whatever the file held
        assert text.strip() and note.stat().st_size < 8000, entry.name


def revisions(store: Store) -> int:
    with store.read() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM revisions")).scalar() or 0)


def no_secret(store: Store) -> None:
    with store.read() as conn:
        rows = conn.execute(sa.text("SELECT title, body, attachments FROM revisions")).fetchall()
    assert SECRET not in repr(rows)


class Run:
    """One intake on one store, reused across hypothesis examples; each example empties the queue folders."""

    def __init__(self, root: Path) -> None:
        cfg = load(write_config(root, SimpleNamespace(base_url="http://127.0.0.1:9")))
        self.clock = FrozenClock(datetime(2015, 3, 18, 1, 0, tzinfo=UTC))
        self.store = Store.open(cfg.store_url)
        self.intake = Intake(cfg, self.store, Review(self.store, cfg, self.clock), self.clock)

    def reset(self) -> None:
        for folder in (self.intake.inbox, self.intake.archive, self.intake.rejected, self.intake.claimed):
            for entry in folder.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    for sub in sorted(entry.rglob("*"), reverse=True):
                        sub.unlink() if not sub.is_dir() or sub.is_symlink() else sub.rmdir()
                    entry.rmdir()
                else:
                    entry.unlink()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    r = Run(tmp_path_factory.mktemp("fuzz"))
    yield r
    r.store.close()
    print(f"\nfuzz: {dict(TALLY)}")


def _settings(examples: int) -> Any:
    return settings(max_examples=examples, deadline=None, database=None, derandomize=not LONG,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.large_base_example])


def test_every_file_is_filed_byte_identical_with_a_note(run: Run, broken_corpus: list[bytes], outside: Path) -> None:
    """In-process against a real SQLite store: every generated file is archived or rejected unchanged, a
    rejected one with a note; nothing stays claimed; the secret outside is never read; one revision per new file."""

    @_settings(EXAMPLES)
    @given(batch=cases(broken_corpus))
    def one(batch: list[Case]) -> None:
        run.reset()
        intake = run.intake
        lay(intake.inbox, batch, outside)
        before = dict(intake.counts)
        revs = revisions(run.store)
        with structlog.testing.capture_logs() as logs:
            asyncio.run(intake.scan())
        unforeseen = [e for e in logs if e["event"] in ("intake.file_failed", "intake.unreadable", "intake.reject_failed")]
        assert unforeseen == []  # every file took a path intake knows, none the catch-all
        assert list(intake.claimed.iterdir()) == []
        got = filed(intake.archive) + filed(intake.rejected)
        assert got == expected(batch, intake.inbox, outside)
        check_notes(intake.rejected)
        assert not any(p.name.lower().endswith((".md", ".markdown")) and not p.name.startswith(".")
                       for p in intake.inbox.iterdir())
        delta = {k: intake.counts[k] - before[k] for k in before}
        assert revisions(run.store) - revs == delta["accepted"]  # no file made two revisions
        assert delta["accepted"] + delta["duplicate"] == sum(filed(intake.archive).values())
        for case in batch:  # an attachment is never lost: archived beside its item, or still in the inbox
            for att, content in case.attachments.items():
                if isinstance(content, bytes):
                    copies = [p for p in intake.archive.rglob(att) if p.read_bytes() == content]
                    assert copies or (intake.inbox / att).read_bytes() == content
        no_secret(run.store)
        TALLY["files"] += len(batch)
        TALLY["examples"] += 1
        for k, v in delta.items():
            TALLY[k] += v

    one()
    assert TALLY["files"] >= (10_000 if LONG else 500)


# --- the daemon, up throughout, over one batch (with files rewritten while it reads them) -------------

def rewrite_in_place(path: Path, versions: list[bytes], pause: float) -> None:
    """An editor's tool saving in place, slowly, several times: open, write in pieces, close."""
    for data in versions:
        with path.open("wb") as fh:
            for i in range(0, len(data), 40):
                fh.write(data[i:i + 40])
                fh.flush()
                time.sleep(pause)
        time.sleep(pause)


@pytest.fixture(scope="module")
def daemon_batch(broken_corpus: list[bytes]) -> list[Case]:
    """A fixed batch of about 70 generated files (hypothesis's cases, drawn once, deterministically)."""
    drawn: list[list[Case]] = []

    @settings(max_examples=8, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(batch=cases(broken_corpus))
    def draw(batch: list[Case]) -> None:
        drawn.append(batch)

    draw()
    out: list[Case] = []
    for n, batch in enumerate(drawn):
        for case in batch:
            case.name = f"d{n:02d}-{case.name}"
            renamed = {f"d{n:02d}-{a}": c for a, c in case.attachments.items()}
            if case.data is not None and case.attachments:
                text = case.data
                for old in case.attachments:
                    text = text.replace(old.encode(), f"d{n:02d}-{old}".encode())
                case.data = text
            case.attachments = renamed
            if len(os.fsencode(case.name)) <= 255:
                out.append(case)
    return out


async def test_the_daemon_stays_up_and_files_everything(tmp_path: Path, sandbox: object, outside: Path,
                                                        daemon_batch: list[Case]) -> None:
    """The running daemon (inotify watcher, rescan, dispatch, web) takes a generated batch and files being
    rewritten in place while it reads them: /healthz answers 200 throughout, every file is filed whole."""
    port = free_port()
    cfg = load(write_config(tmp_path, sandbox, web_port=port, **{"queue.settle": "2s"}))
    daemon = Daemon(cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    inbox = daemon.intake.inbox
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for _ in range(500):
            try:
                if (await client.get("/healthz")).status_code == 200 and daemon.intake.writes.active:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.02)
        versions = {f"slow-{i}.md": [f"---\nid: slow-{i}\ntitle: 第{v}版\ncategory: news\n---\n{'正文' * 60}{v}\n"
                                     .encode() for v in range(3)] for i in range(3)}
        writers = [threading.Thread(target=rewrite_in_place, args=(inbox / name, data, 0.02))
                   for name, data in versions.items()]
        for w in writers:
            w.start()
        await asyncio.to_thread(lay, inbox, daemon_batch, outside)
        healthy = 0
        for _ in range(600):
            assert not task.done(), "the daemon stopped"
            healthy += (await client.get("/healthz")).status_code == 200
            if not any(w.is_alive() for w in writers) and not any(
                    p.name.lower().endswith((".md", ".markdown")) and not p.name.startswith(".")
                    for p in inbox.iterdir()) and not list(daemon.intake.claimed.iterdir()):
                break
            await asyncio.sleep(0.05)
        final = await client.get("/healthz")
        assert final.status_code == 200, final.text
    stop.set()
    await asyncio.wait_for(task, 60)
    assert healthy > 0
    queue = daemon.intake.archive.parent
    got = filed(queue / "archive") + filed(queue / "rejected")
    want = expected(daemon_batch, inbox, outside)
    assert got - want == Counter(versions_filed := {k: v for k, v in (got - want).items()
                                                    if any(k in vs for vs in versions.values())})
    assert want - got == Counter()
    for name, vs in versions.items():  # the last save of each slowly written file is there, never a torn one
        assert versions_filed.get(vs[-1], 0) >= 1, name
    check_notes(queue / "rejected")
    no_secret(daemon.store)
    TALLY["daemon_files"] += len(daemon_batch) + sum(versions_filed.values())
