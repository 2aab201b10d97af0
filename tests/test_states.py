"""The state machines in the store: one guarded method per transition, the CHECK constraints, and the
schema's predicates built from the enums, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from publisher.model import TRANSITIONS, DeliveryState, IllegalTransition, RevisionState
from publisher.store import schema
from publisher.store.db import Store

S = DeliveryState
NOW = datetime(2015, 3, 18, 1, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else f"sqlite:///{tmp_path / 's.db'}"
    opened = Store.open(url)
    yield opened
    opened.close()


def _revision(store: Store, conn: Connection, item_id: str = "it-1", state: str = "review") -> int:
    rid, _ = store.add_revision(conn, {
        "item_id": item_id, "title": "标题", "category": "news", "body": "正文", "summary": None,
        "doc_date": None, "source": None, "author": None, "publish_at": None, "channels": None,
        "attachments": [], "retract": False, "findings": [], "state": state, "file_name": None,
        "file_sha256": None}, NOW)
    return rid


def _delivery(store: Store, state: DeliveryState, *, channel: str = "bureau_site") -> int:
    """One row of item it-1 on `channel`, put straight into `state`."""
    with store.tx() as conn:
        rid = _revision(store, conn, state="approved")
        store.add_deliveries(conn, [{"revision_id": rid, "item_id": "it-1", "channel": channel, "state": state,
                                     "retract": False, "due_at": NOW, "next_attempt_at": NOW,
                                     "lease_owner": "node-a", "lease_until": LATER}], NOW)
        return int(conn.execute(sa.select(sa.func.max(schema.deliveries.c.id))).scalar_one())


MOVES: list[tuple[str, DeliveryState, DeliveryState, Callable[[Store, Connection, int], Any], dict[str, Any]]] = [
    ("mark_sent", S.SENDING, S.SENT,
     lambda s, c, i: s.mark_sent(c, i, LATER, remote_id="42", url="http://x/42", verify_at=LATER),
     {"remote_id": "42", "url": "http://x/42", "sent_at": LATER, "next_attempt_at": LATER}),
    ("retraction_done", S.SENDING, S.LIVE,
     lambda s, c, i: s.retraction_done(c, i, LATER, remote_id="42", url=None), {"live_at": LATER}),
    ("mark_live", S.SENT, S.LIVE, lambda s, c, i: s.mark_live(c, i, LATER), {"live_at": LATER, "last_error": None}),
    ("not_live_yet", S.SENT, S.SENT,
     lambda s, c, i: s.not_live_yet(c, i, LATER, checks=2, next_check=LATER + timedelta(seconds=20), error="not yet"),
     {"verify_attempts": 2, "last_error": "not yet", "next_attempt_at": LATER + timedelta(seconds=20)}),
    ("resend_unseen", S.SENT, S.PENDING, lambda s, c, i: s.resend_unseen(c, i, LATER, error="unseen"),
     {"verify_attempts": 0, "next_attempt_at": LATER, "last_error": "unseen"}),
    ("schedule_retry", S.SENDING, S.RETRYING,
     lambda s, c, i: s.schedule_retry(c, i, LATER, at=LATER + timedelta(minutes=1), error="HTTP 503"),
     {"next_attempt_at": LATER + timedelta(minutes=1), "last_error": "HTTP 503"}),
    ("fail", S.SENDING, S.FAILED, lambda s, c, i: s.fail(c, i, LATER, error="HTTP 401"), {"last_error": "HTTP 401"}),
    ("fail a read-back", S.SENT, S.FAILED, lambda s, c, i: s.fail(c, i, LATER, error="defect"), {}),
    ("to_manual", S.SENDING, S.MANUAL, lambda s, c, i: s.to_manual(c, i, LATER, task="edit by hand"),
     {"last_error": "edit by hand"}),
    ("back_to_pending", S.SENDING, S.PENDING, lambda s, c, i: s.back_to_pending(c, i, LATER),
     {"next_attempt_at": LATER}),
    ("release_waiting", S.WAITING, S.PENDING,
     lambda s, c, i: s.release_waiting(c, "it-1", ["bureau_site"], LATER), {"next_attempt_at": LATER}),
    ("fail_waiting", S.WAITING, S.FAILED,
     lambda s, c, i: s.fail_waiting(c, "it-1", ["bureau_site"], LATER, "no link"), {"last_error": "no link"}),
    ("supersede_active", S.RETRYING, S.SUPERSEDED,
     lambda s, c, i: s.supersede_active(c, "it-1", ["bureau_site"], LATER), {}),
    ("requeue a failed row", S.FAILED, S.PENDING, lambda s, c, i: s.requeue(c, "it-1", None, LATER),
     {"attempts": 1, "retry_from": LATER, "last_error": None}),
    ("requeue an unseen row", S.SENT, S.PENDING,
     lambda s, c, i: s.requeue(c, "it-1", "bureau_site", LATER, resend_sent=["bureau_site"]), {"attempts": 1}),
]


@pytest.mark.parametrize(("frm", "to", "move", "expect"), [m[1:] for m in MOVES], ids=[m[0] for m in MOVES])
def test_each_transition_moves_the_row_and_ends_its_lease(store: Store, frm: DeliveryState, to: DeliveryState,
                                                          move: Callable[[Store, Connection, int], Any],
                                                          expect: dict[str, Any]) -> None:
    """Each store transition takes a row from an allowed state to its target, sets its fields and clears the lease."""
    assert to in TRANSITIONS[frm]
    did = _delivery(store, frm)
    with store.tx() as conn:
        move(store, conn, did)
    row = store.delivery(did)
    assert row is not None and row.state is to
    assert {k: getattr(row, k) for k in expect} == expect
    if to is not S.SUPERSEDED:
        assert (row.lease_owner, row.lease_until, row.updated_at) == (None, None, LATER)


def test_a_late_outcome_for_a_row_that_moved_on_raises_and_changes_nothing(store: Store) -> None:
    """A row a person already put back in the queue cannot be marked sent by a stale worker."""
    did = _delivery(store, S.PENDING)
    with pytest.raises(IllegalTransition, match=rf"deliveries row {did} is pending: cannot mark sent \(→ sent\)"), \
            store.tx() as conn:
        store.mark_sent(conn, did, LATER, remote_id="42", url=None, verify_at=LATER)
    row = store.delivery(did)
    assert row is not None and (row.state, row.remote_id) == (S.PENDING, None)


def test_a_live_row_cannot_be_failed_and_an_unknown_row_is_named(store: Store) -> None:
    """live is final: failing it raises with its state; a missing id raises saying it does not exist."""
    did = _delivery(store, S.LIVE)
    with pytest.raises(IllegalTransition) as caught, store.tx() as conn:
        store.fail(conn, did, LATER, error="late")
    assert (caught.value.row_id, caught.value.current, caught.value.to) == (did, "live", "failed")
    with pytest.raises(IllegalTransition, match="deliveries row 999 does not exist: cannot send again"), \
            store.tx() as conn:
        store.back_to_pending(conn, 999, LATER)


def test_a_claimed_row_is_never_superseded(store: Store) -> None:
    """A newer revision supersedes rows not yet sent, but leaves a row in flight to finish."""
    did = _delivery(store, S.SENDING)
    with store.tx() as conn:
        assert store.supersede_active(conn, "it-1", ["bureau_site"], LATER) == 0
    row = store.delivery(did)
    assert row is not None and row.state is S.SENDING


def test_revision_moves_are_guarded(store: Store) -> None:
    """A revision in review may be blocked and approved; an approved one cannot be rejected any more."""
    with store.tx() as conn:
        rid = _revision(store, conn)
        store.block_revision(conn, rid)
        store.await_review(conn, rid)
        store.approve_revision(conn, rid, LATER)
    rev = store.revision("it-1")
    assert rev is not None and (rev.state, rev.approved_at) == ("approved", LATER)
    with pytest.raises(IllegalTransition, match=rf"revisions row {rid} is approved: cannot reject"), \
            store.tx() as conn:
        store.reject_revision(conn, rid)


def test_the_database_refuses_a_state_outside_the_enums(store: Store) -> None:
    """The CHECK constraints keep deliveries.state, revisions.state and approvals.action to the known values."""
    did = _delivery(store, S.PENDING)
    for statement in (f"UPDATE deliveries SET state = 'sending-ish' WHERE id = {did}",
                      "UPDATE revisions SET state = 'maybe'",
                      "INSERT INTO approvals (revision_id, action, \"by\", at) SELECT id, 'shrug', 'x', created_at "
                      "FROM revisions"):
        with pytest.raises(sa.exc.IntegrityError), store.tx() as conn:
            conn.exec_driver_sql(statement)


def test_the_partial_index_predicates_are_built_from_the_enums_and_unchanged() -> None:
    """The predicates the planners match verbatim read exactly as the indexes were created (0002, 0003)."""
    assert schema.OPEN_ROWS_SQL == "state NOT IN ('live', 'superseded')"
    assert schema.IN_REVIEW_SQL == "state IN ('review', 'blocked')"
    assert schema.LIVE_ROWS_SQL == "state = 'live'"


def test_the_migrated_database_declares_the_same_checks_as_the_schema(store: Store) -> None:
    """The CHECK constraints migration 0006 made carry the names and values schema.py declares."""
    declared = {c.name: str(c.sqltext) for t in schema.metadata.tables.values() for c in t.constraints
                if isinstance(c, sa.CheckConstraint)}
    assert set(declared) == {"ck_deliveries_state", "ck_revisions_state", "ck_approvals_action"}
    with store.read() as conn:
        if store.engine.dialect.name == "sqlite":
            text = " ".join(conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table'").scalars())
            for name, predicate in declared.items():
                assert f"CONSTRAINT {name} CHECK ({predicate})" in text
        else:
            found = {name: text for name, text in conn.exec_driver_sql(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'c'").all()
                if name.startswith("ck_")}  # not the information schema's own domains
            assert set(found) == set(declared)
            for name in declared:  # PostgreSQL shows IN (...) as = ANY (ARRAY[...]): compare the values
                values = {v.value for v in (DeliveryState if "deliveries" in name else RevisionState)}
                if name == "ck_approvals_action":
                    values = {"approve", "reject", "override"}
                assert all(f"'{v}'" in found[name] for v in values), found[name]


def test_an_outcome_landing_after_a_newer_row_yields_to_it(store: Store) -> None:
    """A row in flight when a newer row of its item and channel was made (an edit, a retraction) ends superseded
    whatever its outcome, in the same statement; a sent one keeps its sent_at, for the rate limit."""
    moves: dict[str, Callable[[Connection, int], DeliveryState]] = {
        "mark_sent": lambda c, i: store.mark_sent(c, i, LATER, remote_id="42", url=None, verify_at=LATER),
        "schedule_retry": lambda c, i: store.schedule_retry(c, i, LATER, at=LATER, error="HTTP 503"),
        "fail": lambda c, i: store.fail(c, i, LATER, error="HTTP 401"),
        "back_to_pending": lambda c, i: store.back_to_pending(c, i, LATER),
    }
    for outcome, move in moves.items():
        older = _delivery(store, S.SENDING, channel=outcome)
        _delivery(store, S.PENDING, channel=outcome)  # the newer row, made while the older one was in flight
        with store.tx() as conn:
            assert move(conn, older) is S.SUPERSEDED, outcome
        row = store.delivery(older)
        assert row is not None and row.state is S.SUPERSEDED and row.lease_owner is None
        assert (row.sent_at is not None) == (outcome == "mark_sent")
