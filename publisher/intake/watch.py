"""The inbox watcher: what the kernel says about each file, and a scan when a file is complete.

On Linux, inotify reports `IN_CLOSE_WRITE` when a writer closes a file and `IN_MOVED_TO` when a file
is renamed in: only then is the file whole. A file written in place is `writing` from its first
`IN_CREATE` or `IN_MODIFY` until its close, and the scan leaves it alone however long the writer
pauses; a file renamed in is `closed` at once (the fast path). A file `writing` with no event for
`WRITING_EXPIRES` (made by a hard link, which no close follows) falls back to the size-stable wait.
Files the watcher has heard nothing of (there before
it started, or on a network mount where the kernel sees no remote write) fall back to the scan's
size-stable wait (`queue.settle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal

import structlog

log = structlog.get_logger()

WRITING_EXPIRES = 120.0  # seconds
QUIET = 0.003  # seconds without an event before the gathered ones are scanned (a multi-file copy lands in one scan)
LONGEST = 0.1  # ... but never longer than this after the first


class Writes:
    """The kernel's word on each inbox file since the watch began: `writing`, `closed`, or nothing."""

    def __init__(self) -> None:
        self.active = False  # True while inotify watches the inbox
        self._writing: dict[str, float] = {}  # name -> monotonic time of its last event
        self._closed: set[str] = set()

    def state(self, name: str) -> Literal["writing", "closed"] | None:
        if not self.active:
            return None
        last = self._writing.get(name)
        if last is not None:
            return "writing" if time.monotonic() - last < WRITING_EXPIRES else None
        return "closed" if name in self._closed else None

    def modified(self, name: str) -> None:
        self._closed.discard(name)
        self._writing[name] = time.monotonic()

    def closed(self, name: str) -> None:
        self._writing.pop(name, None)
        self._closed.add(name)

    def gone(self, name: str) -> None:
        self._writing.pop(name, None)
        self._closed.discard(name)

    def forget_all(self) -> None:
        """The kernel's queue overflowed: nothing is known any more; every file falls back to the settle."""
        self._writing.clear()
        self._closed.clear()


async def watch_inbox(inbox: Path, writes: Writes, scan: Callable[[], Awaitable[int]], stop: asyncio.Event) -> None:
    """Follow the inbox's inotify events into `writes`, and scan once a file is complete."""
    from asyncinotify import Inotify, Mask

    mask = (Mask.CREATE | Mask.MODIFY | Mask.CLOSE_WRITE | Mask.MOVED_TO | Mask.MOVED_FROM | Mask.DELETE | Mask.ONLYDIR
            | Mask.DONT_FOLLOW)
    try:
        inotify = Inotify()
        inotify.add_watch(inbox, mask)
    except OSError as exc:  # no inotify here, or the system's watch limit reached
        log.error("intake.watch_unavailable", inbox=str(inbox), error=str(exc))
        return
    events: asyncio.Queue[tuple[Mask, str | None]] = asyncio.Queue()

    async def pump() -> None:  # asyncinotify's get() may drop a read batch if cancelled: a task owns it
        async for event in inotify:
            await events.put((event.mask, None if event.name is None else str(event.name)))

    reader = asyncio.create_task(pump(), name="inotify")
    stopping = asyncio.create_task(stop.wait())
    writes.active = True
    log.info("intake.watching", inbox=str(inbox))
    loop = asyncio.get_running_loop()
    try:
        while not stop.is_set():
            first = asyncio.create_task(events.get())
            await asyncio.wait({first, stopping, reader}, return_when=asyncio.FIRST_COMPLETED)
            if not first.done():
                first.cancel()
                if reader.done():
                    reader.result()  # the inotify handle failed: say why (the daemon reports the watcher stopped)
                break
            due = _note(writes, inbox, *first.result())
            deadline = loop.time() + LONGEST
            while (left := deadline - loop.time()) > 0:
                try:
                    due |= _note(writes, inbox, *await asyncio.wait_for(events.get(), min(QUIET, left)))
                except TimeoutError:
                    break
            if due:
                try:
                    await scan()
                except Exception:
                    log.exception("intake.scan_failed")
    finally:
        writes.active = False
        writes.forget_all()
        for task in (reader, stopping):
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(reader, stopping, return_exceptions=True)
        inotify.close()


def _note(writes: Writes, inbox: Path, mask: object, name: str | None) -> bool:
    """Record one event; True when a scan may find something to take."""
    from asyncinotify import Mask

    assert isinstance(mask, Mask)
    if Mask.Q_OVERFLOW in mask:
        writes.forget_all()
        return True
    if name is None:
        return False
    if Mask.ISDIR in mask:
        return False
    if Mask.CREATE in mask and (inbox / name).is_symlink():
        writes.closed(name)  # a symlink is never written (and is refused unread)
        return True
    if Mask.CREATE in mask or Mask.MODIFY in mask:
        writes.modified(name)
        return False
    if Mask.CLOSE_WRITE in mask or Mask.MOVED_TO in mask:
        writes.closed(name)
        return True
    writes.gone(name)  # moved out (claimed) or deleted
    return False
