"""The store on both backends: migrations keep data, and claims never hand one row to two workers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig

import publisher.store.db
from publisher.store.db import Store, make_engine

NOW = datetime(2015, 3, 18, 1, 0, tzinfo=UTC)


def _url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _url(request, tmp_path)


def _seed(store: Store, n: int) -> None:
    """n approved items, each with one pending delivery to bureau_site."""
    with store.tx() as conn:
        for k in range(n):
            rid, _ = store.add_revision(conn, {
                "item_id": f"it-{k}", "title": "标题", "category": "news", "body": "正文", "summary": None,
                "doc_date": None, "source": None, "author": None, "publish_at": None, "channels": None,
                "attachments": [], "retract": False, "findings": [], "state": "approved",
                "file_name": f"{k}.md", "file_sha256": f"{k:064d}"}, NOW)
            store.add_deliveries(conn, [{"revision_id": rid, "item_id": f"it-{k}", "channel": "bureau_site",
                                         "state": "pending", "retract": False, "due_at": NOW,
                                         "next_attempt_at": NOW}], NOW)


def test_upgrade_from_the_first_release_keeps_every_row(url: str) -> None:
    """A store made by migration 0001 and filled, then upgraded to the newest schema, loses nothing, and
    from then on the database refuses a state the enums do not know (0006's CHECK constraints)."""
    engine = make_engine(url)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(publisher.store.__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    old = Store(engine)
    _seed(old, 3)
    with old.tx() as conn:  # one of them went live 90.5 s after it was due (0005 derives its lag)
        conn.execute(sa.update(sa.table("deliveries", sa.column("id"), sa.column("state"), sa.column("live_at")))
                     .where(sa.column("id") == 1).values(state="live", live_at=NOW + timedelta(seconds=90.5)))
    engine.dispose()
    new = Store.open(url)
    with new.read() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM deliveries")).scalar() == 3
        lags = conn.execute(sa.text("SELECT id, lag_s FROM deliveries ORDER BY id")).all()
        assert [(i, None if v is None else float(v)) for i, v in lags] == [(1, 90.5), (2, None), (3, None)]
        assert conn.execute(sa.text("SELECT count(*) FROM revisions WHERE title = '标题'")).scalar() == 3
        head = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    assert head != "0001"
    with new.read() as conn:  # the rebuilt tables (SQLite) kept their foreign keys and every index
        if url.startswith("sqlite"):
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
            indexes = dict(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                                "AND tbl_name = 'deliveries' AND sql IS NOT NULL").all())
            assert indexes["ix_deliveries_open"].endswith("WHERE state NOT IN ('live', 'superseded')")
        else:
            indexes = dict(conn.exec_driver_sql("SELECT indexname, indexdef FROM pg_indexes "
                                                "WHERE tablename = 'deliveries'").all())
    assert {"ix_deliveries_open", "ix_deliveries_live_revision", "ix_deliveries_window",
            "ix_deliveries_work", "ix_deliveries_item", "ix_deliveries_channel_sent"} <= set(indexes)
    for bad in ("UPDATE deliveries SET state = 'lost' WHERE id = 2", "UPDATE revisions SET state = 'lost'"):
        with pytest.raises(sa.exc.IntegrityError), new.tx() as conn:
            conn.exec_driver_sql(bad)
    with new.read() as conn:
        assert conn.exec_driver_sql("SELECT state FROM deliveries ORDER BY id").scalars().all() == [
            "live", "pending", "pending"]
    new.close()


def test_concurrent_claims_never_share_a_row(url: str) -> None:
    """Two nodes claiming from one store at once get disjoint rows, and together all of them."""
    first = Store.open(url)
    _seed(first, 60)
    second = Store.open(url)
    got: dict[str, list[int]] = {"a": [], "b": []}

    def worker(name: str, store: Store) -> None:
        while rows := store.claim("bureau_site", name, NOW, 3, timedelta(minutes=5)):
            got[name] += [r.id for r in rows]

    threads = [threading.Thread(target=worker, args=("a", first)), threading.Thread(target=worker, args=("b", second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not set(got["a"]) & set(got["b"])
    assert len(got["a"]) + len(got["b"]) == 60
    with first.read() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM deliveries WHERE state = 'sending'")).scalar() == 60
    first.close()
    second.close()


def test_rows_claimed_ahead_and_never_started_go_back_as_they_were(url: str) -> None:
    """A stopping daemon hands back the rows it claimed ahead and never sent: a row to send is pending again with
    its attempt uncounted (its next attempt is a first one, no `find`), a read-back keeps its state, and a row
    that another node has taken since (a lease of its own) is left alone."""
    store = Store.open(url)
    _seed(store, 4)
    with store.tx() as conn:  # the fourth row was sent already: the claim takes it for its read-back
        conn.execute(sa.text("UPDATE deliveries SET state = 'sent' WHERE item_id = 'it-3'"))
    rows = store.claim("bureau_site", "host:1", NOW, 8, timedelta(minutes=5))
    assert sorted(r.state for r in rows) == ["sending", "sending", "sending", "sent"]
    with store.tx() as conn:  # another node's lease on it-2 (its previous one ran out and it reclaimed it)
        conn.execute(sa.text("UPDATE deliveries SET lease_owner = 'other:2' WHERE item_id = 'it-2'"))
    assert store.unclaim(rows, "host:1", NOW + timedelta(seconds=1)) == 3
    after = {d.item_id: d for k in range(4) for d in store.deliveries_of(f"it-{k}")}
    for k in (0, 1):
        assert (after[f"it-{k}"].state, after[f"it-{k}"].attempts, after[f"it-{k}"].lease_owner) == ("pending", 0, None)
    assert (after["it-2"].state, after["it-2"].attempts, after["it-2"].lease_owner) == ("sending", 1, "other:2")
    assert (after["it-3"].state, after["it-3"].lease_owner, after["it-3"].lease_until) == ("sent", None, None)
    again = store.claim("bureau_site", "host:3", NOW + timedelta(seconds=2), 8, timedelta(minutes=5))
    assert sorted((r.item_id, r.attempts) for r in again) == [("it-0", 1), ("it-1", 1), ("it-3", 0)]
    store.close()


def test_only_one_node_leads_a_periodic_job_at_a_time(url: str) -> None:
    """While one store holds a job's lock, another on the same database does not (SQLite: always leads)."""
    a, b = Store.open(url), Store.open(url)
    with a.leader("publisher.alerts") as first:
        with b.leader("publisher.alerts") as second:
            assert first is True
            assert second is (url.startswith("sqlite"))
    with b.leader("publisher.alerts") as again:
        assert again is True
    a.close()
    b.close()


def test_analyze_lets_the_planner_read_only_the_open_rows(url: str) -> None:
    """After Store.analyze (the daemon runs it at start and every 6 h), SQLite answers the late list from
    the partial open-rows index instead of walking the channel's whole history; on PostgreSQL it is a no-op."""
    store = Store.open(url)
    _seed(store, 400)
    with store.tx() as conn:
        conn.execute(sa.text("UPDATE deliveries SET state = 'live', live_at = due_at WHERE id > 8"))
    store.analyze()
    if not url.startswith("sqlite"):
        store.close()
        return
    late = ("SELECT id FROM deliveries WHERE deliveries.state NOT IN ('live', 'superseded') "
            "AND channel = 'bureau_site' AND due_at < '2016-01-01' ORDER BY due_at, id LIMIT 100")
    window = ("SELECT coalesce(lag_s, 0) FROM deliveries WHERE channel = 'bureau_site' AND due_at >= '2015-01-01' "
              "AND due_at <= '2016-01-01' AND state != 'superseded'")  # the lags over lag.window (p50/p95/max)
    with store.read() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM sqlite_stat1 WHERE idx = 'ix_deliveries_open'")).scalar() == 1
        plan = " ".join(str(row) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + late))
        assert len(conn.exec_driver_sql(late).all()) == 8
        window_plan = " ".join(str(row) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + window))
        assert len(conn.exec_driver_sql(window).all()) == 400
    store.close()
    assert "ix_deliveries_open" in plan, plan
    assert "ix_deliveries_window" in window_plan, window_plan


def test_sent_since_gives_the_newest_sends_of_the_window_oldest_first(url: str) -> None:
    """The rate limit asks for the window's newest `count` sends: when it is full, the oldest of them
    says when a slot frees; the rest of a long history is never read (index ix_deliveries_channel_sent)."""
    store = Store.open(url)
    _seed(store, 6)
    with store.tx() as conn:
        for k in range(1, 7):  # sent 10, 20, … 60 minutes after NOW
            conn.execute(sa.text("UPDATE deliveries SET state = 'live', sent_at = :at WHERE id = :id"),
                         {"at": (NOW + timedelta(minutes=10 * k)).replace(tzinfo=None if url.startswith("sqlite")
                                                                          else UTC), "id": k})
    got = store.sent_since("bureau_site", NOW + timedelta(minutes=15), 3)
    assert got == [NOW + timedelta(minutes=m) for m in (40, 50, 60)]
    assert store.sent_since("bureau_site", NOW + timedelta(minutes=55), 3) == [NOW + timedelta(minutes=60)]
    assert store.sent_since("microblog", NOW, 3) == []
    store.close()
