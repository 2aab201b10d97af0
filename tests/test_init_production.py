"""`publisher init` writes a production config (sandbox off, no default for any secret) unless asked for the
demo, and check-config names every secret that is unset, including one the shipped file would fill from the
sandbox's own values once the sandbox is off."""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path

import yaml
from click.testing import CliRunner

from publisher.app.cli.main import main

SHIPPED = resources.files("publisher.config").joinpath("default.yaml").read_text(encoding="utf-8")
# every variable the shipped file fills with a default when unset (the sandbox's secrets among them)
DEFAULTED = sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):-[^}]+\}", json.dumps(yaml.safe_load(SHIPPED)))))
CLEAN_ENV = {name: None for name in DEFAULTED}  # CliRunner unsets a variable given as None


def _run(*args: str, env: dict[str, str | None] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env={**CLEAN_ENV, **(env or {})})
    return result.exit_code, result.output


def test_init_writes_a_production_config_whose_missing_secrets_check_config_names(tmp_path: Path) -> None:
    """The production config has the sandbox off and bare `${NAME}` secrets; check-config fails naming each
    unset one, and passes once they are all set."""
    assert DEFAULTED, "the shipped config.yaml has no defaulted secret left: this test guards nothing"
    code, out = _run("init", str(tmp_path / "prod"))
    assert code == 0 and "production" in out
    path = tmp_path / "prod" / "config.yaml"
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert data["sandbox"]["enabled"] is False
    assert not re.search(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-[^}]+\}", json.dumps(data))
    assert all(f"${{{name}}}" in text for name in DEFAULTED)
    code, out = _run("check-config", "--config", str(path))
    assert code != 0
    for name in DEFAULTED:
        assert f"environment variable {name} is not set" in out, out
    code, out = _run("check-config", "--config", str(path), env={name: "a-real-secret-0123" for name in DEFAULTED})
    assert code == 0, out


def test_init_demo_writes_the_shipped_sandbox_config(tmp_path: Path) -> None:
    """`--demo` writes the shipped file as it is: the sandbox on, so check-config passes with nothing set."""
    code, _ = _run("init", "--demo", str(tmp_path / "demo"))
    path = tmp_path / "demo" / "config.yaml"
    assert code == 0 and path.read_text(encoding="utf-8") == SHIPPED
    code, out = _run("check-config", "--config", str(path))
    assert code == 0, out


def test_check_config_refuses_a_sandbox_default_once_the_sandbox_is_off(tmp_path: Path) -> None:
    """The demo file with the sandbox switched off and the secrets unset: check-config names each secret that
    would silently take the sandbox's value."""
    _run("init", "--demo", str(tmp_path / "d"))
    path = tmp_path / "d" / "config.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("sandbox: {enabled: true", "sandbox: {enabled: false"),
                    encoding="utf-8")
    code, out = _run("check-config", "--config", str(path))
    assert code != 0
    for name in DEFAULTED:
        if name in os.environ:
            continue
        assert f"environment variable {name} is not set, and the sandbox is off" in out, out
