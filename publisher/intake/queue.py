"""The queue folder: claim dropped files, read them, store revisions, and file every one away.

    queue/inbox/       editors drop item files here (attachments beside them)
    queue/.claimed/    a file being read (claimed by atomic rename; re-read after a crash)
    queue/archive/     every accepted file, byte-identical, with its attachments in NAME.files/
    queue/rejected/    every refused file, byte-identical, beside NAME.error.txt saying why

A file is read once it is whole: the watcher (publisher/intake/watch.py) says so from the kernel's
events; a file it has heard nothing of must keep its size and mtime for `queue.settle`. Dotfiles,
`*.tmp`, `~$*` (Office lock files) and anything that is not `*.md` / `*.markdown` are left alone.
Nothing outside the inbox is read: a symlink (an item file or an attachment) is refused with a note.

Every file taken ends in archive/ or rejected/ with a note, whatever it holds; only a store that
cannot be reached leaves it in .claimed, to be taken again at the next scan.
"""

from __future__ import annotations

import asyncio
import filecmp
import hashlib
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from publisher.clock import CHINA, Clock
from publisher.config.settings import Config
from publisher.intake.files import (
    NOTE_MAX,
    NOTE_SUFFIX,
    Refused,
    display_name,
    file_sha256,
    is_candidate,
    link_into,
    link_or_copy,
    read_claimed,
    same_file,
    sig,
    stored_sums,
    unique_target,
)
from publisher.intake.items import ItemFileError, ParsedItem, parse_item_file
from publisher.intake.text import safe_note, shown
from publisher.intake.watch import Writes
from publisher.model import RevisionState, StoredRevision
from publisher.review.chain import Review, findings_for
from publisher.store.db import Store

log = structlog.get_logger()

@dataclass
class _Scan:
    """One scan's bookkeeping: what was filed where, and which originals go once the scan is through."""

    filed: dict[str, Path] = field(default_factory=dict)  # inbox name -> its place in archive/ or rejected/
    done: list[tuple[Path, list[tuple[Path, Path]]]] = field(default_factory=list)  # (claimed, [(original, copy)])


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
        self.writes = Writes()  # the watcher's word on each inbox file (publisher/intake/watch.py)
        self._waiting: dict[str, str] = {}  # item file -> the attachment it waits for while that is written

    async def scan(self) -> int:
        """Take every complete file in the inbox (and any left claimed by a crash); returns files handled.

        Without the watcher, a file changed within `queue.settle` is looked at again after that wait, which
        holds up no other scan (the lock is let go meanwhile). With it, such a file has events on their way
        (it changed while the kernel watched): the scan they bring takes it, and nothing waits here."""
        async with self._lock:
            batch = _Scan()
            try:
                handled, fresh = await self._scan(batch)
            except BaseException:
                self._let_go(batch)
                raise
            if not fresh or self.writes.active:  # watched: their own events (or the rescan) bring them back
                self._let_go(batch)
                return handled
        # What this pass stored lets go of its originals after the second pass: a file still settling may list
        # one of them as its attachment too (a crash meanwhile leaves them, and the next scan files them again).
        await asyncio.sleep(self.config.queue.settle.total_seconds())
        async with self._lock:
            batch = _Scan(filed=batch.filed, done=batch.done)  # an item listed as an attachment may have been read
            try:
                for path, seen in fresh.items():
                    if sig(path) != seen or self.writes.state(path.name) == "writing":
                        continue  # still being written: the next event or rescan takes it
                    handled += self._claim(path, batch)
                    if handled % 25 == 0:
                        await asyncio.sleep(0)
            finally:
                self._let_go(batch)
        return handled

    async def _scan(self, batch: _Scan) -> tuple[int, dict[Path, tuple[int, int]]]:
        """Claim what is complete now; return the count and the files to look at again after the settle."""
        handled = 0
        for leftover in sorted(self.claimed.iterdir()):
            if not leftover.is_dir() or leftover.is_symlink():
                self._safely(leftover, leftover.name, batch)
                handled += 1
        now_: list[Path] = []
        fresh: dict[Path, tuple[int, int]] = {}
        settle = self.config.queue.settle.total_seconds()
        for path in sorted(self.inbox.iterdir()):
            if not is_candidate(path):
                continue
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode):
                now_.append(path)  # refused unread, whatever it points at
            elif not stat.S_ISREG(st.st_mode):
                continue  # a folder or a pipe named like an item: left alone
            elif self._waits(path.name):
                continue
            elif (state := self.writes.state(path.name)) == "closed":
                now_.append(path)
            elif state is None:
                if time.time() - st.st_mtime_ns / 1e9 >= settle:
                    now_.append(path)  # quiet for `settle` already (written a while ago)
                else:
                    fresh[path] = (st.st_size, st.st_mtime_ns)
        for path in now_:
            handled += self._claim(path, batch)
            if handled % 25 == 0:  # a big drop: let the dispatcher start while the rest are read
                await asyncio.sleep(0)
        return handled, fresh

    def _waits(self, name: str) -> bool:
        attachment = self._waiting.get(name)
        if attachment is not None and self.writes.state(attachment) == "writing":
            return True
        self._waiting.pop(name, None)
        return False

    def _claim(self, path: Path, batch: _Scan) -> int:
        claimed = self.claimed / path.name
        try:
            os.rename(path, claimed)  # atomic: another node cannot take it as well
        except FileNotFoundError:
            return 0  # another node claimed it first
        self._safely(claimed, path.name, batch)
        return 1

    def _safely(self, claimed: Path, name: str, batch: _Scan) -> None:
        """One file's trouble never stops the others. A store out of reach leaves the file claimed, to be
        taken again; any other failure files it in rejected/ with a note, so nothing waits unseen."""
        try:
            self._process(claimed, name, batch)
        except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError):
            log.exception("intake.store_unavailable", file=display_name(name))
        except Exception as exc:
            log.exception("intake.file_failed", file=display_name(name))
            try:
                self._unarchive(claimed, name, batch)
                self._reject(claimed, name, ItemFileError(
                    f"系统无法保存这个文件（{type(exc).__name__}）。请检查格式，或把本说明转给系统管理员。",
                    f"The file could not be stored ({type(exc).__name__}: {shown(str(exc), 300)}). Check its "
                    "format, or pass this note to the administrator."), self.clock.now(), batch)
            except Exception:
                log.exception("intake.reject_failed", file=display_name(name))

    def _process(self, claimed: Path, name: str, batch: _Scan) -> None:
        now = self.clock.now()
        try:
            data = read_claimed(claimed)
        except Refused as exc:
            self._reject(claimed, name, ItemFileError(
                f"这是一个{exc}，不是文件本身。出于安全，收件箱只接受真实文件：请把文件本身复制进来。",
                f"This is a {exc}, not the file itself. For safety the inbox takes only real files: copy the file "
                "itself in."), now, batch)
            return
        if data is None:
            # a writer still holds the file (its writes follow the rename): hand it back, take it later
            os.replace(claimed, unique_target(self.inbox, name))
            log.info("intake.still_written", file=display_name(name))
            return
        digest = hashlib.sha256(data).hexdigest()
        config = self.config
        try:
            item = parse_item_file(display_name(name), data,
                                   categories={k: c.name for k, c in config.categories.items()},
                                   channels=set(config.channels), folder=self.inbox, elsewhere=batch.filed)
        except ItemFileError as exc:
            known = self.store.known_file(digest)
            if known is not None:  # stored already: a crash came after the commit, once its attachments had gone
                self._duplicate(claimed, name, None, known, batch)
                return
            self._reject(claimed, name, exc, now, batch)
            return
        except Exception as exc:  # a reading problem we did not foresee: still the editor gets an answer
            log.exception("intake.unreadable", file=display_name(name))
            self._reject(claimed, name, ItemFileError(
                f"系统无法读取这个文件（{type(exc).__name__}）。请检查格式，或把本说明转给系统管理员。",
                f"The file could not be read ({type(exc).__name__}: {shown(str(exc), 300)}). Check its format, or "
                "pass this note to the administrator."), now, batch)
            return
        writing = next((a for a in item.attachment_names if self.writes.state(a) == "writing"), None)
        if writing is not None:  # its attachment is still being written: take the item once that is whole
            back = unique_target(self.inbox, name)
            self._waiting[back.name] = writing
            os.replace(claimed, back)
            log.info("intake.attachment_still_written", file=display_name(name), attachment=writing)
            return
        sums = [file_sha256(p) for p in item.attachment_paths]
        # One transaction reads the item's newest revision and stores the next: links first, commit, then let go
        # of the originals (once the scan is through: another item may share an attachment); a crash at any
        # point leaves the file in .claimed until it is filed.
        newest = self.store.revision(item.item_id)
        if newest is not None and newest.file_sha256 == digest and stored_sums(newest.attachments) == sums:
            self._duplicate(claimed, name, item, (newest.item_id, newest.number), batch)
            return
        # Links first, commit, then let go of the originals (once the scan is through: another item may share an
        # attachment): a crash at any point leaves the file in .claimed until it is filed. The screen and the links
        # come before the transaction: the store's write lock is not held while Python reads the text or the disk
        # is written (the dispatcher, in the daemon's own process, waits for that lock to record its sends).
        findings = screen(config, item)
        archived = link_into(self.archive, claimed, name)
        batch.filed[name] = archived
        attachments = self._archive_attachments(item, archived, sums)
        with self.store.tx() as conn:
            state = record_revision(conn, config, self.store, self.review, item, now=now, file_name=display_name(name),
                                    digest=digest, attachments=attachments, findings=findings)[1]
        batch.done.append((claimed, _copies(item, attachments)))
        self.counts["accepted"] += 1
        self.on_file("accepted")
        log.info("intake.accepted", file=display_name(name), item_id=item.item_id, state=state.value)
        if state == RevisionState.APPROVED:
            self.on_approved()

    def _unarchive(self, claimed: Path, name: str, batch: _Scan) -> None:
        """Take back the archive's link a failed try made, so a file refused after all is not also archived."""
        linked = batch.filed.pop(name, None)
        if linked is None or linked.parent != self.archive or not os.path.lexists(claimed):
            return
        if os.path.lexists(linked) and os.path.samefile(claimed, linked):
            shutil.rmtree(linked.parent / f"{linked.name}.files", ignore_errors=True)  # links of inbox originals
            linked.unlink()

    def _duplicate(self, claimed: Path, name: str, item: ParsedItem | None, known: tuple[str, int],
                   batch: _Scan) -> None:
        """Read before (a crash after the commit, or the same item and attachments dropped twice): file it,
        change nothing."""
        self.counts["duplicate"] += 1
        self.on_file("duplicate")
        archived = link_into(self.archive, claimed, name)
        batch.filed[name] = archived
        copies: list[tuple[Path, Path]] = []
        if item is not None:  # after a crash its attachments may still wait in the inbox: file them beside it
            copies = _copies(item, self._archive_attachments(item, archived, None))
        batch.done.append((claimed, copies))
        log.info("intake.duplicate", file=display_name(name), item_id=known[0], revision=known[1])

    def _archive_attachments(self, item: ParsedItem, archived: Path,
                             sums: list[str] | None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not item.attachment_paths:
            return out
        folder = archived.parent / (archived.name + ".files")
        folder.mkdir(exist_ok=True)
        for i, (rel, src) in enumerate(zip(item.attachment_names, item.attachment_paths, strict=True)):
            dst = folder / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            # linked (or, without hard links, copied) already by a try that crashed
            if not (dst.exists() and (os.path.samefile(src, dst) or filecmp.cmp(src, dst, shallow=False))):
                link_or_copy(src, dst)
            entry = {"name": Path(rel).as_posix(), "path": str(dst), "size": dst.stat().st_size}
            if sums is not None:
                entry["sha256"] = sums[i]
            out.append(entry)
        return out

    def _let_go(self, batch: _Scan) -> None:
        """The scan's items are stored and linked into the archive: the originals can go. An attachment
        goes only while it is still the very file that was archived (an editor may have dropped a new one),
        and one that is itself an item file stays to be read as an item."""
        for claimed, copies in batch.done:
            for original, copy in copies:
                try:
                    if not is_candidate(original) and original.is_relative_to(self.inbox.resolve()) and same_file(original, copy):
                        original.unlink()
                except FileNotFoundError:  # another item's scan, sharing it, let go of it first
                    pass
                except OSError:
                    log.warning("intake.attachment_left", file=display_name(original.name))
            claimed.unlink(missing_ok=True)

    def _reject(self, claimed: Path, name: str, exc: ItemFileError, now: datetime, batch: _Scan) -> None:
        """The note first, then the file beside it: a rejected file never lies there without its note."""
        target = unique_target(self.rejected, name)
        local = now.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")
        shown_name = display_name(name)
        note = safe_note(
            f"文件：{shown_name}\n时间：{local}\n\n问题：{exc.zh}\n\n"
            f"改正后请把文件重新放入 inbox 文件夹（原文件已原样保存在本文件旁）。\n\n"
            f"---\nFile: {shown_name}\nProblem: {exc.en}\n\n"
            f"Fix it and drop the file into the inbox again (the original is kept unchanged beside this note).\n",
            NOTE_MAX)
        tmp = self.rejected / f".{hashlib.sha256(os.fsencode(target.name)).hexdigest()[:16]}.note.tmp"
        tmp.write_text(note, encoding="utf-8")
        os.replace(tmp, f"{target}{NOTE_SUFFIX}")
        os.replace(claimed, target)
        batch.filed[name] = target
        self.counts["rejected"] += 1
        self.on_file("rejected")
        log.warning("intake.rejected", file=shown_name, reason=shown(exc.en, 500))
        try:
            with self.store.tx() as conn:
                self.store.audit(conn, now, "daemon", "reject_file", file=shown_name, reason=shown(exc.en, 2000))
        except Exception:
            log.exception("intake.reject_audit_failed", file=shown_name)


def _copies(item: ParsedItem, attachments: list[dict[str, Any]]) -> list[tuple[Path, Path]]:
    return [(src, Path(att["path"])) for src, att in zip(item.attachment_paths, attachments, strict=True)]


def screen(config: Config, item: ParsedItem) -> list[dict[str, Any]]:
    """The confidentiality screen's findings on an item (none for a retraction): its fields and its attachments'
    names as they will be stored."""
    f = item.front
    return [] if f.retract else findings_for(
        config, f.title, item.body, summary=f.summary, source=f.source, author=f.author, tags=f.tags,
        attachments=[Path(rel).as_posix() for rel in item.attachment_names])


def record_revision(conn: Connection, config: Config, store: Store, review: Review, item: ParsedItem, *,
                    now: datetime, file_name: str | None, digest: str | None, attachments: list[dict[str, Any]],
                    actor: str = "queue", findings: list[dict[str, Any]] | None = None) -> tuple[int, RevisionState]:
    """Store a parsed item as its next revision, screened, audited and moved as far as review lets it go:
    the one way into the store for an item file and a district feed's entry alike. Returns the revision
    number and its state. `actor` is the door it came through (the queue folder, `source:KEY`); `findings`, the
    screen's (`screen`), when the caller screened the item before its transaction."""
    f = item.front
    if findings is None:
        findings = screen(config, item)
    fields: dict[str, Any] = {
        "item_id": item.item_id, "title": f.title, "category": f.category, "body": item.body,
        "summary": f.summary, "doc_date": f.date, "source": f.source, "author": f.author,
        "publish_at": f.publish_at, "channels": f.channels, "attachments": attachments,
        "retract": f.retract, "file_name": file_name, "file_sha256": digest, "state": RevisionState.REVIEW,
        "findings": findings,
    }
    rid, number = store.add_revision(conn, fields, now)
    # neither the queue folder nor a feed authenticates anyone: the `author` is a claim, kept as a detail
    store.audit(conn, now, actor, "ingest", item_id=item.item_id, revision=number, author=f.author,
                file=file_name, sha256=digest, findings=len(findings))
    return number, review.settle(conn, rid, added=_as_stored(fields, rid, number, now))


def _as_stored(fields: dict[str, Any], rid: int, number: int, now: datetime) -> StoredRevision:
    """The revision just inserted, as the store would read it back (times in UTC), without reading it."""
    publish_at = fields["publish_at"]
    return StoredRevision.from_row({
        **fields, "id": rid, "number": number, "created_at": now.astimezone(UTC), "approved_at": None,
        "publish_at": None if publish_at is None else publish_at.astimezone(UTC)})
