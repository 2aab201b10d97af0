"""The queue folder: claim dropped files, read them, store revisions, and file every one away.

    queue/inbox/       editors drop item files here (attachments beside them)
    queue/.claimed/    a file being read (claimed by atomic rename; re-read after a crash)
    queue/archive/     every accepted file, byte-identical, with its attachments in NAME.files/
    queue/rejected/    every refused file, byte-identical, beside NAME.error.txt saying why

A file is read only when its size and mtime have held still for `queue.settle`; dotfiles,
`*.tmp`, `~$*` (Office lock files) and anything that is not `*.md` / `*.markdown` are left alone.
"""

from __future__ import annotations

import asyncio
import errno
import filecmp
import hashlib
import itertools
import os
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from publisher.clock import CHINA, Clock
from publisher.config.settings import Config
from publisher.intake.items import ItemFileError, ParsedItem, parse_item_file
from publisher.model import RevisionState
from publisher.review.chain import Review, findings_for
from publisher.store.db import Store

log = structlog.get_logger()

ITEM_SUFFIXES = (".md", ".markdown")


def is_candidate(path: Path) -> bool:
    name = path.name
    return (not name.startswith((".", "~$")) and not name.endswith((".tmp", ".part", ".swp", ".error.txt"))
            and path.suffix.lower() in ITEM_SUFFIXES)


def candidate_names(folder: Path, name: str) -> Iterator[Path]:
    """`folder/name`, then `name-2`, `name-3` ...: where a file may go without overwriting another."""
    stem, suffix = os.path.splitext(name)
    yield folder / name
    for n in itertools.count(2):
        yield folder / f"{stem}-{n}{suffix}"


def _taken(target: Path) -> bool:
    return target.exists() or Path(f"{target}.error.txt").exists()


def unique_target(folder: Path, name: str) -> Path:
    """The first of `candidate_names` that nothing has: nothing is ever overwritten."""
    return next(t for t in candidate_names(folder, name) if not _taken(t))


def link_or_copy(src: Path, dst: Path) -> None:
    """A hard link; on a filesystem without them (some network shares), a copy renamed into place."""
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)


class Intake:
    def __init__(self, config: Config, store: Store, review: Review, clock: Clock,
                 on_approved: Callable[[], None] | None = None, on_file: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.store = store
        self.review = review
        self.clock = clock
        self.on_approved = on_approved or (lambda: None)
        self.on_file = on_file or (lambda outcome: None)  # each file's outcome, for /metrics (accepted, rejected, duplicate)
        root = config.queue_dir
        self.inbox, self.claimed = root / "inbox", root / ".claimed"
        self.archive, self.rejected = root / "archive", root / "rejected"
        for d in (self.inbox, self.claimed, self.archive, self.rejected):
            d.mkdir(parents=True, exist_ok=True)
        self._lock = asyncio.Lock()
        self.counts = {"accepted": 0, "rejected": 0, "duplicate": 0}

    async def scan(self) -> int:
        """Take every settled file in the inbox (and any left claimed by a crash); returns files handled."""
        async with self._lock:
            handled = 0
            for leftover in sorted(self.claimed.iterdir()):
                if leftover.is_file():
                    self._safely(leftover, leftover.name)
                    handled += 1
            seen = {p: _sig(p) for p in sorted(self.inbox.iterdir()) if is_candidate(p)}
            first = {p: s for p, s in seen.items() if s is not None}
            if not first:
                return handled
            settle = self.config.queue.settle.total_seconds()
            # A file quiet for `settle` already (moved in, or written a while ago) needs no second look.
            if any(time.time() - sig[1] / 1e9 < settle for sig in first.values()):
                await asyncio.sleep(settle)
            for path, sig in first.items():
                if _sig(path) != sig:
                    continue  # still being written: the next event or rescan takes it
                claimed = self.claimed / path.name
                try:
                    os.rename(path, claimed)  # atomic: another node cannot take it as well
                except FileNotFoundError:
                    continue  # another node claimed it first
                self._safely(claimed, path.name)
                handled += 1
                if handled % 25 == 0:  # a big drop: let the dispatcher start while the rest are read
                    await asyncio.sleep(0)
            return handled

    def _safely(self, claimed: Path, name: str) -> None:
        """One file's trouble never stops the others; the file stays claimed and is tried again later."""
        try:
            self._process(claimed, name)
        except Exception:
            log.exception("intake.file_failed", file=name)

    def _process(self, claimed: Path, name: str) -> None:
        before = _sig(claimed)
        data = claimed.read_bytes()
        if _sig(claimed) != before or (before is not None and before[0] != len(data)):
            # a writer still holds the file (its writes follow the rename): hand it back, take it later
            os.replace(claimed, unique_target(self.inbox, name))
            log.info("intake.still_written", file=name)
            return
        digest = hashlib.sha256(data).hexdigest()
        now = self.clock.now()
        known = self.store.known_file(digest)
        if known is not None:
            # Read before (a crash after the commit, or the same file dropped twice): file it, change nothing.
            self.counts["duplicate"] += 1
            self.on_file("duplicate")
            archived = self._link_into(self.archive, claimed, name)
            again: ParsedItem | None = None
            try:  # after a crash its attachments may still wait in the inbox: file them beside it
                parsed = parse_item_file(name, data, categories={k: c.name for k, c in self.config.categories.items()},
                                         channels=set(self.config.channels), folder=self.inbox)
                self._archive_attachments(parsed, archived)
                again = parsed
            except Exception:  # noqa: S110  # the item is stored already; only the archive's copy was at stake
                log.warning("intake.duplicate_attachments_left", file=name)
            self._release(claimed, again)
            log.info("intake.duplicate", file=name, item_id=known[0], revision=known[1])
            return
        try:
            item = parse_item_file(name, data, categories={k: c.name for k, c in self.config.categories.items()},
                                   channels=set(self.config.channels), folder=self.inbox)
        except ItemFileError as exc:
            self._reject(claimed, name, exc, now)
            return
        except Exception as exc:  # a reading problem we did not foresee: still the editor gets an answer
            log.exception("intake.unreadable", file=name)
            self._reject(claimed, name, ItemFileError(
                f"系统无法读取这个文件（{type(exc).__name__}）。请检查格式，或把本说明转给系统管理员。",
                f"The file could not be read ({type(exc).__name__}: {exc}). Check its format, or pass this note "
                "to the administrator."), now)
            return
        # Links first, commit, then let go of the originals: a crash at any point leaves the file in
        # .claimed (and its attachments in the inbox) until the commit, and a link never duplicates bytes.
        archived = self._link_into(self.archive, claimed, name)
        attachments = self._archive_attachments(item, archived)
        state = self._store(item, name, digest, attachments, now)
        self._release(claimed, item)
        self.counts["accepted"] += 1
        self.on_file("accepted")
        log.info("intake.accepted", file=name, item_id=item.item_id, state=state.value)
        if state == RevisionState.APPROVED:
            self.on_approved()

    def _store(self, item: ParsedItem, name: str, digest: str, attachments: list[dict[str, Any]],
               now: datetime) -> RevisionState:
        f = item.front
        findings = [] if f.retract else findings_for(
            self.config, f.title, item.body, summary=f.summary, source=f.source, author=f.author, tags=f.tags,
            attachments=[a["name"] for a in attachments])
        fields: dict[str, Any] = {
            "item_id": item.item_id, "title": f.title, "category": f.category, "body": item.body,
            "summary": f.summary, "doc_date": f.date, "source": f.source, "author": f.author,
            "publish_at": f.publish_at, "channels": f.channels, "attachments": attachments,
            "retract": f.retract, "file_name": name, "file_sha256": digest, "state": RevisionState.REVIEW,
            "findings": findings,
        }
        with self.store.tx() as conn:
            rid, number = self.store.add_revision(conn, fields, now)
            # the queue folder authenticates no one: the file's `author` is a claim, kept as a detail
            self.store.audit(conn, now, "queue", "ingest", item_id=item.item_id, revision=number, author=f.author,
                             file=name, sha256=digest, findings=len(findings))
            return self.review.settle(conn, rid)

    def _archive_attachments(self, item: ParsedItem, archived: Path) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not item.attachment_paths:
            return out
        folder = archived.parent / (archived.name + ".files")
        folder.mkdir(exist_ok=True)
        for src in item.attachment_paths:
            rel = src.relative_to(self.inbox.resolve())
            dst = folder / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            # linked (or, without hard links, copied) already by a try that crashed
            if not (dst.exists() and (os.path.samefile(src, dst) or filecmp.cmp(src, dst, shallow=False))):
                link_or_copy(src, dst)
            out.append({"name": rel.as_posix(), "path": str(dst), "size": dst.stat().st_size})
        return out

    def _link_into(self, folder: Path, src: Path, name: str) -> Path:
        """`src` also under `folder` (a hard link: same bytes, no copy), under a name nothing else has;
        the very link a crashed try made is found again instead of making a second one."""
        for target in candidate_names(folder, name):
            if target.exists() and os.path.samefile(src, target):
                return target
            if _taken(target):
                continue
            try:
                link_or_copy(src, target)
            except FileExistsError:  # another node took the name this instant
                continue
            return target
        raise AssertionError("unreachable")

    def _release(self, claimed: Path, item: ParsedItem | None) -> None:
        """The item is stored and linked into the archive: the originals can go."""
        for src in item.attachment_paths if item is not None else ():
            src.unlink(missing_ok=True)
        claimed.unlink(missing_ok=True)

    def _file_away(self, claimed: Path, name: str, folder: Path) -> Path:
        target = unique_target(folder, name)
        os.replace(claimed, target)
        return target

    def _reject(self, claimed: Path, name: str, exc: ItemFileError, now: datetime) -> None:
        target = self._file_away(claimed, name, self.rejected)
        local = now.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")
        Path(str(target) + ".error.txt").write_text(
            f"文件：{name}\n时间：{local}\n\n问题：{exc.zh}\n\n"
            f"改正后请把文件重新放入 inbox 文件夹（原文件已原样保存在本文件旁）。\n\n"
            f"---\nFile: {name}\nProblem: {exc.en}\n\n"
            f"Fix it and drop the file into the inbox again (the original is kept unchanged beside this note).\n",
            encoding="utf-8")
        with self.store.tx() as conn:
            self.store.audit(conn, now, "daemon", "reject_file", file=name, reason=exc.en)
        self.counts["rejected"] += 1
        self.on_file("rejected")
        log.warning("intake.rejected", file=name, reason=exc.en)


def _sig(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if not path.is_file():
        return None
    return (st.st_size, st.st_mtime_ns)
