"""The adapter contract and its typed errors (the registry from type name to class is channels.registry).

An adapter renders an item for its medium and talks to the wire. It returns a `Receipt` or raises
one of the errors below; it never touches the store and never swallows an error. The dispatcher
owns the bookkeeping: states, retries, rate limits, dependencies between channels. The adapters that
speak HTTP build on `channels.http.HttpChannel`, which maps the wire's failures onto these errors.

A send of several steps on the wire (WeChat: a draft, then its publication) records how far it got with
`Channel.checkpoint`; the dispatcher keeps that on the delivery row (`Progress`, set around each adapter call by
`tracking`) and hands it back through `Channel.progress()` to the `find` after a crash, which resumes from it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

from publisher.errors import PublisherError

if TYPE_CHECKING:
    import httpx

    from publisher.clock import Clock
    from publisher.model import Revision


class ChannelError(PublisherError):
    """A channel refused or failed; `status` and `remote` keep what the remote said."""

    def __init__(self, message: str, *, status: int | None = None, remote: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.remote = remote


class TransientError(ChannelError):
    """Worth trying again later (timeouts, 5xx, 408). `retry_after` is in seconds when known."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class RateLimited(TransientError):
    """The remote asked us to slow down (429 and the like)."""


class PermanentError(ChannelError):
    """Retrying cannot help (400/401/403/404/422, content refused). A person must look."""


class Refused(PermanentError):
    """Raised by `verify`: the channel took the item but will not show it, or no longer does (a platform's review
    refused it, it was deleted or banned there). The delivery ends as failed, with this message for the admin."""


class ManualTask(PermanentError):
    """The protocol cannot do this; a person must do it by hand (e.g. delete a Weibo post)."""


@dataclass(frozen=True)
class Recheck:
    """How a channel that can take an item down after it went live is watched: each live item is read back
    `every` so often, for `window` after it went live (publisher/dispatch/livecheck.py)."""

    every: timedelta
    window: timedelta


@dataclass(frozen=True)
class Receipt:
    """Where the item now lives on the channel."""

    remote_id: str
    url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Progress:
    """How far one delivery's multi-step send got, kept by the dispatcher on the delivery row while it is being
    sent. `recorded` is what an earlier, interrupted attempt of the delivery checkpointed (empty when nothing);
    `save` stores a new checkpoint in its own transaction before it returns, and raises when the delivery is no
    longer being sent (it moved on meanwhile), so that the adapter stops there."""

    recorded: Mapping[str, Any]
    save: Callable[[dict[str, Any]], None]


_progress: ContextVar[Progress | None] = ContextVar("channel_progress", default=None)


@contextmanager
def tracking(progress: Progress) -> Iterator[None]:
    """Run an adapter call (a send, a `find`) with `progress` as its delivery's: the dispatcher's side of
    `Channel.checkpoint` and `Channel.progress`."""
    token = _progress.set(progress)
    try:
        yield
    finally:
        _progress.reset(token)


class ChannelOptions(BaseModel):
    """Base of each adapter's own options (the keys of its config.yaml section beyond the common ones). An option an
    adapter no longer takes goes in `retired`, with what replaced it: a config that still sets it is told that,
    not merely that the key is unknown."""

    model_config = ConfigDict(extra="forbid")
    retired: ClassVar[Mapping[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _refuse_retired(cls, data: Any) -> Any:
        if isinstance(data, dict) and (old := sorted(data.keys() & cls.retired.keys())):
            raise ValueError("; ".join(f"{key} is no longer used: {cls.retired[key]}; remove {key}" for key in old))
        return data


class Channel(ABC):
    """Base class of the adapters. Subclasses set `Options` and implement the five calls."""

    type_name: ClassVar[str] = ""
    Options: ClassVar[type[ChannelOptions]] = ChannelOptions
    default_rate_limit: ClassVar[str | None] = None  # the platform's documented limit, e.g. "30/h"
    can_update: ClassVar[bool] = True  # False: an edit is sent as a manual task
    # False: `find` cannot tell whether an earlier send arrived (SMTP). A send left `sending` by a crash is
    # then failed for a person to check, never repeated by the daemon (publisher/dispatch/dispatcher.py).
    can_find: ClassVar[bool] = True
    recheck_live: ClassVar[Recheck | None] = None  # live items the channel may take down later are read back

    def __init__(self, *, name: str, options: ChannelOptions, http: httpx.AsyncClient, clock: Clock,
                 display_name: str | None = None) -> None:
        self.name = name
        self.options = options
        self.http = http
        self.clock = clock
        self.display_name = display_name or name

    @abstractmethod
    async def publish(self, rev: Revision) -> Receipt:
        """Create the item on the channel."""

    @abstractmethod
    async def update(self, rev: Revision, receipt: Receipt) -> Receipt:
        """Replace what the channel holds under `receipt` with this revision."""

    @abstractmethod
    async def retract(self, receipt: Receipt) -> None:
        """Remove the item from readers' view."""

    @abstractmethod
    async def find(self, rev: Revision) -> Receipt | None:
        """Is this item already on the channel? Used before any resend after a crash, with `progress()` at hand.
        A TransientError says it cannot tell yet: the dispatcher asks again later and never creates meanwhile."""

    @abstractmethod
    async def verify(self, receipt: Receipt) -> bool | Receipt:
        """Can readers see it now? A Receipt says yes and where: a channel that learns the item's URL only once it
        is live (WeChat's asynchronous publishing) hands it back this way. `Refused` says it never will be."""

    def checkpoint(self, **progress: Any) -> None:
        """Record how far a send got before its next step (say, the id of a draft made, before it is published),
        so that a `find` after a crash resumes from it instead of guessing. The dispatcher stores it on the
        delivery row, with the time (`at`, ISO 8601, from the injected clock), before this returns; a checkpoint
        replaces the one before. Outside a dispatcher's call (an adapter used on its own) nothing is kept."""
        scope = _progress.get()
        if scope is not None:
            scope.save({**progress, "at": self.clock.now().isoformat()})

    def progress(self) -> Mapping[str, Any]:
        """What an earlier, interrupted attempt of the delivery being handled recorded through `checkpoint`
        (empty when nothing): `find`, and an update that republishes, read it after a crash."""
        scope = _progress.get()
        return scope.recorded if scope is not None else {}

    def lookup_hint(self, rev: Revision) -> str:
        """What names this revision's send on the channel, for a person checking whether it arrived there
        (where `can_find` is False)."""
        return ""

    async def aclose(self) -> None:  # noqa: B027  # optional hook: most adapters open nothing of their own
        """Release anything the adapter opened itself (the shared HTTP client is not its own)."""
