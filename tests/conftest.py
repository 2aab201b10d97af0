"""Shared fixtures: the loopback sandbox, an HTTP client, a frozen clock, a sample revision."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest
import structlog

from channels.transport import channel_client
from publisher.clock import FrozenClock
from publisher.model import Revision
from publisher.sandbox import SandboxServer


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    with SandboxServer() as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> Iterator[SandboxServer]:
    """The stand-ins, emptied and with every fault knob cleared before each test."""
    httpx.post(sandbox_server.base_url + "/_sandbox/reset").raise_for_status()
    yield sandbox_server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A channel's client as the daemon makes it (channels/transport.py), so every adapter test runs on it."""
    async with channel_client(timeout=5.0, concurrency=4) as client:
        yield client


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2015, 3, 18, 9, 0, tzinfo=UTC))


def make_revision(**overrides: object) -> Revision:
    """A plausible accident-report revision; override any field."""
    fields: dict[str, object] = {
        "item_id": "2015-accidents-0007",
        "revision": 1,
        "title": "关于某化工企业\u201c3·12\u201d较大爆炸事故调查报告的通报",
        "category": "accidents",
        "category_name": "事故通报",
        "body": "各区县安监局：\n\n现将事故调查情况通报如下。**请各单位认真吸取教训。**\n\n- 加强隐患排查\n- 落实主体责任",
        "summary": "通报某化工企业较大爆炸事故调查结果",
        "created_at": datetime(2015, 3, 18, 1, 0, tzinfo=UTC),
    }
    fields.update(overrides)
    return Revision.model_validate(fields)


@pytest.fixture
def revision() -> Revision:
    return make_revision()


PG_URL = os.environ.get("PUBLISHER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_url() -> str:
    """A clean PostgreSQL database (the `test` database, its public schema emptied)."""
    import sqlalchemy as sa

    engine = sa.create_engine(PG_URL)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
    except sa.exc.OperationalError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}: {exc.orig}")
    finally:
        engine.dispose()
    return PG_URL


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    """A command run in-process (CliRunner) configures structlog for the whole process, at WARNING for the
    readers: each test starts from structlog's defaults, so a later test's capture_logs sees its info lines."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
