"""What the web handlers may use: made once by the daemon and handed to every route."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from publisher.app.reports import InProcess, Reports

if TYPE_CHECKING:
    from channels.base import Channel
    from publisher.clock import Clock
    from publisher.config.settings import Config
    from publisher.dispatch.dispatcher import Dispatcher
    from publisher.dispatch.telemetry import Telemetry
    from publisher.review.accounts import Accounts
    from publisher.review.chain import Review
    from publisher.store.db import Store


@dataclass
class WebContext:
    """What the web handlers may use; made once by the daemon and shared."""

    config: Config
    store: Store
    clock: Clock
    channels: dict[str, Channel] = field(default_factory=dict)
    dispatcher: Dispatcher | None = None
    health: dict[str, Any] = field(default_factory=dict)  # filled by the daemon: started_at, intake state ...
    telemetry: Telemetry | None = None  # the dispatcher's and intake's counters, shown on /metrics
    accounts: Accounts | None = None  # the reviewer accounts; None: the dashboard's token login only
    review: Review | None = None  # the review actions the desk takes (one is made when none is given)
    reports: Reports = field(init=False)  # where the lag report comes from; the running daemon swaps in its process

    # What keeps the daemon from doing its work, in words an admin acts on (none: healthy); the daemon
    # adds its own checks (workers, the watcher) to the store's.
    checks: list[Callable[[], list[str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reports = Reports(InProcess(self.store, self.config), self.clock)
        self.checks.append(self._store_problems)

    def _store_problems(self) -> list[str]:
        try:
            self.store.probe_write()
        except Exception as exc:  # any failure of the store is the answer; say which
            return [f"the store cannot be written: {exc}"]
        return []

    def problems(self) -> list[str]:
        return [problem for check in self.checks for problem in check()]
