"""Where the web doors get the lag report: a kept copy no older than its bound, cut to the limit asked,
and the report process that builds it away from the daemon's dispatch."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from publisher.app.reports import DEFAULT_LIMIT, InProcess, ReportProcess, Reports, ReportUnavailable
from publisher.clock import FrozenClock
from publisher.lag.json_form import to_json
from publisher.lag.report import LagReport
from publisher.model import DeliveryState
from publisher.store.db import Store
from tests.test_lag import T0, World, make_config


class Ticks:
    """A monotonic clock the test moves by hand (Reports takes one, so that ages are exact)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """The shipped config over a real SQLite store, the clock at T0, three deliveries of the portal late."""
    config = make_config(tmp_path)
    store = Store.open(config.store_url)
    w = World(config=config, store=store, clock=FrozenClock(T0 + timedelta(days=3)))
    for hours in (3, 2, 1):
        w.delivery("city_portal", due_at=T0 - timedelta(hours=hours), state=DeliveryState.RETRYING, error="503")
    yield w
    store.close()


def _late(report: object) -> list[str]:
    return [d.item_id for ch in report.channels for d in ch.late]  # type: ignore[attr-defined]


async def test_the_kept_copy_is_served_while_young_and_rebuilt_when_old(world: World) -> None:
    """Within max_age the same report comes back with its age; past it, a new one is built (and sees new rows)."""
    ticks = Ticks()
    reports = Reports(InProcess(world.store, world.config), world.clock, max_age=5, monotonic=ticks)
    first, age = await reports.current()
    assert age == 0 and len(_late(first)) == 3
    world.delivery("city_portal", due_at=T0, state=DeliveryState.FAILED, error="401")
    ticks.now += 4
    again, age = await reports.current()
    assert again is first and age == 4
    ticks.now += 2
    fresh, age = await reports.current()
    assert fresh is not first and age == 0 and len(_late(fresh)) == 4


async def test_a_smaller_limit_is_the_oldest_late_rows_with_the_whole_count(world: World) -> None:
    """Asking the kept copy for one late row per channel gives the oldest, while late_total still counts all."""
    reports = Reports(InProcess(world.store, world.config), world.clock, max_age=5, monotonic=Ticks())
    whole, _ = await reports.current()
    one, _ = await reports.current(1)
    portal = next(ch for ch in one.channels if ch.name == "city_portal")
    assert _late(one) == _late(whole)[:1] and portal.late_total == 3
    with pytest.raises(ValueError):
        await reports.current(DEFAULT_LIMIT + 1)


async def test_the_kept_reports_answer_is_encoded_once_per_kind_and_limit_until_the_rebuild(world: World) -> None:
    """The JSON of the kept report is made once per kind and limit; the rebuild makes it anew from the new report,
    and without a kept report (max_age 0) every ask encodes its own."""
    ticks = Ticks()
    reports = Reports(InProcess(world.store, world.config), world.clock, max_age=5, monotonic=ticks)
    encoded: list[int] = []

    def encode(limit: int) -> Callable[[LagReport], bytes]:
        def run(report: LagReport) -> bytes:
            encoded.append(limit)
            return json.dumps(to_json(report, source="daemon", limit=limit)).encode()
        return run

    first, age = await reports.current_encoded("api", DEFAULT_LIMIT, encode(DEFAULT_LIMIT))
    ticks.now += 1
    again, age = await reports.current_encoded("api", DEFAULT_LIMIT, encode(DEFAULT_LIMIT))
    one, _ = await reports.current_encoded("api", 1, encode(1))
    assert again is first and age == 1 and encoded == [DEFAULT_LIMIT, 1]
    assert len(json.loads(first)["channels"][0]["late"]) <= DEFAULT_LIMIT
    assert [len(ch["late"]) for ch in json.loads(one)["channels"] if ch["name"] == "city_portal"] == [1]
    world.delivery("city_portal", due_at=T0, state=DeliveryState.FAILED, error="401")
    ticks.now += 5  # past max_age: rebuilt, and the answer with it
    fresh, age = await reports.current_encoded("api", DEFAULT_LIMIT, encode(DEFAULT_LIMIT))
    portal = next(ch for ch in json.loads(fresh)["channels"] if ch["name"] == "city_portal")
    assert age == 0 and len(portal["late"]) == 4 and encoded == [DEFAULT_LIMIT, 1, DEFAULT_LIMIT]
    unkept = Reports(InProcess(world.store, world.config), world.clock)
    for _ in range(2):
        await unkept.current_encoded("api", DEFAULT_LIMIT, encode(0))
    assert encoded[-2:] == [0, 0]


async def test_the_report_process_builds_the_same_report_and_stops_when_told(world: World) -> None:
    """A report built in the child process equals one built here; once closed, the child is gone and a
    further request says the daemon is stopping instead of starting another."""
    process = ReportProcess(world.config, timeout=60)
    there = Reports(process, world.clock)
    here = Reports(InProcess(world.store, world.config), world.clock)
    try:
        built, _ = await there.current()
        assert to_json(built, source="daemon") == to_json((await here.current())[0], source="daemon")
        child = process._proc
        assert child is not None and child.is_alive()
    finally:
        await there.aclose()
    assert not child.is_alive()
    with pytest.raises(ReportUnavailable, match="stopping"):
        await there.current()
