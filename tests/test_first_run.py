"""The README's first run, as a new user makes it: the daemon on the shipped config and a bureau-year
dropped at once. The web doors must keep answering while the daemon fans the year out."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from publisher.config.settings import load_config
from tests.test_cli import _wait_healthy, cli, workdir  # noqa: F401  # workdir is a fixture

# Generous bounds: this is not a timing test on a noisy machine. Before the report had a process of its
# own, /api/lag took half a minute here and SIGTERM nearly twenty seconds.
ANSWER_WITHIN = 8.0
STOP_WITHIN = 8.0


def _sent(sandbox: str) -> int:
    """Posts on the website and articles on the portal so far."""
    site = httpx.get(f"{sandbox}/_sandbox/wordpress/received", timeout=30).json()["posts"]
    portal = httpx.get(f"{sandbox}/_sandbox/portal/received", timeout=30).json()
    return len(site) + len(portal)


@pytest.mark.slow
def test_the_web_doors_answer_while_a_bureau_year_fans_out(workdir: Path) -> None:  # noqa: F811
    """With the 2015 corpus dropped (most review chains unsigned, so hundreds of legal deadlines long past),
    /api/lag, the dashboard and /metrics each answer within seconds while deliveries go on, /api/lag and
    the page say how old their report is, and SIGTERM stops the daemon within seconds."""
    config = load_config(workdir / "config.yaml")
    base, sandbox = config.web.base_url, f"http://{config.sandbox.listen}"
    log = (workdir / "daemon.log").open("w")  # a file: a pipe nobody reads would stall the daemon's logging
    proc = subprocess.Popen([sys.executable, "-m", "publisher", "run"], cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        _wait_healthy(base, proc)
        cli("corpus", "queue/inbox", cwd=workdir)
        deadline = time.monotonic() + 120
        while _sent(sandbox) < 20:  # the fan-out is under way
            assert time.monotonic() < deadline, "nothing was sent within two minutes"
            time.sleep(0.2)
        first = _sent(sandbox)
        slowest = 0.0
        for _ in range(4):
            for path in ("/api/lag", "/", "/metrics"):
                started = time.monotonic()
                resp = httpx.get(base + path, timeout=60)
                took = time.monotonic() - started
                slowest = max(slowest, took)
                assert resp.status_code == 200, (path, resp.text[:300])
                assert took < ANSWER_WITHIN, f"{path} took {took:.1f} s"
                if path != "/metrics":
                    assert 0 <= int(resp.headers["Age"]) <= 10
            report = httpx.get(base + "/api/lag", timeout=60).json()
            assert report["deadlines"], "the unsigned 2015 items are past their legal deadline"
            time.sleep(0.5)
        assert _sent(sandbox) > first, "deliveries went on while the doors were asked"
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert time.monotonic() - stopping < STOP_WITHIN
        assert proc.returncode == 0, (workdir / "daemon.log").read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
