"""The reviewers' command line as they meet it (subprocesses on a real store): `publisher users`, sign-offs
made by an authenticated account (a token in PUBLISHER_TOKEN, or the name and password prompts), the old
`--by` refused, and a batch `publisher approve ID ID ...` with one authentication."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from publisher.app.cli.main import main
from publisher.clock import SystemClock
from publisher.config.settings import load_config
from publisher.review.accounts import Accounts
from publisher.store.db import Store
from tests.test_accounts import World

SHIPPED = Path(__file__).resolve().parent.parent / "config.yaml"
BASE_ENV = {k: v for k, v in os.environ.items() if k not in ("PUBLISHER_TOKEN", "PUBLISHER_USER")}


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def publisher(*args: str, cwd: Path, token: str | None = None, stdin: str = "", check: bool = True,
              process: bool = False) -> Ran:
    """`publisher ARGS` on the config in `cwd`, acting with `token` (PUBLISHER_TOKEN) and `stdin` typed at the
    prompts: in this process through click's runner (the real command line, without a Python start-up per
    call), or as a subprocess (`process=True`) exactly as a user runs it."""
    if process:
        env = {**BASE_ENV, **({"PUBLISHER_TOKEN": token} if token else {})}
        proc = subprocess.run([sys.executable, "-m", "publisher", *args], cwd=cwd, env=env, input=stdin,
                              capture_output=True, text=True, timeout=120)
        ran = Ran(proc.returncode, proc.stdout, proc.stderr)
    else:
        env: dict[str, str | None] = {"PUBLISHER_TOKEN": token, "PUBLISHER_USER": None,
                                      "PUBLISHER_CONFIG": str(cwd / "config.yaml")}
        result = CliRunner().invoke(main, list(args), input=stdin, env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        ran = Ran(result.exit_code, result.stdout, result.stderr)
    if check and ran.returncode != 0:
        raise AssertionError(f"publisher {' '.join(args)} failed:\n{ran.stdout}\n{ran.stderr}")
    return ran


def reviewers(config_path: Path, people: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Accounts made through the accounts API (as `publisher users add --no-password` and `users token` do);
    name → its CLI token."""
    config = load_config(config_path, adapters=False)
    store = Store.open(config.store_url)
    accounts = Accounts(store, SystemClock(), roles=config.roles)
    tokens = {}
    for name, roles in people.items():
        accounts.add(name, name, roles, None, None)
        tokens[name] = accounts.issue_token(name)
    store.close()
    return tokens


@pytest.fixture
def bureau(tmp_path: Path) -> World:
    """The shipped config.yaml in tmp_path, its store holding items that wait for review."""
    data = yaml.safe_load(SHIPPED.read_text("utf-8"))
    data["store"] = {"url": "sqlite:///var/p.db"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    world = World(tmp_path)
    for n in range(3):
        world.drop(f"g-{n}", "guides")  # each waits for section_chief
    world.drop("n-1", "notices")  # section_chief, then deputy_director
    world.drop("l-1", "laws")  # legal
    return world


def test_users_commands_manage_accounts_and_never_echo_a_secret(bureau: World) -> None:
    root = bureau.config.base_dir
    secret = "李科长的口令 2015"
    added = publisher("users", "add", "li", "--display-name", "李科长", "--role", "section_chief", "--email",
                      "li@bureau.example", cwd=root, stdin=f"{secret}\n{secret}\n")
    assert "added li (李科长)" in added.stdout and secret not in added.stdout + added.stderr
    mismatch = publisher("users", "add", "wang", "--role", "legal", cwd=root, stdin="aaaaaaaa\nbbbbbbbb\n",
                         check=False)
    assert mismatch.returncode != 0 and bureau.accounts.get("wang") is None
    publisher("users", "roles", "li", "section_chief", "deputy_director", cwd=root)
    listed = publisher("users", "list", cwd=root).stdout
    assert "李科长" in listed and "deputy_director" in listed and "li@bureau.example" in listed
    token = publisher("users", "token", "li", cwd=root)
    assert token.stdout.strip().startswith("pub_") and len(token.stdout.strip().splitlines()) == 1
    assert bureau.accounts.by_token(token.stdout.strip()).name == "li"
    assert bureau.accounts.verify_password("li", secret) is not None
    publisher("users", "disable", "li", cwd=root)
    assert bureau.accounts.by_token(token.stdout.strip()) is None
    changes = [(e.action, e.actor) for e in bureau.store.audit_log() if e.detail.get("account") == "li"]
    assert [a for a, _ in changes] == ["account_disabled", "token_issued", "roles_changed", "account_added"]
    assert all(actor.startswith("admin:") for _, actor in changes)



def test_unauthenticated_wrong_role_and_by_are_refused(bureau: World) -> None:
    root = bureau.config.base_dir
    tokens = reviewers(root / "config.yaml", {"li": ("section_chief",), "wang": ("legal",)})
    by = publisher("approve", "g-0", "--role", "section_chief", "--by", "李科长", cwd=root, check=False)
    assert by.returncode != 0 and "--by is gone" in by.stderr and "PUBLISHER_TOKEN" in by.stderr
    forged = publisher("approve", "g-0", cwd=root, token="pub_" + "x" * 43, check=False)
    assert forged.returncode != 0 and "not the token of an enabled account" in forged.stderr
    no_one = publisher("approve", "g-0", "--user", "li", cwd=root, stdin="wrong password\n", check=False)
    assert no_one.returncode != 0 and "wrong account name or password" in no_one.stderr
    wrong_role = publisher("approve", "g-0", cwd=root, token=tokens["wang"], check=False)
    assert wrong_role.returncode != 0 and "wang may not sign as section_chief" in wrong_role.stdout
    assert bureau.store.revision("g-0").state == "review"
    assert [e.action for e in bureau.store.audit_log("g-0")] == []  # nothing was signed
    assert "approve recorded" in publisher("approve", "l-1", cwd=root, token=tokens["wang"]).stdout


def test_batch_approve_with_one_password_prompt(bureau: World) -> None:
    """One name and password for five items: those li may sign are signed (each its own audit entry), the
    one waiting for legal is named with the reason, and the command says how many were not signed."""
    root = bureau.config.base_dir
    bureau.accounts.add("li", "李科长", ["section_chief"], None, "correct horse")
    out = publisher("approve", "g-0", "g-1", "g-2", "n-1", "l-1", "--user", "li", cwd=root,
                    stdin="correct horse\n", check=False)
    assert out.returncode != 0 and "1 of 5 not signed" in out.stderr
    assert out.stdout.count("approve recorded") == 4 and "l-1: refused" in out.stdout
    assert "correct horse" not in out.stdout + out.stderr
    assert [bureau.store.revision(i).state for i in ("g-0", "g-1", "g-2", "n-1", "l-1")] == [
        "approved", "approved", "approved", "review", "review"]
    assert [e.actor for e in bureau.store.audit_log() if e.action == "approve"] == ["li"] * 4
    mine = publisher("review", "--mine", "--user", "li", cwd=root, stdin="correct horse\n").stdout
    assert "Nothing waits for li (李科长)" in mine  # n-1 now waits for deputy_director, l-1 for legal


def test_the_readme_first_run_signs_with_a_demo_reviewer(bureau: World) -> None:
    """The README's flow on the shipped (sandbox) config: demo reviewers, a token, my queue, a batch approve."""
    root = bureau.config.base_dir
    demo = publisher("users", "demo", cwd=root, process=True).stdout
    assert "4 demo reviewer(s) added" in demo and "sandbox-demo" in demo
    assert "demo account" in bureau.accounts.get("demo_director").display_name
    assert bureau.accounts.verify_password("demo_legal", "sandbox-demo").roles == {"legal"}
    token = bureau.accounts.issue_token("demo_section_chief")  # `users token` itself: see the test above
    mine = publisher("review", "--mine", cwd=root, token=token).stdout
    assert "g-0" in mine and "n-1" in mine and "l-1" not in mine
    publisher("approve", "g-0", "g-1", cwd=root, token=token, process=True)
    assert [e.actor for e in bureau.store.audit_log() if e.action == "approve"] == ["demo_section_chief"] * 2
