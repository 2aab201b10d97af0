"""config.yaml as a file: read it, parse the YAML, substitute `${ENV}` secrets. No validation here
(that is publisher.config.settings, which needs pydantic); this module imports only PyYAML, so a command that
needs one key, such as `publisher lag` looking for the running daemon, starts in a few milliseconds.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import yaml

from publisher.errors import PublisherError

DEFAULT_LISTEN = "127.0.0.1:8700"  # web.listen when config.yaml does not say
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(PublisherError):
    """config.yaml cannot be used; `problems` lists each with its path in the file."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = Path(path)
        self.problems = problems
        super().__init__(f"{path}: {len(problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in problems))


def read_config_file(path: Path | str) -> tuple[Any, str]:
    """(the parsed YAML, the digest that names this file at this content) or ConfigError in words."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(path, [f"{path} does not exist; `publisher init DIR` writes a working one"]) from None
    try:
        data = yaml.load(raw.decode("utf-8-sig"), Loader=_Loader)
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [f"byte {exc.start}: not UTF-8; save config.yaml as UTF-8"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(path, [f"{where}not valid YAML ({getattr(exc, 'problem', exc)})"]) from None
    return data, config_digest(path, raw)


def config_digest(path: Path, raw: bytes) -> str:
    """Which config a process runs on: the file's absolute place and its bytes. Two working
    directories made by `publisher init` hold the same bytes but different stores."""
    return hashlib.sha256(str(path.resolve()).encode() + b"\0" + raw).hexdigest()[:32]


def substitute_env(node: Any, path: str, missing: list[str], env: dict[str, str], *,
                   none_when_unset: bool = False) -> Any:
    """Replace `${NAME}` / `${NAME:-default}` in every string; collect unresolved names (never values).
    An unset variable reads as "" (the caller reports `missing`); with `none_when_unset` the whole string
    becomes None instead, for a key the caller leaves without a value rather than half a secret."""
    if isinstance(node, dict):
        return {k: substitute_env(v, f"{path}.{k}" if path else str(k), missing, env, none_when_unset=none_when_unset)
                for k, v in node.items()}
    if isinstance(node, list):
        return [substitute_env(v, f"{path}[{i}]", missing, env, none_when_unset=none_when_unset) for i, v in enumerate(node)]
    if isinstance(node, str):
        found = len(missing)

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            missing.append(f"{path}: environment variable {name} is not set (the secret comes from ${{{name}}})")
            return ""
        text = _ENV.sub(repl, node)
        return None if none_when_unset and len(missing) > found else text
    return node
