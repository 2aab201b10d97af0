"""The channels' secrets are needed only by the commands that send: an admin's shell without the WordPress
password still runs the read-only commands (and the review commands, which only write to the store), while
`run` and `check-config` name each missing secret. Commands run as subprocesses on a `publisher init` directory
whose config.yaml takes its secrets from the environment with no sandbox defaults."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from publisher.config.file import config_digest
from publisher.config.settings import ConfigError, load_config, parse_config
from publisher.sandbox.core import CREDENTIALS
from tests.test_cli import _flat, _wait_healthy, workdir  # noqa: F401 (the fixture)
from tests.test_cli_accounts import reviewers

# the shipped config.yaml's channel secrets, and the values the sandbox accepts for them
SECRETS = {"WP_APP_PASSWORD": CREDENTIALS["wordpress_app_password"], "PORTAL_TOKEN": CREDENTIALS["portal_token"],
           "WEIBO_TOKEN": CREDENTIALS["weibo_token"]}
STORE_VAR = "PUBLISHER_SECRETS_TEST_STORE_URL"  # store.url comes from here: a variable readers do need
WITHOUT = {k: v for k, v in os.environ.items() if k not in SECRETS and k != STORE_VAR}


def publisher(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "publisher", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=180)


def ok(*args: str, cwd: Path, env: dict[str, str] = WITHOUT) -> str:
    proc = publisher(*args, cwd=cwd, env=env)
    assert proc.returncode == 0, f"publisher {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def edit(path: Path, change: dict[str, object]) -> None:
    """Set dotted keys of config.yaml (comments are lost; these tests do not need them)."""
    data = yaml.safe_load(path.read_text("utf-8"))
    for dotted, value in change.items():
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            node = node[key]
        node[last] = value
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")


@pytest.fixture
def secretless(workdir: Path) -> Path:  # noqa: F811 (the fixture)
    """The init directory with the channel secrets as bare `${NAME}` (no default) and a screen term."""
    path = workdir / "config.yaml"
    text, n = re.subn(r"\$\{(" + "|".join(SECRETS) + r"):-[^}]*\}", r"${\1}", path.read_text("utf-8"))
    assert n == len(SECRETS), "the shipped config.yaml's secrets changed: update SECRETS"
    path.write_text(text.replace("terms: []", "terms: [内部讨论稿]"), "utf-8")
    return workdir


def fill(root: Path, wp_password: str = SECRETS["WP_APP_PASSWORD"], env: dict[str, str] = WITHOUT) -> None:
    """Three items through `run --once` with the secrets: s-1 sent (bureau_site fails when `wp_password` is
    wrong), s-2 waiting for review, s-3 blocked by the screen."""
    inbox = root / "queue" / "inbox"
    (inbox / "a.md").write_text("---\nid: s-1\ntitle: 安全生产动态\ncategory: updates\n---\n正文。\n", "utf-8")
    (inbox / "b.md").write_text("---\nid: s-2\ntitle: 关于开展检查的通知\ncategory: notices\n---\n正文。\n", "utf-8")
    (inbox / "c.md").write_text("---\nid: s-3\ntitle: 动态\ncategory: updates\n---\n内部讨论稿。\n", "utf-8")
    counts = ok("run", "--once", cwd=root, env={**env, **SECRETS, "WP_APP_PASSWORD": wp_password})
    assert json.loads(counts.strip().splitlines()[-1])["accepted"] == 3


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_read_only_commands_work_without_the_channels_secrets(secretless: Path, backend: str,
                                                              request: pytest.FixtureRequest) -> None:
    """items, show, review, audit and lag answer in a shell that lacks every channel secret but holds the store's URL."""
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else "sqlite:///var/publisher.db"
    edit(secretless / "config.yaml", {"store.url": "${" + STORE_VAR + "}"})
    env = {**WITHOUT, STORE_VAR: url}
    fill(secretless, env=env)
    listed = ok("items", cwd=secretless, env=env)
    assert all(i in listed for i in ("s-1", "s-2", "s-3")) and "3 item(s)" in listed
    assert "s-1" in ok("items", "--state", "sent", cwd=secretless, env=env)
    shown = ok("show", "s-1", cwd=secretless, env=env)
    assert "市安监局门户网站" in shown and "sent" in shown
    waiting = ok("review", cwd=secretless, env=env)
    assert "s-2" in waiting and "section_chief" in waiting and "内部讨论稿" in waiting
    assert "send" in ok("audit", "s-1", cwd=secretless, env=env)
    report = json.loads(ok("lag", "--json", cwd=secretless, env=env))  # no daemon: read from the store
    assert report["source"] == "store" and {c["name"] for c in report["channels"]} >= {"bureau_site", "microblog"}
    assert json.loads(ok("lag", "--json", "--store", cwd=secretless, env=env))["source"] == "store"
    assert ok("lag", cwd=secretless, env=env).startswith("发布延迟")


def test_review_commands_and_retry_work_without_the_channels_secrets(secretless: Path) -> None:
    """approve, reject, override, retract and retry only write to the store, so they need no channel secret."""
    fill(secretless, wp_password="not-the-password")  # bureau_site refuses s-1: a failed delivery to retry
    assert "1 delivery queued again" in ok("retry", "s-1", "--channel", "bureau_site", cwd=secretless)
    tokens = reviewers(secretless / "config.yaml", {"李科长": ("section_chief",), "张副局长": ("deputy_director",),
                                                    "局长": ("director",)})
    as_ = {name: {**WITHOUT, "PUBLISHER_TOKEN": token} for name, token in tokens.items()}
    assert "approve recorded" in ok("approve", "s-2", "--role", "section_chief", cwd=secretless, env=as_["李科长"])
    assert "reject recorded" in ok("reject", "s-2", "--reason", "再改", cwd=secretless, env=as_["张副局长"])
    assert "override recorded" in ok("override", "s-3", "--reason", "已核实", cwd=secretless, env=as_["局长"])
    assert "retract recorded" in ok("retract", "s-1", cwd=secretless, env=as_["局长"])
    actions = {line.split()[3] for line in ok("audit", "--limit", "100", cwd=secretless).splitlines() if line[:2] == "20"}
    assert {"retry", "approve", "reject", "override", "retract_requested"} <= actions


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_run_and_check_config_name_each_missing_secret(secretless: Path, command: str) -> None:
    """`run` and `check-config` refuse a config whose channel secrets are unset, naming each variable and its key."""
    proc = publisher(command, cwd=secretless, env=WITHOUT)
    assert proc.returncode == 1, proc.stderr
    for where, name in (("channels.bureau_site.app_password", "WP_APP_PASSWORD"),
                        ("channels.city_portal.auth.bearer", "PORTAL_TOKEN"),
                        ("channels.microblog.access_token", "WEIBO_TOKEN")):
        assert f"{where}: environment variable {name} is not set" in proc.stderr
    assert not list((secretless / "var").glob("*.db")), "nothing may run on a refused config"


@pytest.mark.parametrize(("change", "command", "problem"), [
    ({"store.url": "${" + STORE_VAR + "}"}, ["items"], f"store.url: environment variable {STORE_VAR} is not set"),
    ({"store.url": "${" + STORE_VAR + "}"}, ["lag", "--store"], f"store.url: environment variable {STORE_VAR} is not set"),
    ({"channels.microblog.sla": "${MICROBLOG_SLA_FOR_TEST}"}, ["show", "s-1"],
     "channels.microblog.sla: environment variable MICROBLOG_SLA_FOR_TEST is not set"),
    ({"web.token": "${PUBLISHER_WEB_TOKEN}", "web.listen": "0.0.0.0:{port}"}, ["lag"],
     "web.token: environment variable PUBLISHER_WEB_TOKEN is not set"),
], ids=["store-url-items", "store-url-lag", "channel-sla-show", "web-token-lag"])
def test_a_missing_variable_a_reader_uses_still_fails_it(secretless: Path, change: dict[str, str], command: list[str],
                                                         problem: str) -> None:
    """A reader still refuses an unset variable outside the channels' own keys, naming it and where it is used."""
    path = secretless / "config.yaml"
    port = load_config(path, env=SECRETS).web.port
    edit(path, {key: value.replace("{port}", str(port)) for key, value in change.items()})
    proc = publisher(*command, cwd=secretless, env={k: v for k, v in WITHOUT.items() if k != "PUBLISHER_WEB_TOKEN"})
    assert proc.returncode == 1 and problem in proc.stderr, proc.stderr
    assert "WP_APP_PASSWORD" not in proc.stderr  # the reader asks only for what it uses


def test_reader_mode_leaves_an_unset_channel_secret_without_a_value(secretless: Path) -> None:
    """Without adapters an unset secret in a channel's own keys is None (nested ones too); with adapters it is an error."""
    data = yaml.safe_load((secretless / "config.yaml").read_text("utf-8"))
    config = parse_config(data, base_dir=secretless, env={}, adapters=False)
    assert (config.channels["bureau_site"].model_extra or {})["app_password"] is None
    assert (config.channels["city_portal"].model_extra or {})["auth"] == {"bearer": None}
    assert config.channels["microblog"].sla.total_seconds() == 2 * 3600  # the keys readers use are all there
    with pytest.raises(ConfigError, match="channels.bureau_site.app_password: environment variable WP_APP_PASSWORD"):
        parse_config(data, base_dir=secretless, env={})
    given = parse_config(data, base_dir=secretless, env=SECRETS)
    assert given.channels["bureau_site"].options.model_dump()["app_password"] is not None


def test_the_config_digest_is_the_files_not_the_secrets(secretless: Path) -> None:
    """The digest `publisher lag` compares with the daemon's is the file's path and bytes, whatever the environment holds."""
    path = secretless / "config.yaml"
    expected = config_digest(path, path.read_bytes())
    assert load_config(path, env=SECRETS).digest == expected
    assert load_config(path, env={}, adapters=False).digest == expected
    assert load_config(path, env={**SECRETS, "WP_APP_PASSWORD": "another"}, adapters=False).digest == expected


def test_lag_without_secrets_is_answered_by_the_daemon_that_has_them(secretless: Path) -> None:
    """A daemon started with the secrets answers `publisher lag` from a shell without them: the digests agree."""
    config = load_config(secretless / "config.yaml", env=SECRETS)
    proc = subprocess.Popen([sys.executable, "-m", "publisher", "run"], cwd=secretless, env={**WITHOUT, **SECRETS},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    try:
        _wait_healthy(config.web.base_url, proc)
        assert json.loads(ok("lag", "--json", cwd=secretless))["source"] == "daemon"
        assert "由运行中的守护进程" in _flat(ok("lag", cwd=secretless))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
