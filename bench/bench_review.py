"""Benchmark: the machine time one reviewer needs to clear N waiting items (default 100), by door.

    python bench/bench_review.py                 # 100 items
    python bench/bench_review.py --items 300     # a year's backlog of one step
    python bench/bench_review.py --smoke         # 2 items, the one-per-call door left out: the CI smoke test

Each door starts from its own fresh store (SQLite, the shipped config, the sandbox off: nothing is sent)
holding N `news` items waiting for the section chief, and one account holding that role (argon2id at the
library's default cost, as shipped). The figures are the time the machine makes a reviewer wait, from the
login to the last sign-off stored; reading the items is the reviewer's own time and not counted. (The
smoke test shares one store between the doors, each with its own items.)

  - desk, batch:        log in, open "my queue" (N rows), tick all, one "approve the ticked" post;
  - desk, one by one:   log in, then for each item its page and its approve button (the redirect followed);
  - CLI, batch:         `publisher approve ID ID ...` once, authenticated by PUBLISHER_TOKEN;
  - CLI, one per call:  `publisher approve ID` per item (timed over a sample, scaled to N), the only way before.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import structlog
import uvicorn
import yaml
from argon2 import PasswordHasher

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from publisher.app.web.app import create_app  # noqa: E402
from publisher.app.web.context import WebContext  # noqa: E402
from publisher.clock import SystemClock  # noqa: E402
from publisher.config.settings import Config, load_config  # noqa: E402
from publisher.model import RevisionState  # noqa: E402
from publisher.review.accounts import Accounts  # noqa: E402
from publisher.review.chain import Review, findings_for  # noqa: E402
from publisher.store.db import Store  # noqa: E402

PASSWORD = "bench 审核 password"
IDEALS = {"desk, batch": "≤ 5 s", "desk, one by one": "≤ 0.1 s per item", "CLI, batch": "≤ 5 s",
          "CLI, one per call": "(the way before: ~1.5 s per item)"}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or platform.machine())
    return (f"nproc {os.cpu_count()}; CPU {cpu}; Python {platform.python_version()}; SQLite {sqlite3.sqlite_version}; "
            f"{datetime.now(UTC):%Y-%m-%d}; load average {os.getloadavg()[0]:.2f}")


def world(work: Path, n: int, hasher: PasswordHasher | None = None) -> tuple[Path, Config, list[str]]:
    """A working directory: the shipped config on a SQLite store, N items in review, one reviewer."""
    work.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    data["store"] = {"url": "sqlite:///var/publisher.db"}
    data["sandbox"] = {"enabled": False}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        data["web"] = {"listen": f"127.0.0.1:{s.getsockname()[1]}"}
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    (work / "var").mkdir(exist_ok=True)
    config = load_config(path, env={}, adapters=False)
    store = Store.open(config.store_url)
    clock = SystemClock()
    Accounts(store, clock, roles=config.roles, hasher=hasher).add("li", "李科长", ["section_chief"], None, PASSWORD)
    review = Review(store, config, clock)
    ids = [f"2015-news-{i:04d}" for i in range(n)]
    for i, item_id in enumerate(ids):
        title, body = f"全市安全生产检查进展（第{i + 1}期）", "各区县安监局：现将检查进展通报如下。"
        with store.tx() as conn:
            rid, _ = store.add_revision(conn, {
                "item_id": item_id, "title": title, "category": "news", "body": body, "summary": None,
                "doc_date": date(2015, 3, 2 + i % 20), "source": None, "author": "办公室", "publish_at": None,
                "channels": [], "attachments": [], "retract": False, "findings": findings_for(config, title, body),
                "state": RevisionState.REVIEW, "file_name": f"{item_id}.md", "file_sha256": None}, clock.now())
            review.settle(conn, rid)
    store.close()
    return path, config, ids


def approved(config: Config, ids: list[str]) -> int:
    store = Store.open(config.store_url, migrate=False)
    try:
        return sum(1 for i in ids if (r := store.revision(i)) is not None and r.state == RevisionState.APPROVED)
    finally:
        store.close()


@contextmanager
def desk_server(config: Config) -> Iterator[str]:
    store = Store.open(config.store_url, migrate=False)
    clock = SystemClock()
    ctx = WebContext(config=config, store=store, clock=clock, accounts=Accounts(store, clock, roles=config.roles),
                     review=Review(store, config, clock))
    server = uvicorn.Server(uvicorn.Config(create_app(ctx), host="127.0.0.1", port=config.web.port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{config.web.port}"
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    if match is None:
        raise SystemExit("the page carries no CSRF token")
    return match.group(1)


def _login(c: httpx.Client) -> None:
    r = c.post("/login", data={"name": "li", "password": PASSWORD, "csrf_token": _csrf(c.get("/login").text)},
               follow_redirects=False)
    if r.status_code != 303:
        raise SystemExit(f"login failed: {r.status_code} {r.text[:200]}")


def desk_batch(config: Config, ids: list[str]) -> float:
    with desk_server(config) as url, httpx.Client(base_url=url, timeout=120) as c:
        start = time.perf_counter()
        _login(c)
        queue = c.get("/desk").text
        ticked = [v for v in re.findall(r'name="item_id" value="([^"]+)"', queue) if v.partition(":")[2] in ids]
        page = c.post("/desk/approve", data={"item_id": ticked, "csrf_token": _csrf(queue)})
        elapsed = time.perf_counter() - start
        if page.status_code != 200:
            raise SystemExit(f"batch approval answered {page.status_code}")
    return elapsed


def desk_one_by_one(config: Config, ids: list[str]) -> float:
    with desk_server(config) as url, httpx.Client(base_url=url, timeout=60, follow_redirects=True) as c:
        start = time.perf_counter()
        _login(c)
        for item_id in ids:
            page = c.get(f"/desk/item/{item_id}").text
            read = re.search(r'name="revision" value="(\d+)"', page)
            if read is None:
                raise SystemExit(f"{item_id}: the item page offers no approve button")
            c.post(f"/desk/item/{item_id}/approve", data={"csrf_token": _csrf(page), "revision": read.group(1)})
        return time.perf_counter() - start


def _cli(config_path: Path, token: str, *ids: str) -> None:
    done = subprocess.run([sys.executable, "-m", "publisher", "approve", *ids, "--config", str(config_path)],
                          env={**os.environ, "PUBLISHER_TOKEN": token, "COLUMNS": "200"}, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"publisher approve failed: {done.stdout[-500:]} {done.stderr[-500:]}")


def _token(config: Config) -> str:
    store = Store.open(config.store_url, migrate=False)
    try:
        return Accounts(store, SystemClock(), roles=config.roles).issue_token("li")
    finally:
        store.close()


def cli_batch(config_path: Path, config: Config, ids: list[str]) -> float:
    token = _token(config)
    start = time.perf_counter()
    _cli(config_path, token, *ids)
    return time.perf_counter() - start


def cli_one_per_call(config_path: Path, config: Config, ids: list[str], sample: int) -> tuple[float, int]:
    token = _token(config)
    start = time.perf_counter()
    for item_id in ids[:sample]:
        _cli(config_path, token, item_id)
    return (time.perf_counter() - start) / sample * len(ids), sample


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # figures only
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--sample", type=int, default=10, help="CLI calls timed one by one (scaled to --items)")
    parser.add_argument("--smoke", action="store_true",
                        help="2 items, light password hashes, no one-per-call door: the CI smoke test (its figures "
                             "mean nothing)")
    parser.add_argument("--dir", type=Path, default=None, help="where the working directories go (default: a temp dir)")
    args = parser.parse_args()
    n, sample = (2, 1) if args.smoke else (args.items, min(args.sample, args.items))
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1) if args.smoke else None
    base = args.dir or Path(tempfile.mkdtemp(prefix="bench-review-"))
    results: list[tuple[str, float, str]] = []
    doors = [d for d in IDEALS if not (args.smoke and d == "CLI, one per call")]  # the smoke spares a process start
    shared = world(base / "smoke", n * len(doors), hasher) if args.smoke else None  # one store for every door
    for k, door in enumerate(doors):
        if shared is not None:
            path, config, every = shared
            ids = every[k * n:(k + 1) * n]
        else:
            path, config, ids = world(base / door.replace(", ", "-").replace(" ", "-"), n, hasher)
        note = ""
        if door == "desk, batch":
            seconds = desk_batch(config, ids)
        elif door == "desk, one by one":
            seconds = desk_one_by_one(config, ids)
        elif door == "CLI, batch":
            seconds = cli_batch(path, config, ids)
        else:
            seconds, timed = cli_one_per_call(path, config, ids, sample)
            note = f" ({timed} calls timed, scaled to {n})"
            ids = ids[:timed]
        done = approved(config, ids)
        if done != len(ids):
            raise SystemExit(f"{door}: {done} of {len(ids)} approved")
        results.append((door, seconds, note))
    print(f"clearing {n} waiting items, one reviewer (login to the last sign-off stored):")
    for door, seconds, note in results:
        print(f"{door:<20} {seconds:8.2f} s  {seconds / n * 1000:7.1f} ms/item  ideal {IDEALS[door]}{note}")
    print(f"machine: {machine()}")
    print(f"command: python bench/bench_review.py{' --smoke' if args.smoke else f' --items {n}'}")


if __name__ == "__main__":
    main()
