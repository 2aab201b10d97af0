"""The command line as a user meets it: run as a subprocess on a fresh `publisher init` directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from publisher.config.settings import ConfigError, load_config
from tests.harness import free_port
from tests.test_cli_accounts import reviewers

SHIPPED = Path(__file__).resolve().parent.parent / "config.yaml"


def cli(*args: str, cwd: Path, check: bool = True, token: str | None = None) -> subprocess.CompletedProcess[str]:
    """`publisher ARGS` in `cwd`; `token`: the acting account's (PUBLISHER_TOKEN)."""
    env = {k: v for k, v in os.environ.items() if k != "PUBLISHER_TOKEN"} | ({"PUBLISHER_TOKEN": token} if token else {})
    proc = subprocess.run([sys.executable, "-m", "publisher", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=180, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"publisher {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """`publisher init --demo`, with the web and sandbox ports moved to free ones so tests never collide."""
    root = tmp_path / "bureau"
    cli("init", "--demo", str(root), cwd=tmp_path)
    config = root / "config.yaml"
    text = config.read_text(encoding="utf-8")
    web, sb = free_port(), free_port()
    text = text.replace("127.0.0.1:8700", f"127.0.0.1:{web}").replace("127.0.0.1:8701", f"127.0.0.1:{sb}")
    config.write_text(text, encoding="utf-8")
    return root


def test_init_writes_the_shipped_config_and_folders(workdir: Path) -> None:
    """init makes config.yaml (the shipped one), queue/inbox, archive, rejected and var/."""
    for sub in ("queue/inbox", "queue/archive", "queue/rejected", "var"):
        assert (workdir / sub).is_dir()
    assert "check-config" not in cli("check-config", cwd=workdir).stderr
    packaged = (Path(__file__).resolve().parent.parent / "publisher" / "config" / "default.yaml").read_text("utf-8")
    assert packaged == SHIPPED.read_text("utf-8"), "publisher/config/default.yaml must equal config.yaml"


def test_first_run_flows_items_and_the_review_commands_work(workdir: Path) -> None:
    """A fresh directory: items flow to the sandbox on `run --once`; review, approve, show and items answer."""
    inbox = workdir / "queue" / "inbox"
    (inbox / "a.md").write_text("---\nid: cli-1\ntitle: 安全生产动态\ncategory: updates\n---\n正文。\n", "utf-8")
    (inbox / "b.md").write_text("---\nid: cli-2\ntitle: 关于开展检查的通知\ncategory: notices\n---\n正文。\n", "utf-8")
    (inbox / "c.md").write_text("---\ntitel: 拼错了\ncategory: news\n---\n正文。\n", "utf-8")
    out = cli("run", "--once", cwd=workdir)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"accepted": 2, "rejected": 1, "duplicate": 0}
    note = (workdir / "queue" / "rejected" / "c.md.error.txt").read_text("utf-8")
    assert "titel" in note and "title" in note
    assert "cli-2" in cli("review", cwd=workdir).stdout
    tokens = reviewers(workdir / "config.yaml", {"李科长": ("section_chief",), "张副局长": ("deputy_director",)})
    wrong = cli("approve", "cli-2", "--role", "deputy_director", cwd=workdir, check=False, token=tokens["张副局长"])
    assert wrong.returncode != 0 and "waits for section_chief" in wrong.stdout
    cli("approve", "cli-2", cwd=workdir, token=tokens["李科长"])
    cli("approve", "cli-2", cwd=workdir, token=tokens["张副局长"])
    cli("run", "--once", cwd=workdir)
    shown = cli("show", "cli-2", cwd=workdir).stdout
    assert "李科长" in shown and "市安监局门户网站" in shown
    assert "cli-1" in cli("items", cwd=workdir).stdout
    assert "approve" in cli("audit", "cli-2", cwd=workdir).stdout


def test_check_config_names_every_problem_with_its_place(tmp_path: Path) -> None:
    """Bad durations, unknown keys, dangling references and unset secrets are all listed, secrets by name only."""
    data = yaml.safe_load(SHIPPED.read_text("utf-8"))
    data["channels"]["microblog"]["sla"] = "2 hours"
    data["channels"]["microblog"]["access_token"] = "${WEIBO_TOKEN_FOR_TEST}"
    data["channels"]["city_portal"]["urll"] = "typo"
    data["categories"]["news"]["review"] = ["chief_editor"]
    data["channels"]["microblog"]["link_from"] = "nowhere"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    os.environ.pop("WEIBO_TOKEN_FOR_TEST", None)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    text = str(exc.value)
    assert "channels.microblog.sla: '2 hours' is not a duration like 30s, 15m, 2h or 14d" in text
    assert "environment variable WEIBO_TOKEN_FOR_TEST is not set" in text
    out = cli("check-config", "--config", str(path), cwd=tmp_path, check=False)
    assert out.returncode != 0 and "channels.microblog.sla" in out.stderr


def test_check_config_reports_adapter_keys_and_references(tmp_path: Path) -> None:
    """Problems that only show after the first pass (adapter keys, references) are named too."""
    data = yaml.safe_load(SHIPPED.read_text("utf-8"))
    data["channels"]["city_portal"]["urll"] = "typo"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    with pytest.raises(ConfigError, match=r"channels\.city_portal\.urll: unknown key"):
        load_config(path)
    data = yaml.safe_load(SHIPPED.read_text("utf-8"))
    data["categories"]["news"]["review"] = ["chief_editor"]
    data["channels"]["microblog"]["link_from"] = "nowhere"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "categories.news.review: role 'chief_editor' is not defined" in str(exc.value)
    assert "channels.microblog.link_from: channel 'nowhere' is not defined" in str(exc.value)


def test_sigterm_stops_the_daemon_cleanly_and_healthz_answers(workdir: Path) -> None:
    """The daemon answers /healthz while running and exits 0 on SIGTERM, logging its stop."""
    config = load_config(workdir / "config.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "publisher", "run"], cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"{config.web.base_url}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert health.json()["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert events[0] == "sandbox.started" and "daemon.stopping" in events and events[-1] == "daemon.stopped"


def _wait_healthy(base_url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{base_url}/healthz", timeout=1)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.05)


def _flat(text: str) -> str:
    return "".join(text.split())  # rich wraps long lines; the Chinese notes have no spaces of their own


def test_lag_asks_the_running_daemon_and_says_when_it_cannot(workdir: Path) -> None:
    """`publisher lag` answers from the daemon running on this config file; when the daemon is down, or runs
    on another version of config.yaml, it reads the store itself and says why in the table."""
    config = load_config(workdir / "config.yaml")
    (workdir / "queue" / "inbox" / "a.md").write_text(
        "---\nid: lag-1\ntitle: 安全生产动态\ncategory: updates\n---\n正文。\n", "utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "publisher", "run"], cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    try:
        _wait_healthy(config.web.base_url, proc)
        served = json.loads(cli("lag", "--json", cwd=workdir).stdout)
        direct = json.loads(cli("lag", "--json", "--store", cwd=workdir).stdout)
        assert (served["source"], direct["source"]) == ("daemon", "store")
        for key in ("name", "display_name", "sla_s"):  # the counts move while the daemon sends the item
            assert [c[key] for c in served["channels"]] == [c[key] for c in direct["channels"]]
        assert "由运行中的守护进程" in _flat(cli("lag", cwd=workdir).stdout)
        bad = cli("lag", "--since", "yesterday", cwd=workdir, check=False)  # the daemon refuses; so does the store path
        assert bad.returncode == 2 and "'yesterday' is neither a duration" in bad.stderr
        one = json.loads(cli("lag", "--json", "--channel", "microblog", "--at", "2015-03-01T00:00:00Z",
                             cwd=workdir).stdout)
        assert one["source"] == "daemon" and [c["name"] for c in one["channels"]] == ["microblog"]
        assert one["generated_at"] == "2015-03-01T00:00:00Z"

        path = workdir / "config.yaml"
        path.write_text(path.read_text("utf-8") + "\n# edited after the daemon started\n", "utf-8")
        edited = cli("lag", cwd=workdir).stdout
        assert "另一份或修改前的config.yaml" in _flat(edited) and edited.startswith("发布延迟")  # the report still comes
        assert json.loads(cli("lag", "--json", cwd=workdir).stdout)["source"] == "store"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert "没有守护进程应答" in _flat(cli("lag", cwd=workdir).stdout)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_an_approval_from_another_process_is_sent_at_once(workdir: Path, backend: str,
                                                          request: pytest.FixtureRequest) -> None:
    """A reviewer's `publisher approve` in another process reaches the channels within a second or so, not at
    the idle daemon's next poll (30 s): SQLite's data_version, PostgreSQL's LISTEN/NOTIFY."""
    path = workdir / "config.yaml"
    if backend == "postgresql":
        data = yaml.safe_load(path.read_text("utf-8"))
        data["store"] = {"url": request.getfixturevalue("pg_url")}
        path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    config = load_config(path)
    tokens = reviewers(path, {"李科长": ("section_chief",), "张副局长": ("deputy_director",)})
    (workdir / "queue" / "inbox" / "n.md").write_text(
        "---\nid: fast-1\ntitle: 关于春节期间安全生产工作的通知\ncategory: notices\n---\n正文。\n", "utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "publisher", "run"], cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    try:
        _wait_healthy(config.web.base_url, proc)
        deadline = time.monotonic() + 30
        while "fast-1" not in cli("review", cwd=workdir).stdout:
            assert time.monotonic() < deadline, "the item never reached review"
            time.sleep(0.2)
        time.sleep(1.0)  # the workers have gone idle: their own poll is 30 s away
        cli("approve", "fast-1", cwd=workdir, token=tokens["李科长"])
        cli("approve", "fast-1", cwd=workdir, token=tokens["张副局长"])
        approved = time.monotonic()
        sandbox = f"http://{config.sandbox.listen}"
        while "关于春节期间安全生产工作的通知" not in httpx.get(f"{sandbox}/_sandbox/wordpress/received",
                                                                timeout=5).text:
            assert time.monotonic() - approved < 10, "the approval waited for the daemon's poll"
            time.sleep(0.05)
        assert time.monotonic() - approved < 5
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_retry_and_items_say_what_is_wrong(workdir: Path) -> None:
    """A typo in an id, a channel or a state gets words that name it, and what to do."""
    unknown = cli("retry", "no-such-item", cwd=workdir, check=False)
    assert unknown.returncode == 1 and "no item with id 'no-such-item'" in unknown.stderr
    channel = cli("retry", "x", "--channel", "weibo", cwd=workdir, check=False)
    assert channel.returncode == 2 and "these are: bureau_site" in channel.stderr
    state = cli("items", "--state", "faild", cwd=workdir, check=False)
    assert state.returncode == 2 and "'faild' is not one of" in state.stderr
