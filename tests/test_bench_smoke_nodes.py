"""The several-nodes bench at its smoke size: it runs, and prints every figure beside its ideal (never a time
asserted). It uses PUBLISHER_TEST_PG's server, in a database of its own that it creates and drops."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.conftest import PG_URL

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "bench_nodes_smoke"

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def run() -> tuple[str, dict[str, Any]]:
    engine = sa.create_engine(make_url(PG_URL).set(database="postgres"))
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}: {exc.orig}")
    finally:
        engine.dispose()
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_nodes.py"), "--smoke", "--pg", PG_URL,
                           "--db", DATABASE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    return out, json.loads(out[out.index("\n{") + 1:])


def test_every_figure_is_printed_beside_its_ideal(run: tuple[str, dict[str, Any]]) -> None:
    """The scaling, duplicates, missing and PostgreSQL-against-SQLite figures each have one line with the
    ideal (or the threshold) they are held against."""
    out, _ = run
    for name, ideal in (("nodes", "ideal ≥ 1.7 ×"), ("duplicates", "ideal 0"), ("missing", "ideal 0"),
                        ("pg_vs_sqlite", "explain beyond 1.5 ×")):
        lines = [line for line in out.splitlines() if line.startswith(f"FIGURE {name}:")]
        assert len(lines) == 1 and ideal in lines[0], out


def test_the_machine_load_and_command_are_reported(run: tuple[str, dict[str, Any]]) -> None:
    """The result names the machine, the load average at both ends, and the command that made it."""
    _, result = run
    assert {"nproc", "cpu", "ram_mib", "python", "loadavg_at_start", "loadavg_at_end"} <= set(result["machine"])
    assert "--smoke" in result["command"] and result["size"] == "smoke"


def test_each_run_sends_every_row_exactly_once(run: tuple[str, dict[str, Any]]) -> None:
    """In each run (1 and 2 PostgreSQL nodes, 1 SQLite node) the peers took one create per (item, channel)
    and nothing else, and the store holds every row sent; the second run had two nodes."""
    _, result = run
    for key, store, nodes in (("pg_1", "postgresql", 1), ("pg_2", "postgresql", 2), ("sqlite_1", "sqlite", 1)):
        r = result[key]
        assert (r["store"], r["nodes"]) == (store, nodes)
        assert (r["duplicates"], r["missing"], r["unexpected"]) == (0, 0, 0), r
        assert sum(r["creates_per_node"]) == r["deliveries"] > 0
        assert r["store_states"] == {"sent": r["deliveries"]}
        assert r["deliveries_per_s"] > 0
    assert len(result["pg_2"]["creates_per_node"]) == 2


def test_the_bench_leaves_no_database_behind(run: tuple[str, dict[str, Any]]) -> None:
    """The bench's own database is dropped at the end; the server's other databases are never used."""
    engine = sa.create_engine(make_url(PG_URL).set(database="postgres"))
    try:
        with engine.connect() as conn:
            names = set(conn.execute(sa.text("SELECT datname FROM pg_database")).scalars())
    finally:
        engine.dispose()
    assert DATABASE not in names
