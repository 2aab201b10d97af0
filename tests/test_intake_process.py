"""Intake in a process of its own while the daemon runs (publisher/app/intake_process.py): a drop still reaches
its channel, /metrics still counts it, a child that dies is reported and started again, a stopping daemon takes
its child with it, and a child whose daemon is killed stops by itself."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from publisher.app.daemon import INTAKE_DOWN, Daemon
from publisher.app.web.app import create_app
from publisher.model import DeliveryState
from publisher.sandbox import SandboxServer
from tests.harness import drop, load, write_config

SENT = (DeliveryState.SENT, DeliveryState.LIVE)


async def _until(what: str, done: object, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not done():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {limit:g} s: {what}")
        await asyncio.sleep(0.05)


def _sent(daemon: Daemon, item: str) -> bool:
    rows = daemon.store.deliveries_of(item)
    return bool(rows) and all(r.state in SENT for r in rows)


async def _problems(daemon: Daemon) -> list[str]:
    transport = httpx.ASGITransport(app=create_app(daemon.web))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        answer = (await client.get("/healthz")).json()
    problems: list[str] = answer.get("problems", [])
    return problems


async def test_a_drop_goes_through_the_intake_process_and_a_dead_child_is_restarted(
        tmp_path: Path, sandbox: SandboxServer) -> None:
    daemon = Daemon(load(write_config(tmp_path, sandbox)), intake_process=True)
    assert daemon._intake_process is not None
    daemon._intake_process.restart_after = 0.2
    inbox = tmp_path / "queue" / "inbox"
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop))
    try:
        drop(inbox, "a.md", {"id": "note-a", "title": "关于开展安全检查的通知", "category": "updates",
                             "channels": ["city_portal"]})
        await _until("note-a sent", lambda: _sent(daemon, "note-a"))
        child = daemon._intake_process._proc
        assert child is not None and child.pid != os.getpid() and child.is_alive()
        assert daemon.telemetry.intake.labels(outcome="accepted")._value.get() == 1  # relayed from the child
        assert await _problems(daemon) == []

        os.kill(child.pid, signal.SIGKILL)  # the fault: the intake process dies
        await _until("the death reported", lambda: not daemon._intake_process.alive)
        assert INTAKE_DOWN in await _problems(daemon)
        await _until("a new child", lambda: daemon._intake_process.alive and daemon._intake_process.started == 2)
        assert await _problems(daemon) == []
        drop(inbox, "b.md", {"id": "note-b", "title": "关于做好节日期间安全生产工作的通知", "category": "updates",
                             "channels": ["city_portal"]})
        await _until("note-b sent", lambda: _sent(daemon, "note-b"))
    finally:
        began = time.monotonic()
        stop.set()
        await asyncio.wait_for(running, 15)
    assert time.monotonic() - began < 5.0  # SIGTERM's stop: within a couple of seconds, the child included
    assert not daemon._intake_process.alive and (tmp_path / "queue" / "archive").exists()


def test_the_child_stops_when_its_daemon_is_killed(tmp_path: Path, sandbox: SandboxServer) -> None:
    """`publisher run` killed outright (SIGKILL): its intake process sees its pipe close and exits, leaving no
    orphan that would take files nobody dispatches."""
    config = write_config(tmp_path, sandbox)
    proc = subprocess.Popen([sys.executable, "-m", "publisher", "run", "--config", str(config)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        children: list[int] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the intake child: a python process whose parent is the daemon
            kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            children = [int(k) for k in kids if "publisher-intake" in _cmdline(int(k)) or _is_intake(int(k))]
            if children:
                break
            time.sleep(0.1)
        assert children, "no intake process started"
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_running(pid) for pid in children):
            time.sleep(0.1)
        assert not any(_running(pid) for pid in children), "the intake process outlived its daemon"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _is_intake(pid: int) -> bool:
    """A spawned child runs `spawn_main`; the intake one has the inbox watch open (inotify) once it runs."""
    if "spawn_main" not in _cmdline(pid):
        return False
    try:
        return any("inotify" in os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
