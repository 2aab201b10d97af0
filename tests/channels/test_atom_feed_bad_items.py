"""One bad item never blocks the provincial feed: an entry XML cannot carry fails alone, and a 10 MB article
is written and read back like any other (the feed file stays readable for every later item)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import feedparser
import httpx
import pytest

from channels.atom_feed import AtomFeed
from channels.atom_file import read_feed
from channels.base import PermanentError
from publisher.clock import FrozenClock
from tests.channels.test_atom_feed import make_feed
from tests.conftest import make_revision


@pytest.mark.parametrize("bad", [{"title": "事故\x00通报"}, {"summary": "摘要\x1b[31m"}, {"title": "通报\ufffe"},
                                 {"author": "办公室\ud83d"}])
async def test_an_entry_xml_cannot_carry_fails_alone(tmp_path: Path, http: httpx.AsyncClient, clock: FrozenClock,
                                                     bad: dict[str, str]) -> None:
    """Seven innocent items written in the same rewrite as one with a control character all reach the feed."""
    feed = make_feed(tmp_path, http, clock)
    revs = [make_revision(item_id=f"good-{i}") for i in range(7)]
    results = await asyncio.gather(*(feed.publish(r) for r in [*revs[:3], make_revision(item_id="bad", **bad),
                                                                 *revs[3:]]), return_exceptions=True)
    assert isinstance(results[3], PermanentError) and "XML cannot carry" in str(results[3])
    assert not any(isinstance(r, BaseException) for i, r in enumerate(results) if i != 3)
    state = read_feed(feed.options.path)
    assert {feed.entry_id(r.item_id) for r in revs} == set(state.entries)
    assert not feedparser.parse(feed.options.path.read_bytes()).bozo


async def test_a_ten_megabyte_article_does_not_fail_the_feed(tmp_path: Path, http: httpx.AsyncClient,
                                                              clock: FrozenClock) -> None:
    """A 10 MB body is written; the items after it are written too, and the file still reads back."""
    feed: AtomFeed = make_feed(tmp_path, http, clock)
    big = make_revision(item_id="big", body="安全生产" * 900_000)  # ~10.8 MB of UTF-8
    await feed.publish(big)
    after = make_revision(item_id="after")
    await feed.publish(after)
    state = read_feed(feed.options.path)
    assert feed.entry_id("big") in state.entries and feed.entry_id("after") in state.entries
    assert await feed.find(after) is not None
