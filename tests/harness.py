"""Building blocks for end-to-end tests: a working directory wired to the running sandbox."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml

from publisher.app.daemon import Daemon
from publisher.app.web.app import create_app
from publisher.app.web.context import WebContext
from publisher.clock import Clock
from publisher.config.settings import Config, load_config
from publisher.sandbox import CREDENTIALS

SHIPPED = Path(__file__).resolve().parent.parent / "config.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(root: Path, sandbox: Any, *, web_port: int | None = None, store_url: str | None = None,
                 sources: bool = False, **overrides: Any) -> Path:
    """The shipped config.yaml, pointed at this test's sandbox port, store and web port; its district
    sources only with `sources=True` (else a run imports the sandbox's district entries too)."""
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    sb = sandbox.base_url
    web_port = web_port or free_port()
    smtp_port = getattr(sandbox, "smtp_port", None) or free_port()  # the press relay (a daemon's own sandbox: here)
    data["sandbox"] = {"enabled": False, "smtp": f"127.0.0.1:{smtp_port}"}
    data["web"] = {"listen": f"127.0.0.1:{web_port}"}
    data["store"] = {"url": store_url or "sqlite:///var/publisher.db"}
    data["queue"] = {"path": "queue", "rescan": "30s", "settle": "1ms"}
    ch = data["channels"]
    ch["bureau_site"]["base_url"] = f"{sb}/wordpress"
    ch["bureau_site"]["app_password"] = CREDENTIALS["wordpress_app_password"]
    ch["city_portal"]["url"] = f"{sb}/portal/api/articles"
    ch["city_portal"]["verify_feed"] = f"{sb}/portal/rss.xml"
    ch["city_portal"]["auth"] = {"bearer": CREDENTIALS["portal_token"]}
    ch["provincial_feed"]["public_url"] = f"http://127.0.0.1:{web_port}/feeds/provincial_feed.xml"
    ch["provincial_feed"]["websub_hub"] = f"{sb}/hub/"
    ch["provincial_feed"]["verify_feed"] = f"{sb}/hub/collected.xml"
    ch["microblog"]["api_base"] = f"{sb}/weibo/2/"
    ch["microblog"]["access_token"] = CREDENTIALS["weibo_token"]
    ch["microblog"]["web_base"] = f"{sb}/weibo"
    ch["wechat"]["api_base"] = f"{sb}/wechat"
    ch["wechat"]["secret"] = CREDENTIALS["wechat_secret"]
    ch["wechat"]["default_cover"] = f"{sb}/wechat/demo-cover.png"
    ch["press"]["host"], ch["press"]["port"] = "127.0.0.1", smtp_port
    if sources:
        for src in data["sources"].values():
            src["url"] = src["url"].replace("http://127.0.0.1:8701", sb)
    else:
        data.pop("sources", None)
    for key, value in overrides.items():
        node = data
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    root.mkdir(parents=True, exist_ok=True)
    (root / "queue" / "inbox").mkdir(parents=True, exist_ok=True)
    target = root / "config.yaml"
    target.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return target


def drop(inbox: Path, name: str, front: dict[str, Any], body: str = "正文。", *, encoding: str = "utf-8") -> Path:
    """Write an item file the way a careful editor's tool does: to a temp name, then rename."""
    text = "---\n" + yaml.safe_dump(front, allow_unicode=True, sort_keys=False) + "---\n" + body + "\n"
    tmp = inbox / f".{name}.tmp"
    tmp.write_bytes(text.encode(encoding))
    final = inbox / name
    tmp.rename(final)
    return final


def drop_notice(inbox: Path, key: str) -> Path:
    """A notice routed to the city portal alone, with the id `key`: the dispatcher tests' item."""
    return drop(inbox, f"{key}.md", {"id": key, "title": f"关于开展安全检查的通知（{key}）", "category": "updates",
                                     "channels": ["city_portal"]})


async def portal_daemon(root: Path, sandbox: Any, keys: Iterable[str], *, concurrency: int, clock: Clock,
                        store_url: str | None = None) -> Daemon:
    """A daemon whose city portal has `concurrency` slots, with a notice for each of `keys` taken in."""
    cfg = load(write_config(root, sandbox, store_url=store_url, **{"channels.city_portal.concurrency": concurrency}))
    daemon = Daemon(cfg, clock=clock)
    for key in keys:
        drop_notice(root / "queue" / "inbox", key)
    await daemon.intake.scan()
    return daemon


def received(sandbox: Any, service: str) -> Any:
    return httpx.get(f"{sandbox.base_url}/_sandbox/{service}/received", timeout=10).json()


def faults(sandbox: Any, service: str, **knobs: Any) -> None:
    httpx.put(f"{sandbox.base_url}/_sandbox/{service}/faults", json=knobs, timeout=10).raise_for_status()


@contextmanager
def web_server(ctx: WebContext, port: int) -> Iterator[str]:
    """The daemon's web app on loopback in a thread (the hub fetches the feed from it)."""
    server = uvicorn.Server(uvicorn.Config(create_app(ctx), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)


def load(path: Path) -> Config:
    return load_config(path)


def settings(sandbox: Any, service: str, **values: Any) -> None:
    httpx.put(f"{sandbox.base_url}/_sandbox/{service}/settings", json=values, timeout=10).raise_for_status()
