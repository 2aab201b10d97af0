"""`publisher init`'s two kinds of config.yaml, and check-config's guard against sandbox fallbacks.

The shipped file (publisher/config/default.yaml) is the demo: the sandbox on, and each channel secret
written `${NAME:-the sandbox's value}` so that a first run works with nothing set. A production working
directory must never fall back to those values silently, so `init` writes the same file with the sandbox
off and every default dropped from `${NAME:-default}`: `run` and `check-config` then name each unset secret.
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml

_FALLBACK = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):-([^}]+)\}")  # a variable with a non-empty default
_SANDBOX_ON = re.compile(r"^(sandbox:\s*\{\s*enabled:\s*)true\b", re.MULTILINE)

PRODUCTION_HEADER = ("# Written by `publisher init` for production: the sandbox is off and every secret must be set in\n"
                     "# the environment (no defaults). Point each channel's URL at the real service, then run\n"
                     "# `publisher check-config`. `publisher init --demo DIR` writes the sandbox demo instead.\n")


class TemplateChanged(ValueError):
    """The shipped file no longer has the shape the production rewrite expects (a defect to fix here)."""


def production_config(template: str) -> str:
    """The shipped config with the sandbox off and no default for any `${NAME:-default}` (comments kept)."""
    text, switched = _SANDBOX_ON.subn(r"\1false", template)
    text = _FALLBACK.sub(r"${\1}", text)
    data = yaml.safe_load(text)
    if not switched or (data.get("sandbox") or {}).get("enabled") is not False:
        raise TemplateChanged("the shipped config.yaml has no `sandbox: {enabled: true, …}` line to switch off")
    return PRODUCTION_HEADER + text


def fallback_problems(data: Any, env: dict[str, str] | None = None) -> list[str]:
    """With the sandbox off, each channel key whose `${NAME:-default}` would take its default because NAME
    is unset: in production that default is the sandbox's secret, never the real one."""
    env = dict(os.environ) if env is None else env
    if not isinstance(data, dict) or (data.get("sandbox") or {}).get("enabled", True) is not False:
        return []
    problems: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")
        elif isinstance(node, str):
            problems.extend(f"{path}: environment variable {m.group(1)} is not set, and the sandbox is off: "
                            f"set it (the default written in config.yaml is the sandbox's, not the real secret)"
                            for m in _FALLBACK.finditer(node) if m.group(1) not in env)

    walk(data.get("channels"), "channels")
    return problems
