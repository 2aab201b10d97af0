"""A minimal portal peer for the fan-out bench: an asyncio HTTP/1.1 server in a process of its own.

    python bench/_peer.py [--delay-ms 20] [--blackhole]     # prints "port N" once it listens

It answers just what the `http_push` adapter needs, as fast as plain asyncio allows, so that the bench
measures the daemon and not the peer: `POST`/`PUT` anywhere → `{"code": 0, "data": {"id", "url"}}`,
`GET /a/<id>` → 200 (the article page a read-back opens), `GET /_count` → how many creates it took,
`GET /_creates` → every create counted by path and the body's `source_id` (a second create of one item on
one channel is a duplicate), with the wall-clock time of each (for rates across several peers).
`--delay-ms` holds every answer that long (a service time; the connection waits, the process does not).
`--blackhole` accepts connections, reads the requests and never answers: a channel that hangs.
It runs in its own process so that it never shares the bench's or the daemon's interpreter lock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import TracebackType

_HEAD_END = b"\r\n\r\n"


class _Http(asyncio.Protocol):
    """One connection: requests one after another (keep-alive; the adapter's client does not pipeline)."""

    def __init__(self, peer: _Peer) -> None:
        self.peer = peer
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(_HEAD_END)
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4:end + 4 + length])
            del self.buf[:end + 4 + length]
            method, path = head.split(" ", 2)[:2]
            self.peer.answer(self, method, path, body)

    def send(self, status: str, body: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                                 % (status.encode(), len(body), body))


class _Peer:
    def __init__(self, *, port: int, delay: float, blackhole: bool) -> None:
        self.port = port
        self.delay = delay
        self.blackhole = blackhole
        self.created = 0
        self.keys: Counter[str] = Counter()  # "PATH SOURCE_ID" → creates
        self.times: list[float] = []  # time.time() of each create

    def _count(self, path: str, body: bytes) -> None:
        try:
            source = json.loads(body).get("source_id") if body else None
        except (ValueError, AttributeError):
            source = None
        self.keys[f"{path} {source}"] += 1
        self.times.append(time.time())

    def answer(self, conn: _Http, method: str, path: str, body: bytes = b"") -> None:
        if self.blackhole:
            return
        if method in ("POST", "PUT"):
            self.created += 1
            self._count(path, body)
            n = self.created
            out = json.dumps({"code": 0, "data": {"id": str(n), "url": f"http://127.0.0.1:{self.port}/a/{n}"}})
            status = "200 OK"
        elif path == "/_count":
            out, status = str(self.created), "200 OK"
        elif path == "/_creates":
            out, status = json.dumps({"keys": self.keys, "times": self.times}), "200 OK"
        elif method == "DELETE" or path.startswith("/a/"):
            out, status = '{"code": 0}', "200 OK"
        else:
            out, status = '{"code": 404, "message": "no such page"}', "404 Not Found"
        if self.delay and not path.startswith("/_"):
            asyncio.get_running_loop().call_later(self.delay, conn.send, status, out.encode())
        else:
            conn.send(status, out.encode())


async def _serve(delay: float, blackhole: bool) -> None:
    loop = asyncio.get_running_loop()
    peer = _Peer(port=0, delay=delay, blackhole=blackhole)
    server = await loop.create_server(lambda: _Http(peer), "127.0.0.1", 0, backlog=1024)
    peer.port = server.sockets[0].getsockname()[1]
    print(f"port {peer.port}", flush=True)
    await server.serve_forever()


class PeerProcess:
    """The peer as a child process: `with PeerProcess(delay_ms=20) as peer: peer.url`."""

    def __init__(self, *, delay_ms: float = 0.0, blackhole: bool = False) -> None:
        self.args = [sys.executable, str(Path(__file__).resolve()), "--delay-ms", str(delay_ms)]
        if blackhole:
            self.args.append("--blackhole")
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> PeerProcess:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            self.proc.kill()
            raise RuntimeError(f"the peer did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--blackhole", action="store_true")
    args = parser.parse_args()
    try:
        asyncio.run(_serve(args.delay_ms / 1000, args.blackhole))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
