"""The two state machines, their sets and their allowed moves: the only place the states are spelled.

Standard library only, so that the command line can build its choices from them without loading the
rest of the core; publisher/model.py re-exports everything here.
"""

from __future__ import annotations

from enum import StrEnum


class RevisionState(StrEnum):
    """Where one revision stands in review. The only place these states are spelled."""

    REVIEW = "review"  # waiting for the next sign-off of its category's chain
    BLOCKED = "blocked"  # the confidentiality screen found something; waits for an override
    APPROVED = "approved"  # chain complete and screen passed (or overridden): deliveries planned
    REJECTED = "rejected"  # sent back by a reviewer
    SUPERSEDED = "superseded"  # a newer revision of the item arrived before this one was approved


class DeliveryState(StrEnum):
    """Where one (revision, channel) delivery stands. The only place these states are spelled.

    waiting (for its `link_from` channel's URL) → pending → sending → sent → live; a transient failure
    goes to retrying (due again later), a permanent one or a spent retry budget to failed; what the
    protocol cannot do is a manual task; a newer revision supersedes rows not yet sent.
    """

    WAITING = "waiting"
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    LIVE = "live"
    RETRYING = "retrying"
    FAILED = "failed"
    MANUAL = "manual"
    SUPERSEDED = "superseded"


# Rows not yet sent: a newer revision of the item supersedes them.
ACTIVE = frozenset({DeliveryState.WAITING, DeliveryState.PENDING, DeliveryState.RETRYING})
# Rows a newer revision (or a retraction) replaces: those not yet sent, and those sent but not yet seen
# (their read-back no longer matters, and their resend would bring back what the newer row replaced).
REPLACEABLE = ACTIVE | {DeliveryState.SENT}
# Rows a worker claims to send.
TO_SEND = frozenset({DeliveryState.PENDING, DeliveryState.RETRYING})
# Rows due and not live: the lag report's open rows.
OPEN = frozenset(DeliveryState) - {DeliveryState.LIVE, DeliveryState.SUPERSEDED}
# Rows still on their way to readers (the first of the lag table's counts, beside retrying, failed, manual).
ON_THEIR_WAY = (DeliveryState.WAITING, DeliveryState.PENDING, DeliveryState.SENDING, DeliveryState.SENT)
# Revisions still waiting for a person (the legal deadline's candidates).
IN_REVIEW = frozenset({RevisionState.REVIEW, RevisionState.BLOCKED})

# The only moves a delivery may make, from → to. The store guards each UPDATE with the from-states of
# its transition, so a row that moved on meanwhile (a person's retry, a newer revision) is never
# overwritten by a late outcome; a new row starts as waiting, pending or failed (publisher.dispatch.outbox).
TRANSITIONS: dict[DeliveryState, frozenset[DeliveryState]] = {
    DeliveryState.WAITING: frozenset({DeliveryState.PENDING, DeliveryState.FAILED, DeliveryState.SUPERSEDED}),
    DeliveryState.PENDING: frozenset({DeliveryState.SENDING, DeliveryState.SUPERSEDED}),
    # a person's retry waits for the link_from channel when that one is retried too
    DeliveryState.RETRYING: frozenset({DeliveryState.SENDING, DeliveryState.PENDING, DeliveryState.WAITING,
                                       DeliveryState.SUPERSEDED}),
    # sent, or live at once for a retraction; retry, fail, manual task; pending again when reconciled;
    # superseded when its outcome lands after a newer row of the item (an edit, a retraction) took over
    DeliveryState.SENDING: frozenset({DeliveryState.SENT, DeliveryState.LIVE, DeliveryState.RETRYING,
                                      DeliveryState.FAILED, DeliveryState.MANUAL, DeliveryState.PENDING,
                                      DeliveryState.SUPERSEDED}),
    # seen; not yet (checked again later); unseen and sent once more; a verify that hit an adapter defect;
    # replaced by a newer row (an edit or a retraction) before it was seen
    DeliveryState.SENT: frozenset({DeliveryState.LIVE, DeliveryState.SENT, DeliveryState.PENDING,
                                   DeliveryState.FAILED, DeliveryState.SUPERSEDED}),
    DeliveryState.FAILED: frozenset({DeliveryState.PENDING, DeliveryState.WAITING}),  # a person's retry
    DeliveryState.LIVE: frozenset({DeliveryState.FAILED}),  # a live item the channel took down (WeChat: deleted, banned)
    DeliveryState.MANUAL: frozenset(),
    DeliveryState.SUPERSEDED: frozenset(),
}

# How the last_error of a live row the channel took down (publisher/dispatch/livecheck.py) starts, before the
# channel's reason: the alert and the lag table show the reason alone.
TAKEN_DOWN = "taken down after it went live: "

# A revision waits in review or blocked until it is approved, rejected or superseded by a newer one;
# review ↔ blocked as the screen's findings and the overrides come and go.
REVISION_TRANSITIONS: dict[RevisionState, frozenset[RevisionState]] = {
    RevisionState.REVIEW: frozenset(RevisionState),
    RevisionState.BLOCKED: frozenset(RevisionState),
    RevisionState.APPROVED: frozenset(),
    RevisionState.REJECTED: frozenset(),
    RevisionState.SUPERSEDED: frozenset(),
}

# What a reviewer's sign-off row records (approvals.action).
APPROVAL_ACTIONS = ("approve", "reject", "override")


def sources(to: DeliveryState) -> frozenset[DeliveryState]:
    """The states a delivery may reach `to` from."""
    return frozenset(s for s, targets in TRANSITIONS.items() if to in targets)
