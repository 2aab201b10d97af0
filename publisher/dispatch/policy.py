"""The dispatcher's timing rules, in one place: the claim's lease and the adapter call's deadline, the
retry backoff, the read-back schedule, and how an outcome is put into words for last_error and the log.
"""

from __future__ import annotations

import asyncio
import random
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from channels.base import Channel, TransientError
from publisher.model import Delivery, Revision

VERIFY_CAP = timedelta(minutes=30)
VERIFY_BASE = timedelta(seconds=5)
RESEND_AFTER_CHECKS = 5  # read-backs that found nothing before an unseen delivery is sent once more
LEASE_SLACK = timedelta(seconds=30)
CLAIM_AHEAD = 2  # a claim takes up to this many times a channel's concurrency (the rest wait, leased, for a slot)
SHUTDOWN_GRACE = timedelta(seconds=1)  # how long a stopping daemon waits for the calls in flight
WORKER_BACKOFF_BASE, WORKER_BACKOFF_CAP = 0.5, 30.0  # seconds between a worker's tries while the store is away
T = TypeVar("T")


@dataclass(frozen=True)
class Deadlines:
    """How long one row may be held. A publish with attachments makes several requests, each bounded
    by the channel's `timeout`; the whole adapter call is bounded by `call`, and the claim's lease
    outlives it by half the slack, so that no other worker takes the row while the call may still
    land (a row whose lease expired is reconciled through `find`, never blindly resent)."""

    timeout: timedelta
    slack: timedelta = LEASE_SLACK

    @property
    def lease(self) -> timedelta:
        return self.timeout * 3 + self.slack

    @property
    def call(self) -> timedelta:
        return self.lease - self.slack / 2


@asynccontextmanager
async def bounded(deadline: timedelta, what: str) -> AsyncIterator[None]:
    """Run the block under `deadline` (an adapter call: a send, a read-back, a `find`); when it expires the
    block is cancelled and a TransientError says so. A TimeoutError the block raises by itself is not
    ours and passes on unchanged (an adapter that lets one out has a defect)."""
    try:
        async with asyncio.timeout(deadline.total_seconds()) as scope:
            yield
    except TimeoutError:
        if not scope.expired():
            raise
        raise TransientError(f"{what} took longer than {deadline.total_seconds():g} s and was cancelled") from None


async def read(fn: Callable[..., Awaitable[T]], *args: Any, attempts: int) -> T:
    """Reads (find, verify) are idempotent: a few quick in-process retries of a transient failure."""
    async for attempt in AsyncRetrying(retry=retry_if_exception_type(TransientError), stop=stop_after_attempt(attempts),
                                       wait=wait_random_exponential(multiplier=0.1, max=2), reraise=True):
        with attempt:
            return await fn(*args)
    raise AssertionError("unreachable")  # reraise=True: the last failure is raised above


def backoff(attempt: int, base: timedelta, cap: timedelta, rng: random.Random,
            retry_after: float | None = None) -> timedelta:
    """Full jitter (sleep = random(0, min(cap, base·2^attempt))), never sooner than Retry-After."""
    ceiling = min(cap.total_seconds(), base.total_seconds() * 2.0 ** max(0, attempt - 1))
    wait = rng.uniform(0, ceiling)
    if retry_after is not None:
        wait = max(wait, retry_after)
    return timedelta(seconds=wait)


def verify_wait(checks: int) -> timedelta:
    """When to read back again after `checks` read-backs that did not find the item."""
    return min(VERIFY_CAP, VERIFY_BASE * (1 << min(checks, 12)))


def describe(exc: Exception) -> str:
    """A channel error in one line: its message, the HTTP status and the remote's words when not in it."""
    status = getattr(exc, "status", None)
    remote = getattr(exc, "remote", None)
    text = str(exc)
    if status is not None and str(status) not in text:
        text = f"{text} (HTTP {status})"
    if remote and remote not in text:
        text = f"{text}; the remote said: {remote[:300]}"
    return text


def unaccounted(row: Delivery, channel: Channel, rev: Revision | None) -> str:
    """Why a send left `sending` by a crash, on a channel whose `find` cannot tell, is failed, not repeated."""
    hint = channel.lookup_hint(rev) if rev is not None else ""
    return (f"the daemon stopped mid-send and {row.channel} cannot say if it arrived{f' ({hint})' if hint else ''}; "
            f"check with its recipients, then `publisher retry {row.item_id} --channel {row.channel}` sends it again")


def defect_summary(exc: BaseException) -> str:
    """An unexpected exception in one line: its type, its message, and the innermost frame's file:line."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"adapter defect: {type(exc).__name__}: {exc}{where}"


def worker_backoff(failures: int, rng: random.Random) -> float:
    """Seconds a worker waits after `failures` store errors in a row: exponential, with half of it jittered
    so that the workers of several channels (and nodes) do not knock on a recovering store together."""
    wait = min(WORKER_BACKOFF_CAP, WORKER_BACKOFF_BASE * 2.0 ** min(failures - 1, 16))
    return wait / 2 + rng.uniform(0, wait / 2)
