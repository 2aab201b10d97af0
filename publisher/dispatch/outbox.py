"""The outbox: which delivery rows an approved revision or a retraction creates.

One row per (revision, channel). A row says "make this channel show this revision" (or, with
`retract`, "take the item down"); whether that is a create or an update is decided when it is sent,
from the item's placement on the channel. Newer rows supersede older unsent ones of the same item.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from channels.registry import adapter_class
from publisher.config.settings import Config
from publisher.model import Attachment, DeliveryState, Revision, StoredRevision
from publisher.store.db import Store


def routed_channels(config: Config, rev: StoredRevision) -> list[str]:
    """The revision's channels: its own list, else its category's routing; disabled channels dropped."""
    names = rev.channels or config.categories[rev.category].channels
    return [n for n in names if n in config.channels and config.channels[n].enabled]


def plan_publication(conn: Connection, store: Store, config: Config, rev: StoredRevision, now: datetime) -> list[str]:
    """Create the delivery rows of an approved revision; returns the channels planned. An item retracted
    earlier and now published again is no longer retracted."""
    channels = routed_channels(config, rev)
    due = max(now, rev.publish_at) if rev.publish_at else now
    if rev.number > 1:  # an item's first revision: no row of the item exists yet (a row's revision is the item's)
        store.supersede_active(conn, rev.item_id, channels, now)
    store.set_item_retracted(conn, rev.item_id, now, retracted=False)
    rows: list[dict[str, Any]] = []
    for name in channels:
        upstream = config.channels[name].link_from
        state = DeliveryState.PENDING
        error = None
        if upstream is not None:
            placed = store.placement(conn, rev.item_id, upstream)
            if placed is None or not placed.url or placed.retracted:
                if upstream in channels:
                    state = DeliveryState.WAITING
                else:
                    state, error = DeliveryState.FAILED, (f"this channel links to the item on {upstream}, "
                                              f"but the item is not routed to {upstream}; add it to the item's channels")
        rows.append({"revision_id": rev.id, "item_id": rev.item_id, "channel": name, "state": state,
                     "retract": False, "due_at": due, "next_attempt_at": due, "last_error": error})
    store.add_deliveries(conn, rows, now)
    return channels


def plan_retraction(conn: Connection, store: Store, config: Config, rev: StoredRevision, now: datetime) -> list[str]:
    """Retract the item from every channel that holds it, or may soon: a send in flight there lands first
    (the claim takes no row of an item while another of it is `sending` on the channel), then the
    retraction takes down what it placed. Unsent rows are simply superseded."""
    all_channels = list(config.channels)
    store.supersede_active(conn, rev.item_id, all_channels, now)
    held = [p.channel for p in store.placements_of(conn, rev.item_id)
            if not p.retracted and p.channel in config.channels]
    held += [name for name in store.in_flight_channels(conn, rev.item_id) if name in config.channels and name not in held]
    rows = [{"revision_id": rev.id, "item_id": rev.item_id, "channel": name,
             "state": DeliveryState.PENDING, "retract": True, "due_at": now, "next_attempt_at": now} for name in held]
    store.add_deliveries(conn, rows, now)
    store.set_item_retracted(conn, rev.item_id, now)
    return held


def requeue(store: Store, config: Config, now: datetime, item_id: str, channel: str | None, *, by: str) -> int:
    """Put an item's stuck deliveries back in the queue, due now; audited. Stuck: failed, retrying, or
    sent but never seen by readers on a channel where a second send is an update (not a second post)."""
    resend = [name for name, c in config.channels.items() if adapter_class(c.type).can_update]
    links = {name: c.link_from for name, c in config.channels.items() if c.link_from is not None}
    with store.tx() as conn:
        rows = store.requeue(conn, item_id, channel, now, resend_sent=resend, links=links)
        for d in rows:
            store.audit(conn, now, by, "retry", item_id=item_id, channel=d.channel, previous=d.state.value)
    return len(rows)


def revision_from_row(r: StoredRevision, config: Config) -> Revision:
    return Revision(
        item_id=r.item_id, revision=r.number, title=r.title, category=r.category,
        category_name=config.category_name(r.category), body=r.body, summary=r.summary,
        date=r.doc_date, source=r.source, author=r.author, publish_at=r.publish_at,
        attachments=tuple(Attachment.of(a["name"], Path(a["path"])) for a in r.attachments),
        created_at=r.created_at)
