"""The queue folder's files: which names intake takes, where a file may go without overwriting another
(and within a file name's 255 bytes), reading a claimed file without following a symlink, hashing."""

from __future__ import annotations

import errno
import filecmp
import hashlib
import itertools
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from publisher.intake.items import MAX_FILE_BYTES, MAX_NAME_BYTES
from publisher.intake.text import shown


class Refused(Exception):
    """The claimed entry is no file intake may read (a symlink, a device); the message says which, in Chinese."""


ITEM_SUFFIXES = (".md", ".markdown")


def is_candidate(path: Path) -> bool:
    name = path.name
    return (not name.startswith((".", "~$")) and not name.endswith((".tmp", ".part", ".swp", ".error.txt"))
            and path.suffix.lower() in ITEM_SUFFIXES)


NOTE_SUFFIX = ".error.txt"
NOTE_MAX = 6000  # characters of a note: what is wrong fits in far less; a quoted value is cut long before
_ROOM = len(NOTE_SUFFIX) + len("-99999")  # what a filed name must leave room for (its note, a number)


def fitting(name: str) -> str:
    """`name`, or a shorter one that leaves room for `-N` and `.error.txt` within a file name's 255 bytes:
    the stem is cut at a character and marked with a hash of the whole name (the note keeps the name)."""
    raw = os.fsencode(name)
    if len(raw) + _ROOM <= MAX_NAME_BYTES:
        return name
    stem, suffix = os.path.splitext(raw)
    if len(suffix) > 16:
        stem, suffix = raw, b""
    mark = b"~" + hashlib.sha256(raw).hexdigest()[:8].encode()
    cut = stem[:MAX_NAME_BYTES - _ROOM - len(mark) - len(suffix)]
    return os.fsdecode(cut.decode("utf-8", "ignore").encode() if _utf8(raw) else cut) + os.fsdecode(mark + suffix)


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def display_name(name: str) -> str:
    """A file name as text: its bytes read as UTF-8, else GB18030 (a name from a Windows share), else shown."""
    raw = os.fsencode(name)
    for encoding in ("utf-8", "gb18030"):
        try:
            return shown(raw.decode(encoding), 300)
        except UnicodeDecodeError:
            continue
    return shown(raw.decode("utf-8", "backslashreplace"), 300)


def candidate_names(folder: Path, name: str) -> Iterator[Path]:
    """`folder/name`, then `name-2`, `name-3` ...: where a file may go without overwriting another."""
    stem, suffix = os.path.splitext(fitting(name))
    yield folder / f"{stem}{suffix}"
    for n in itertools.count(2):
        yield folder / f"{stem}-{n}{suffix}"


def taken(target: Path) -> bool:
    return os.path.lexists(target) or os.path.lexists(f"{target}{NOTE_SUFFIX}")


def unique_target(folder: Path, name: str) -> Path:
    """The first of `candidate_names` that nothing has: nothing is ever overwritten."""
    return next(t for t in candidate_names(folder, name) if not taken(t))


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


def link_into(folder: Path, src: Path, name: str) -> Path:
    """`src` also under `folder` (a hard link: same bytes, no copy), under a name nothing else has;
    the very link a crashed try made is found again instead of making a second one."""
    first = next(candidate_names(folder, name))
    if not os.path.lexists(f"{first}{NOTE_SUFFIX}"):  # the usual case: no note holds the name, and the link is made
        try:
            os.link(src, first)
        except OSError:  # the name is taken, or there are no hard links here: the careful way below
            pass
        else:
            return first
    for target in candidate_names(folder, name):
        if target.exists() and os.path.samefile(src, target):
            return target
        if taken(target):
            continue
        try:
            link_or_copy(src, target)
        except FileExistsError:  # another node took the name this instant
            continue
        return target
    raise AssertionError("unreachable")


def read_claimed(path: Path) -> bytes | None:
    """The claimed file's bytes, never through a symlink; None while a writer still changes it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refused("符号链接（symbolic link）") from None
        raise
    with os.fdopen(fd, "rb") as fh:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise Refused("特殊文件（not a regular file）")
        # a byte more than it holds: a file grown since (or over the cap) shows, and no 4 MB buffer for a 2 KB file
        data = fh.read(min(before.st_size, MAX_FILE_BYTES) + 1)
        after = os.fstat(fd)
    if len(data) > MAX_FILE_BYTES:
        return data  # parse_item_file explains the size cap
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or after.st_size != len(data):
        return None
    return data


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stored_sums(stored: list[dict[str, Any]]) -> list[str | None]:
    """The stored revision's attachment hashes (older revisions recorded none: hash the archived copy)."""
    out: list[str | None] = []
    for att in stored:
        if att.get("sha256"):
            out.append(str(att["sha256"]))
            continue
        try:
            out.append(file_sha256(Path(att["path"])))
        except (OSError, KeyError, TypeError):
            out.append(None)
    return out


def same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def sig(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if not path.is_file() or path.is_symlink():
        return None
    return (st.st_size, st.st_mtime_ns)
