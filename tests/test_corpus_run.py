"""The whole corpus of one bureau-year through a fresh working directory, checked on the peers' side."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from publisher.app.daemon import Daemon
from publisher.clock import FrozenClock
from publisher.model import RevisionState
from publisher.sandbox import SandboxProcess
from publisher.sandbox.corpus import make_corpus
from tests.harness import free_port, load, received, settings, write_config

pytestmark = pytest.mark.slow
SCALE = float(os.environ.get("CORPUS_SCALE", "1"))


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess() as sb:
        yield sb


async def test_corpus_year_is_delivered_exactly_once_per_routed_channel(tmp_path: Path, sandbox: SandboxProcess) -> None:
    """Every clean item reaches each routed channel once; planted items are blocked; broken files are rejected."""
    port = free_port()
    cfg = load(write_config(tmp_path, sandbox, web_port=port))
    inbox = tmp_path / "queue" / "inbox"
    manifest = make_corpus(inbox, broken=True, scale=SCALE)
    (inbox / "manifest.json").unlink()  # not an item file; keep the inbox as editors would leave it
    # our client-side 30/h is what is tested here; the stand-in counts real time, our clock is frozen
    settings(sandbox, "weibo", posts_per_hour=10_000, calls_per_day=100_000)
    settings(sandbox, "wechat", publish_seconds=0)
    clock = FrozenClock(datetime.now(UTC))
    daemon = Daemon(cfg, clock=clock)
    sensitive = {s["id"] for s in manifest["sensitive"]}
    try:
        # run_once serves the feed on `port`, where the collector fetches it after each WebSub ping
        counts = await daemon.run_once()
        # reviewers sign everything off, in each category's chain order
        for w in daemon.review.waiting():
            if w.state == "review":
                for role in cfg.categories[w.category].review[len(w.signed):]:
                    daemon.review.approve(w.item_id, role=role, by="测试审核员")
        for _ in range(6):  # the microblog's 30/h: a few hours of the frozen clock
            await daemon.run_once()
            await asyncio.sleep(0.3)
            clock.advance(timedelta(hours=1, minutes=1))
        await daemon.run_once()
    finally:
        await daemon.aclose()

    broken = [b for b in manifest["broken"] if b["reason"]]
    accepted_odd = [b["accept_as"] for b in manifest["broken"] if not b["reason"]]
    rejected = tmp_path / "queue" / "rejected"
    assert counts["rejected"] == len(broken)
    for b in broken:
        assert (rejected / b["file"]).exists(), b
        note = (rejected / (b["file"] + ".error.txt")).read_text(encoding="utf-8")
        assert "问题" in note and "Problem" in note
        assert (rejected / b["file"]).read_bytes() == _original(b["file"], tmp_path)
    assert counts["accepted"] == len(manifest["items"]) + len(accepted_odd)
    assert list(inbox.glob("*.md")) == []

    store = daemon.store
    blocked = {r.item_id for r in store.revisions_in([RevisionState.BLOCKED])}
    assert blocked == sensitive

    expected: Counter[str] = Counter()
    for it in manifest["items"]:
        if it["id"] in sensitive:
            continue
        for ch in it["channels"] or cfg.categories[it["category"]].channels:
            expected[ch] += 1
    expected.update({"bureau_site": 2, "city_portal": 2, "provincial_feed": 2})  # the two odd encodings (notices)

    posts = Counter(p["slug"] for p in received(sandbox, "wordpress")["posts"])
    articles = Counter(a["source_id"] for a in received(sandbox, "portal"))
    statuses = received(sandbox, "weibo")["statuses"]
    hub = received(sandbox, "hub")
    assert max(posts.values()) == 1 and len(posts) == expected["bureau_site"]
    assert max(articles.values()) == 1 and len(articles) == expected["city_portal"]
    assert len(statuses) == expected["microblog"]
    if SCALE == 1:
        assert expected["microblog"] == 62 - len({s for s in sensitive if _routed_microblog(manifest, s, cfg)})
    assert len(hub["entries"]) == expected["provincial_feed"]
    # one freepublish job per routed item, told apart by its 阅读原文 link (the item's own site article)
    wechat = Counter(j["news_item"][0]["content_source_url"] for j in received(sandbox, "wechat")["jobs"])
    assert expected["wechat"] > 0 and max(wechat.values()) == 1 and len(wechat) == expected["wechat"]
    assert len(received(sandbox, "wechat")["articles"]) == expected["wechat"]

    states = store.delivery_states()
    for ch, n in expected.items():
        done = states[ch].get("live", 0) + states[ch].get("sent", 0)
        assert done == n, (ch, states[ch])
        assert not set(states[ch]) - {"live", "sent"}, (ch, states[ch])
    report = {ch: states[ch] for ch in expected}
    (tmp_path / "states.json").write_text(json.dumps(report))


def _routed_microblog(manifest: dict, item_id: str, cfg: object) -> bool:
    it = next(i for i in manifest["items"] if i["id"] == item_id)
    return "microblog" in (it["channels"] or cfg.categories[it["category"]].channels)  # type: ignore[attr-defined]


def _original(name: str, root: Path) -> bytes:
    """The broken file as the generator wrote it (a fresh copy to compare byte for byte)."""
    fresh = root / "fresh"
    if not fresh.exists():
        make_corpus(fresh, broken=True, scale=SCALE)
    return (fresh / name).read_bytes()
