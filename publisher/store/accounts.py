"""The store's side of reviewer accounts: the accounts, their web sessions, and the notices reviewers
were sent (digests, escalations). SQL only; hashing and the rules live in publisher/review/accounts.py."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from publisher.store.engine import StoreBase
from publisher.store.schema import accounts, review_notices, revisions, sessions

# Read once per revision that intake settles: built once, with bound parameters.
_EARLIER_CATEGORIES = (sa.select(revisions.c.category).where(revisions.c.item_id == sa.bindparam("e_item"))
                       .where(revisions.c.number < sa.bindparam("e_before")).where(revisions.c.retract.is_(False))
                       .distinct())


class AccountStore(StoreBase):
    # --- accounts ------------------------------------------------------------------------------

    def account_row(self, name: str, conn: Connection | None = None) -> dict[str, Any] | None:
        q = sa.select(accounts).where(accounts.c.name == name)
        if conn is not None:
            row = conn.execute(q).mappings().first()
        else:
            with self.read() as c:
                row = c.execute(q).mappings().first()
        return None if row is None else dict(row)

    def account_rows(self) -> list[dict[str, Any]]:
        with self.read() as conn:
            return [dict(r) for r in conn.execute(sa.select(accounts).order_by(accounts.c.name)).mappings()]

    def account_by_token_hash(self, token_hash: str) -> dict[str, Any] | None:
        with self.read() as conn:
            row = conn.execute(sa.select(accounts).where(accounts.c.token_hash == token_hash)).mappings().first()
        return None if row is None else dict(row)

    @staticmethod
    def insert_account(conn: Connection, values: dict[str, Any]) -> bool:
        """False when an account of that name exists already."""
        if conn.execute(sa.select(accounts.c.name).where(accounts.c.name == values["name"])).first() is not None:
            return False
        conn.execute(accounts.insert().values(**values))
        return True

    @staticmethod
    def update_account(conn: Connection, name: str, **values: Any) -> bool:
        """False when there is no such account."""
        return conn.execute(accounts.update().where(accounts.c.name == name).values(**values)).rowcount == 1

    # --- web sessions --------------------------------------------------------------------------

    @staticmethod
    def insert_session(conn: Connection, id_hash: str, account: str, remote: str | None, created_at: datetime,
                       expires_at: datetime) -> None:
        conn.execute(sessions.insert().values(id_hash=id_hash, account=account, remote=remote,
                                              created_at=created_at, expires_at=expires_at))

    def session_row(self, id_hash: str) -> dict[str, Any] | None:
        with self.read() as conn:
            row = conn.execute(sa.select(sessions).where(sessions.c.id_hash == id_hash)).mappings().first()
        return None if row is None else dict(row)

    @staticmethod
    def close_sessions(conn: Connection, at: datetime, *, id_hash: str | None = None,
                       account: str | None = None) -> int:
        """Close one session (logout) or every open one of an account (disabled, new password)."""
        q = sessions.update().where(sessions.c.closed_at.is_(None))
        q = q.where(sessions.c.id_hash == id_hash) if id_hash is not None else q.where(sessions.c.account == account)
        return int(conn.execute(q.values(closed_at=at)).rowcount)

    @staticmethod
    def purge_sessions(conn: Connection, before: datetime) -> int:
        """Forget sessions that ended (expired or closed) before `before`."""
        ended = sa.or_(sessions.c.expires_at < before, sessions.c.closed_at < before)
        return int(conn.execute(sessions.delete().where(ended)).rowcount)

    # --- what reviewers were told --------------------------------------------------------------

    def noticed(self, kind: str, revision_ids: Iterable[int]) -> set[tuple[int, str]]:
        """(revision id, role) pairs of `kind` already sent for these revisions."""
        ids = sorted(set(revision_ids))
        if not ids:
            return set()
        with self.read() as conn:
            rows = conn.execute(sa.select(review_notices.c.revision_id, review_notices.c.role)
                                .where(review_notices.c.kind == kind).where(review_notices.c.revision_id.in_(ids)))
            return {(int(r[0]), str(r[1])) for r in rows}

    @staticmethod
    def add_notices(conn: Connection, kind: str, pairs: Iterable[tuple[int, str]], at: datetime) -> None:
        rows = [{"revision_id": rid, "role": role, "kind": kind, "at": at} for rid, role in pairs]
        if rows:
            conn.execute(review_notices.insert(), rows)

    @staticmethod
    def earlier_categories(conn: Connection, item_id: str, before: int) -> list[str]:
        """The categories of an item's revisions before number `before` (retractions left out)."""
        rows = conn.execute(_EARLIER_CATEGORIES, {"e_item": item_id, "e_before": before})
        return [str(r[0]) for r in rows]
