"""CHECK constraints: deliveries.state, revisions.state and approvals.action hold only the known values

Revision ID: 0006
Revises: 0005

The values are spelled here as they were when this migration was written (a migration is a snapshot);
publisher/store/schema.py builds the same constraints from the enums in publisher/model.py, and a new
state needs a new migration.

PostgreSQL adds each constraint in place. SQLite cannot add a constraint to a table, so the three
tables are rebuilt by hand rather than by alembic's batch mode, which re-creates a table from
reflection and would not carry the generated column `lag_s` and the partial indexes' predicates over
verbatim: each new table is created from the old CREATE TABLE text plus the CHECK, the rows are copied,
and the indexes are re-created from their own stored text. `revisions` is the parent of the other two:
renaming it aside makes SQLite point their foreign keys at the renamed table, so it goes first, the
children are rebuilt from their original text (naming `revisions` again), and the old parent is
dropped last, when nothing refers to it any more.
"""
from __future__ import annotations

import re

from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

CHECKS = {  # table → (constraint name, predicate)
    "deliveries": ("ck_deliveries_state", "state IN ('waiting', 'pending', 'sending', 'sent', 'live', 'retrying', "
                                          "'failed', 'manual', 'superseded')"),
    "revisions": ("ck_revisions_state", "state IN ('review', 'blocked', 'approved', 'rejected', 'superseded')"),
    "approvals": ("ck_approvals_action", "action IN ('approve', 'reject', 'override')"),
}


PARENT, CHILDREN = "revisions", ("deliveries", "approvals")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite({t: f"CONSTRAINT {name} CHECK ({predicate})" for t, (name, predicate) in CHECKS.items()})
        return
    for table, (name, predicate) in CHECKS.items():
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({predicate})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite({t: None for t in CHECKS})
        return
    for table, (name, _predicate) in CHECKS.items():
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")


def _rebuild_sqlite(checks: dict[str, str | None]) -> None:
    """Rebuild the tables with `checks[table]` as their CHECK constraint (None: without one)."""
    conn = op.get_bind()
    old: dict[str, tuple[str, list[str]]] = {}
    for table in (PARENT, *CHILDREN):  # the stored text, read before any rename rewrites it
        create = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                                      (table,)).scalar_one()
        indexes = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                                       "AND sql IS NOT NULL ORDER BY name", (table,)).scalars().all()  # not autoindexes
        old[table] = (create, list(indexes))

    def rebuild(table: str, *, drop_aside: bool) -> None:
        create, indexes = old[table]
        # the stored columns only: a generated one is computed again by the new table
        columns = ", ".join(f'"{r[1]}"' for r in conn.exec_driver_sql(f"PRAGMA table_xinfo({table})") if r[6] == 0)
        conn.exec_driver_sql(f"ALTER TABLE {table} RENAME TO _old_{table}")  # its indexes go with it
        for name in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                                         "AND sql IS NOT NULL", (f"_old_{table}",)).scalars().all():
            conn.exec_driver_sql(f"DROP INDEX {name}")
        conn.exec_driver_sql(_with_check(create, CHECKS[table][0], checks[table]))
        conn.exec_driver_sql(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _old_{table}")
        if drop_aside:
            conn.exec_driver_sql(f"DROP TABLE _old_{table}")
        for sql in indexes:
            conn.exec_driver_sql(sql)

    rebuild(PARENT, drop_aside=False)
    for child in CHILDREN:
        rebuild(child, drop_aside=True)
    conn.exec_driver_sql(f"DROP TABLE _old_{PARENT}")


def _with_check(create: str, name: str, check: str | None) -> str:
    """The CREATE TABLE text without the constraint `name`, plus `check` when given."""
    body = create.rstrip()
    assert body.endswith(")"), create
    body = re.sub(rf",\s*CONSTRAINT {name} CHECK \(.*\)\s*$", "", body[:-1].rstrip(), flags=re.S)
    return f"{body}, \n\t{check}\n)" if check is not None else f"{body}\n)"
