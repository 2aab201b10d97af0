"""Whose a lease is: a claim names its process (`HOST:PID`), so that several daemons may run on one host against
one store, and a starting daemon reconciles only the rows of a process that is gone (or whose lease ran out),
never those a live sibling has in flight."""

from __future__ import annotations

import os
import socket
from datetime import datetime
from pathlib import Path

from publisher.model import Delivery


def node_owner() -> str:
    """This process's name on the leases it takes: host and process id (at most 64 characters)."""
    return f"{socket.gethostname()[:50]}:{os.getpid()}"


def _alive(pid: int) -> bool:
    """Whether a process of this host runs under `pid` (a zombie does not: it was killed, its parent has
    not reaped it yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def orphaned(row: Delivery, now: datetime, owner: str) -> bool:
    """A `sending` row no live process will finish: its lease ran out, it is this process's own (a
    previous run in it), or its owner is a process of this host that is gone. A lease named by the host
    alone (as before leases named their process) counts as this host's previous life."""
    host = owner.rpartition(":")[0] or owner
    if row.lease_until is None or row.lease_until < now or row.lease_owner in (owner, host):
        return True
    name, _, pid = (row.lease_owner or "").rpartition(":")
    return name == host and pid.isdigit() and not _alive(int(pid))


__all__ = ["node_owner", "orphaned"]
