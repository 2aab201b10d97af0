"""The provincial feed: an Atom 1.0 feed (RFC 4287) in a file, with tombstones and a WebSub ping.

The feed file (channels/atom_file.py) is the adapter's whole state: every call reads it, changes one entry and writes it
back atomically, so a crash leaves either the old or the new feed. Entry ids are `tag:` URIs
(RFC 4151) made from the feed id and the item id, so they never change across revisions; a
retraction leaves an RFC 6721 tombstone that the collector understands as "delete this entry".
The daemon's web server (publisher/app/web/app.py `feed_response`) serves the file with ETag, Last-Modified and 304.
"""

from __future__ import annotations

import asyncio
import html
import re
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import structlog
from pydantic import Field, field_validator, model_validator

from channels.atom_file import (
    Entry,
    FeedState,
    check_xml_text,
    read_feed,
    render_feed,
    write_atomically,
)
from channels.base import ChannelOptions, PermanentError, Receipt, TransientError
from channels.http import HttpChannel
from channels.render import render_html
from publisher.model import Revision

log = structlog.get_logger()

_TAG_URI = re.compile(r"^tag:[^,\s]+,\d{4}(-\d{2}(-\d{2})?)?:\S*$")  # RFC 4151 taggingEntity ":" specific

# One lock per feed file and event loop: asyncio locks must not cross loops (tests run one per test).
_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Path, asyncio.Lock]] = weakref.WeakKeyDictionary()


_PENDING: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Path, list[Any]]] = weakref.WeakKeyDictionary()


def _lock_for(path: Path) -> asyncio.Lock:
    locks = _LOCKS.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(path, asyncio.Lock())


class AtomFeed(HttpChannel):
    """Writes the provincial Atom feed and pings its WebSub hub."""

    type_name = "atom_feed"
    default_rate_limit = None  # our own file: no platform limit
    url_option = "verify_feed or public_url"

    class Options(ChannelOptions):
        path: Path
        feed_id: str
        title: str | None = None
        author: str = "publisher"
        public_url: str | None = None
        websub_hub: str | None = None
        max_entries: int = Field(default=100, ge=1)
        entry_base: str | None = None
        verify_feed: str | None = None

        @field_validator("feed_id")
        @classmethod
        def _tag_uri(cls, value: str) -> str:
            if not _TAG_URI.match(value):
                raise ValueError("feed_id must be a tag: URI (RFC 4151), e.g. tag:bureau.example,2015:provincial")
            return value

        @model_validator(mode="after")
        def _hub_needs_url(self) -> AtomFeed.Options:
            if self.websub_hub and not self.public_url:
                raise ValueError("websub_hub needs public_url: the hub is told which URL to fetch")
            return self

    options: Options

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._index: tuple[Any, set[Any]] | None = None  # the last parsed feed and its ids and links

    def entry_id(self, item_id: str) -> str:
        """Stable across revisions; the item id is percent-encoded so that the tag stays unambiguous."""
        return f"{self.options.feed_id}:{quote(item_id, safe='')}"

    def _link(self, rev: Revision) -> str | None:
        if rev.link:
            return rev.link
        base = self.options.entry_base
        if not base:
            return None
        if "{item_id}" in base:
            return base.replace("{item_id}", quote(rev.item_id, safe=""))
        return f"{base.rstrip('/')}/{quote(rev.item_id, safe='')}"

    def _receipt(self, entry: Entry) -> Receipt:
        return Receipt(remote_id=entry.id, url=entry.link or self.options.public_url)

    # --- the contract ------------------------------------------------------------------------

    async def publish(self, rev: Revision) -> Receipt:
        return await self._put(rev)

    async def update(self, rev: Revision, receipt: Receipt) -> Receipt:
        return await self._put(rev)

    async def retract(self, receipt: Receipt) -> None:
        when = self.clock.now()

        def bury(state: FeedState) -> bool:
            if receipt.remote_id in state.tombstones and receipt.remote_id not in state.entries:
                return False
            state.entries.pop(receipt.remote_id, None)
            state.tombstones[receipt.remote_id] = when
            return True

        if await self._change(bury):
            log.info("atom_feed.entry_retracted", channel=self.name, entry_id=receipt.remote_id)
        await self._ping()

    async def find(self, rev: Revision) -> Receipt | None:
        state = await asyncio.to_thread(read_feed, self.options.path)
        entry = state.entries.get(self.entry_id(rev.item_id))
        return self._receipt(entry) if entry else None

    async def verify(self, receipt: Receipt) -> bool:
        source = self.options.verify_feed or self.options.public_url
        if source is None:
            state = await asyncio.to_thread(read_feed, self.options.path)
            return receipt.remote_id in state.entries
        parsed = await self.read_feed(source, what="read the feed to verify")
        if self._index is None or self._index[0] is not parsed:  # a 304 hands back the same parse: index once
            self._index = (parsed, {e.get("id") for e in parsed.entries} | {e.get("link") for e in parsed.entries})
        by_link = receipt.url if receipt.url and receipt.url != self.options.public_url else None
        return receipt.remote_id in self._index[1] or (by_link is not None and by_link in self._index[1])

    # --- the file ----------------------------------------------------------------------------

    async def _put(self, rev: Revision) -> Receipt:
        entry_id = self.entry_id(rev.item_id)
        body = render_html(rev.body) or f"<p>{html.escape(rev.short_summary)}</p>"
        written = self.clock.now()  # `updated`: when this revision entered the feed, so collectors that
        # remember the newest `updated` they saw still take an entry that waited long in review
        result: list[Entry] = []

        def put(state: FeedState) -> bool:
            old = state.entries.get(entry_id)
            if old is not None and old.revision is not None and old.revision > rev.revision:
                result.append(old)  # a late retry of an older revision must not undo a newer one
                return False
            entry = Entry(
                id=entry_id, title=rev.title, updated=written,
                published=old.published if old else written, content=body, summary=rev.short_summary,
                link=self._link(rev), author=rev.author,
                category=(rev.category, rev.category_name or None) if rev.category else None,
                revision=rev.revision,
            )
            check_xml_text(entry)  # refused alone: the other items of this rewrite go on
            # first in order: the file keeps the entries written last (a resend brings one back into view)
            others = {k: v for k, v in state.entries.items() if k != entry_id}
            state.entries.clear()
            state.entries.update({entry_id: entry, **others})
            state.tombstones.pop(entry_id, None)
            result.append(entry)
            return True

        changed = await self._change(put)
        log.info("atom_feed.entry_written" if changed else "atom_feed.stale_revision_skipped",
                 channel=self.name, item_id=rev.item_id, revision=rev.revision, entry_id=entry_id)
        await self._ping()
        return self._receipt(result[0])

    async def _change(self, mutate: Callable[[FeedState], bool]) -> bool:
        """Apply one change to the file; False when it changed nothing.

        Group commit: changes that arrive while the file is being rewritten are applied together
        in the next rewrite (one read, one write), and each caller returns once its change is on disk.
        """
        path = self.options.path.resolve()
        queue = _PENDING.setdefault(asyncio.get_running_loop(), {}).setdefault(path, [])
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        queue.append((mutate, done))
        async with _lock_for(path):
            if not done.done():
                batch = queue[:]
                queue.clear()

                def rewrite() -> list[bool | Exception]:
                    state = read_feed(self.options.path)
                    changed = [_apply(m, state) for m, _ in batch]
                    if any(c is True for c in changed):
                        try:
                            data = self._render(state)
                        except Exception:  # one entry the renderer cannot take: find it, write the others
                            log.exception("atom_feed.render_failed", channel=self.name, batch=len(batch))
                            state = read_feed(self.options.path)
                            changed = [self._trial(m, state) for m, _ in batch]
                            data = self._render(state)
                        if any(c is True for c in changed):
                            write_atomically(self.options.path, data)
                    return changed

                try:
                    outcome = await asyncio.to_thread(rewrite)
                except Exception as exc:  # the whole batch failed to reach the disk: every caller hears it
                    if isinstance(exc, OSError):  # a full disk, a read-only mount: retried once it is fixed
                        exc = TransientError(f"could not write the feed file {self.options.path}: "
                                             f"{exc.strerror or exc}; free disk space or fix the folder's rights")
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                else:
                    for (_, fut), changed in zip(batch, outcome, strict=True):
                        if isinstance(changed, Exception):
                            fut.set_exception(changed)
                        else:
                            fut.set_result(changed)
        return await done

    def _render(self, state: FeedState) -> bytes:
        return render_feed(state, self.options, title=self.options.title or self.display_name, now=self.clock.now())

    def _trial(self, mutate: Callable[[FeedState], bool], state: FeedState) -> bool | Exception:
        """Apply one change to `state` only if the feed still renders with it; else its error, for its caller alone."""
        trial = state.copy()
        changed = _apply(mutate, trial)
        if changed is True:
            try:
                self._render(trial)
            except Exception as exc:
                return PermanentError(f"the feed cannot be written with this entry ({type(exc).__name__}: "
                                      f"{str(exc)[:300]})")
            state.entries, state.tombstones = trial.entries, trial.tombstones
        return changed

    # --- the network -------------------------------------------------------------------------

    async def _ping(self) -> None:
        hub, url = self.options.websub_hub, self.options.public_url
        if not hub or not url:
            return
        resp = await self.request("POST", hub, data={"hub.mode": "publish", "hub.url": url},
                                  what=f"ping the WebSub hub {hub} (the feed file is written; the ping is repeated "
                                       "on retry)")
        log.info("atom_feed.hub_pinged", channel=self.name, hub=hub, status=resp.status_code)


def _apply(mutate: Callable[[FeedState], bool], state: FeedState) -> bool | Exception:
    """One caller's change; its error stays its own (the state is left as it was)."""
    try:
        return mutate(state)
    except Exception as exc:
        return exc
