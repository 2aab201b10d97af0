"""`publisher lag` asking the daemon: the one HTTP/1.0 GET it makes, against servers on loopback that answer
badly in the ways a dying or foreign process does, and the daemon's token as the admin's shell holds it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from publisher.app.cli.lag import http_get
from publisher.config.settings import load_config
from tests.test_cli import _flat, _wait_healthy, cli, workdir  # noqa: F401 (the fixture)


@contextmanager
def answering(reply: bytes | None) -> Iterator[int]:
    """A server on loopback that reads one request, sends `reply` (None: nothing, and holds the line) and closes."""
    server = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []
    done = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            seen.append(conn.recv(65536))
            if reply is None:
                done.wait(5)
            else:
                conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        done.set()
        thread.join(5)
        server.close()
    assert seen and seen[0].startswith(b"GET /api/lag?limit=5 HTTP/1.0\r\n"), seen


def test_http_get_reads_status_headers_and_body() -> None:
    """http_get gives the status, the headers with lower-case names, and the whole body of one answer."""
    body = json.dumps({"source": "daemon"}).encode()
    reply = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Publisher-Config: abc\r\n"
             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    with answering(reply) as port:
        status, headers, got = http_get("127.0.0.1", port, "/api/lag?limit=5", {"Accept": "application/json"}, 5)
    assert (status, headers["x-publisher-config"], json.loads(got)) == (200, "abc", {"source": "daemon"})


@pytest.mark.parametrize(("reply", "error"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"cut", "ended after 5 of 100 bytes"),
    (b"SSH-2.0-OpenSSH_9.2\r\n", "not an HTTP response"),
    (b"", "not an HTTP response"),
])
def test_http_get_refuses_a_cut_or_foreign_answer(reply: bytes, error: str) -> None:
    """An answer shorter than its Content-Length, or one that is not HTTP, raises ValueError saying which."""
    with answering(reply) as port, pytest.raises(ValueError, match=error):
        http_get("127.0.0.1", port, "/api/lag?limit=5", {}, 5)


def test_http_get_gives_up_on_a_silent_server() -> None:
    """A server that accepts the connection and never answers makes http_get raise TimeoutError at its timeout."""
    with answering(None) as port, pytest.raises(TimeoutError):
        http_get("127.0.0.1", port, "/api/lag?limit=5", {}, 0.3)


def test_lag_sends_the_token_and_says_when_the_daemon_refuses_it(workdir: Path) -> None:  # noqa: F811
    """Off loopback the daemon wants `web.token`; `publisher lag` sends the one its own shell gives. A shell
    holding another token (rotated, mistyped) still gets the report, read from the store, and is told why."""
    path = workdir / "config.yaml"
    text = path.read_text("utf-8")
    port = load_config(path).web.listen.rpartition(":")[2]
    path.write_text(text.replace(f"127.0.0.1:{port}", f"0.0.0.0:{port}"), "utf-8")
    env = {**os.environ, "PUBLISHER_WEB_TOKEN": "s3cret-token"}
    proc = subprocess.Popen([sys.executable, "-m", "publisher", "run"], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)

    def lag(*args: str, token: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "publisher", "lag", *args], cwd=workdir, text=True,
                              capture_output=True, timeout=120, check=True,
                              env={**os.environ, "PUBLISHER_WEB_TOKEN": token})
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc)
        assert json.loads(lag("--json", token="s3cret-token").stdout)["source"] == "daemon"
        assert json.loads(lag("--json", token="old-token").stdout)["source"] == "store"
        table = _flat(lag(token="old-token").stdout)
        assert f"0.0.0.0:{port}上的守护进程拒绝了请求（http401）" in table
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
