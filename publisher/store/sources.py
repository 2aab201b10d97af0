"""The store's district-source side: each feed's polling state, and which item each feed entry became.

The entry's row commits in the same transaction as the revision it made (publisher/intake/sources.py),
so that after a crash an entry is either imported with its row or not at all: never twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from publisher.store.engine import StoreBase
from publisher.store.schema import source_entries, source_state

# Read once per revision that review settles (publisher/review/chain.py): built once, with a bound parameter.
_ITEM_SOURCE = sa.select(source_entries.c.source).where(source_entries.c.item_id == sa.bindparam("s_item")).limit(1)


@dataclass(frozen=True)
class SourceState:
    """What the polls of one feed found last (a feed never polled has no row: `SourceState.never`)."""

    source: str
    etag: str | None = None
    last_modified: str | None = None
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error_at: datetime | None = None
    last_error: str | None = None
    entries: int = 0
    last_import_at: datetime | None = None
    created_at: datetime | None = None  # its first poll
    imported: int = 0  # items made from its entries, ever

    @classmethod
    def from_row(cls, row: Any, imported: int = 0) -> SourceState:
        return cls(**{k: row[k] for k in ("source", "etag", "last_modified", "last_attempt_at", "last_success_at",
                                          "last_error_at", "last_error", "entries", "last_import_at", "created_at")},
                   imported=imported)


@dataclass(frozen=True)
class KnownEntry:
    item_id: str
    content_sha256: str
    revision: int


class SourceStore(StoreBase):
    def source_states(self, conn: Connection | None = None) -> dict[str, SourceState]:
        """Every polled source's state, with the number of items its entries made."""
        counts = (sa.select(source_entries.c.source, sa.func.count()).group_by(source_entries.c.source))
        if conn is None:
            with self.read() as c:
                return self.source_states(c)
        imported: dict[str, int] = {row[0]: row[1] for row in conn.execute(counts)}
        return {r["source"]: SourceState.from_row(r, imported.get(r["source"], 0))
                for r in conn.execute(sa.select(source_state)).mappings()}

    def source_state(self, source: str) -> SourceState:
        return self.source_states().get(source) or SourceState(source=source)

    def record_poll(self, source: str, now: datetime, *, error: str | None = None, entries: int | None = None,
                    etag: str | None = None, last_modified: str | None = None, imported: bool = False,
                    warning: str | None = None) -> None:
        """One poll's outcome: a good one (error None) keeps the feed's validators and clears the error (or
        notes a `warning`: a malformed feed read anyway); a failed one keeps the last good state and says
        what went wrong."""
        values: dict[str, Any] = {"last_attempt_at": now}
        if error is None:
            values.update(last_success_at=now, last_error=warning, last_error_at=now if warning else None)
            if entries is not None:  # a 304 leaves the count and the validators as they were
                values.update(entries=entries, etag=etag, last_modified=last_modified)
        else:
            values.update(last_error=error, last_error_at=now)
        if imported:
            values["last_import_at"] = now
        with self.tx() as conn:
            done = conn.execute(source_state.update().where(source_state.c.source == source).values(**values))
            if done.rowcount == 0:
                conn.execute(source_state.insert().values(source=source, created_at=now, **{"entries": 0, **values}))

    @staticmethod
    def known_entry(conn: Connection, source: str, key_sha256: str) -> KnownEntry | None:
        row = conn.execute(sa.select(source_entries.c.item_id, source_entries.c.content_sha256,
                                     source_entries.c.revision)
                           .where(source_entries.c.source == source)
                           .where(source_entries.c.key_sha256 == key_sha256)).first()
        return None if row is None else KnownEntry(row[0], row[1], row[2])

    @staticmethod
    def remember_entry(conn: Connection, now: datetime, *, source: str, key_sha256: str, entry_key: str,
                       item_id: str, link: str | None, content_sha256: str, revision: int) -> None:
        """The entry's item (and the content it was made from), in the transaction that stored the revision."""
        values = {"item_id": item_id, "link": link, "content_sha256": content_sha256, "revision": revision,
                  "updated_at": now}
        done = conn.execute(source_entries.update().where(source_entries.c.source == source)
                            .where(source_entries.c.key_sha256 == key_sha256).values(**values))
        if done.rowcount == 0:
            conn.execute(source_entries.insert().values(source=source, key_sha256=key_sha256, entry_key=entry_key,
                                                        first_seen_at=now, **values))

    def item_source(self, item_id: str, conn: Connection | None = None) -> str | None:
        """The configured source whose feed made this item, if one did."""
        if conn is not None:
            return conn.execute(_ITEM_SOURCE, {"s_item": item_id}).scalar()
        with self.read() as c:
            return c.execute(_ITEM_SOURCE, {"s_item": item_id}).scalar()

    def entry_link(self, item_id: str) -> str | None:
        """The link of the feed entry an item was made from (the district's own page)."""
        with self.read() as conn:
            return conn.execute(sa.select(source_entries.c.link).where(source_entries.c.item_id == item_id)
                                .limit(1)).scalar()
