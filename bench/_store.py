"""A deep bench store built fast: bulk inserts through the project's schema (Store.open migrates).

Shared by bench/bench_lag.py (one bureau-network year) and bench/bench_surfaces.py (a decade, with
revisions still in review since their year and open rows the running daemon must leave alone).

The revisions are routed by the config's categories to their channels and due evenly over `span`
up to `now`. Lags are drawn per channel (bureau_site seconds, city_portal minutes to hours, microblog up
to a few hours behind its rate limit); a small share of rows is not live (`OPEN_MIX`), a row whose drawn
live time is still ahead of `now` is on its way (pending, sent or retrying), and about a third of the
revisions of the last `recent_reviews` deliveries still wait in review (documents dated up to 40 days
back, so some legal deadlines are near or past).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from publisher.config.settings import load_config
from publisher.store.db import Store
from publisher.store.schema import deliveries, items, revisions

WEIGHTS = {"news": 40, "updates": 25, "notices": 10, "agency": 5, "committee": 8, "laws": 4, "guides": 7,
           "accidents": 1}
LAG = {  # channel → (low, high) seconds from due to live, drawn log-uniformly
    "bureau_site": (3, 300), "city_portal": (30, 6 * 3600), "provincial_feed": (60, 1800), "microblog": (60, 3 * 3600),
    "press": (1, 60),  # live when the relay accepted it
    "wechat": (30, 2 * 3600),  # asynchronous publish: status 1 for a while, then read back as live
}
# (below this roll, state): a row's roll picks the first band it falls under; above the last, it is live
OPEN_MIX: tuple[tuple[float, str], ...] = (
    (0.003, "failed"), (0.004, "retrying"), (0.005, "manual"), (0.015, "superseded"))
CLAIMABLE = frozenset({"pending", "retrying", "sent"})  # the states a running daemon takes up when due
CHUNK = 50_000  # delivery rows per insert transaction


def _loguniform(rng: random.Random, lo: float, hi: float) -> float:
    return float(lo * (hi / lo) ** rng.random())  # float ** float is typed Any (a negative base gives complex)


def build(url: str, config_path: Path, now: datetime, *, target: int = 1_000_000,
          span: timedelta = timedelta(days=365), seed: int = 7, open_mix: Sequence[tuple[float, str]] = OPEN_MIX,
          recent_reviews: int = 1_000, stale_reviews: int = 0, hold_open: timedelta | None = None,
          progress: bool = True) -> dict[str, int]:
    """Fill the empty store at `url` with `target` delivery rows; returns how many rows of each state.

    `stale_reviews` revisions, spread evenly over the span, never got their sign-offs: they wait in
    review with their documents as old as their year. With `hold_open`, the open rows a daemon would take
    up (pending, retrying, sent) are next due `hold_open` after `now` (a backoff after a long outage),
    so that a daemon run on the store leaves them open for the lag report to count and list."""
    config = load_config(config_path)
    store = Store.open(url)
    rng = random.Random(seed)
    cats = list(WEIGHTS)
    weights = list(WEIGHTS.values())
    seconds = span.total_seconds()
    per_rev = sum(len(config.categories[c].channels) * w for c, w in WEIGHTS.items()) / sum(weights)
    # a little over: the loop stops at exactly `target` rows
    n_revs = int(target / per_rev * 1.02) + 1 + stale_reviews
    held_until = None if hold_open is None else now + hold_open
    stale_made = 0
    made = 0
    states: dict[str, int] = {}
    chunk_items: list[dict[str, Any]] = []
    chunk_revs: list[dict[str, Any]] = []
    chunk_dels: list[dict[str, Any]] = []

    def flush() -> None:
        with store.tx() as conn:
            if chunk_items:
                conn.execute(items.insert(), chunk_items)
            if chunk_revs:
                conn.execute(revisions.insert(), chunk_revs)
            if chunk_dels:
                conn.execute(deliveries.insert(), chunk_dels)
        chunk_items.clear()
        chunk_revs.clear()
        chunk_dels.clear()

    started = time.perf_counter()
    for i in range(n_revs):
        if made >= target:
            break
        category = rng.choices(cats, weights)[0]
        due = now - timedelta(seconds=seconds * (1 - made / target))  # even over the span, up to the build
        item_id = f"bench-{i:07d}"
        in_review = made >= target - recent_reviews and rng.random() < 0.3  # the last days' sign-offs still open
        # the next of `stale_reviews` evenly spaced marks passed: this revision never got its sign-offs
        stale = stale_made < stale_reviews and made >= target * (stale_made + 0.5) / stale_reviews
        stale_made += stale
        chunk_items.append({"id": item_id, "category": category, "title": f"{category} {i}", "current_revision": 1,
                            "retracted": False, "created_at": due, "updated_at": due})
        chunk_revs.append({"id": i + 1, "item_id": item_id, "number": 1,
                           "state": "review" if in_review or stale else "approved",
                           "title": f"{category} {i}", "category": category, "body": "…", "channels": [],
                           "attachments": [], "retract": False, "findings": [], "created_at": due,
                           "doc_date": (due - timedelta(days=rng.randint(0, 40 if in_review else 10))).date(),
                           "approved_at": None if in_review or stale else due})
        if in_review or stale:
            states["review"] = states.get("review", 0) + 1
            continue
        for channel in config.categories[category].channels:
            if made >= target:
                break
            made += 1
            lo, hi = LAG[channel]
            live = due + timedelta(seconds=_loguniform(rng, lo, hi))
            roll = rng.random()
            state = "live"
            if live > now:
                state = rng.choice(("pending", "sent", "retrying"))
            else:
                state = next((s for below, s in open_mix if roll < below), "live")
            states[state] = states.get(state, 0) + 1
            is_live = state == "live"
            chunk_dels.append({
                "revision_id": i + 1, "item_id": item_id, "channel": channel, "state": state, "retract": False,
                "due_at": due, "next_attempt_at": held_until if held_until is not None and state in CLAIMABLE else due,
                "attempts": 1 if is_live else rng.randint(1, 10),
                "verify_attempts": 1, "sent_at": live if is_live else None, "live_at": live if is_live else None,
                "last_error": None if is_live or state == "superseded" else "503 Service Unavailable",
                "created_at": due, "updated_at": live if is_live else due,
            })
        if len(chunk_dels) >= CHUNK:
            flush()
            if progress:
                print(f"  {made:>9,} deliveries  {time.perf_counter() - started:5.1f} s", flush=True)
    flush()
    # as a running system has them: SQLite's statistics (the daemon's ANALYZE); on PostgreSQL, autovacuum's
    # statistics and visibility map (index-only scans), which a bulk load has not waited for
    if store.engine.dialect.name == "sqlite":
        store.analyze()
    else:
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE deliveries")
            conn.exec_driver_sql("VACUUM ANALYZE revisions")
    store.close()
    if progress:
        print(f"built {made:,} deliveries in {time.perf_counter() - started:.1f} s", flush=True)
    return states
