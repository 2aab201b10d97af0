"""config.yaml: pydantic models, `${ENV}` secrets, and errors that name their place in the file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from channels.base import ChannelOptions
from channels.registry import REGISTRY, adapter_class
from publisher.config.file import DEFAULT_LISTEN, ConfigError, read_config_file, substitute_env
from publisher.config.screen import ScreenConfig
from publisher.units import Duration, RateLimit, parse_duration

__all__ = ["Config", "ConfigError", "load_config", "parse_config"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreConfig(_Model):
    url: str = "sqlite:///var/publisher.db"


class QueueConfig(_Model):
    path: Path = Path("queue")
    rescan: Duration = parse_duration("30s")
    # a file the inotify watcher has not seen closed (there at start-up, or watch off) must keep its size this long
    settle: Duration = parse_duration("2s")
    watch: bool = True  # inotify (IN_CLOSE_WRITE / IN_MOVED_TO); off on network mounts (the rescan still runs)


SECRET_KEYS = {"token", "session_key", "password", "app_password", "access_token", "secret", "bearer"}
MIN_TOKEN_CHARS, MIN_TOKEN_DISTINCT = 8, 6  # web.token: a guessable token is refused by check-config


class WebConfig(_Model):
    listen: str = DEFAULT_LISTEN
    token: SecretStr | None = None
    public_url: str | None = None  # how readers reach this server (feeds); default http://<listen>
    # Host names this server answers to besides those of `listen` and `public_url` (a DNS-rebinding page
    # reaches a loopback server under its own name: any other Host is refused)
    allowed_hosts: list[str] = Field(default_factory=list)
    session_key: SecretStr | None = None  # signs session cookies; default: a new random key per start
    login_attempts: int = Field(default=5, ge=1)  # failed logins per address or per account before a pause
    login_pause: Duration = parse_duration("15m")  # how long logins pause after those failures

    @field_validator("token")
    @classmethod
    def _token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value().strip():
            return None  # "${TOKEN:-}" unset: no token
        text = v.get_secret_value()
        if len(text) < MIN_TOKEN_CHARS or len(set(text)) < MIN_TOKEN_DISTINCT or text.isdigit():
            raise ValueError(f"the token is too easy to guess: use at least {MIN_TOKEN_CHARS} characters, "
                             f"{MIN_TOKEN_DISTINCT} of them different and not only digits "
                             "(e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(24))'`)")
        return v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, _, port = v.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{v!r} is not host:port like 127.0.0.1:8700")
        return v

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def is_loopback(self) -> bool:
        return self.host in ("127.0.0.1", "::1", "localhost")

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.listen}").rstrip("/")

    @property
    def hosts(self) -> list[str]:
        """The Host names this server answers to; ["*"] only when it listens everywhere and names no host."""
        names = {h.lower() for h in self.allowed_hosts}
        if self.public_url:
            names.add((urlsplit(self.public_url).hostname or "").lower())
        wildcard = self.host in ("0.0.0.0", "::", "")
        if self.is_loopback or wildcard:
            names |= {"127.0.0.1", "localhost", "::1", "[::1]"}
        if not wildcard:
            names |= {self.host.lower(), f"[{self.host.lower()}]" if ":" in self.host else self.host.lower()}
        elif not self.public_url and not self.allowed_hosts:
            return ["*"]
        return sorted(n for n in names if n)


class SandboxConfig(_Model):
    enabled: bool = False
    listen: str = "127.0.0.1:8701"


class CategoryConfig(_Model):
    name: str
    review: list[str] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list)
    freshness: Duration = parse_duration("365d")


class RetryConfig(_Model):
    max_attempts: int = Field(default=10, ge=1)
    max_age: Duration = parse_duration("2d")
    base: Duration = parse_duration("2s")
    cap: Duration = parse_duration("30m")


class ChannelConfig(_Model):
    """The keys every channel takes; the adapter's own keys land in `options`."""

    model_config = ConfigDict(extra="allow")

    type: str
    name: str | None = None
    sla: Duration = parse_duration("1d")
    concurrency: int = Field(default=4, ge=1, le=64)
    rate_limit: RateLimit | None = None
    retry: RetryConfig = Field(default_factory=RetryConfig)
    enabled: bool = True
    link_from: str | None = None
    timeout: Duration = parse_duration("10s")
    verify_after: Duration = parse_duration("0s")  # first read-back this long after the send
    freshness: Duration | None = None  # nothing new this long fails inspection; default: see publisher.lag.report
    options: ChannelOptions = Field(default_factory=ChannelOptions)  # set by parse_config

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        if v not in REGISTRY:  # known by name: the adapter module itself is imported only when needed
            raise ValueError(f"unknown channel type {v!r}; known types: {', '.join(sorted(REGISTRY))}")
        return v

    def display(self, role: str) -> str:
        return self.name or role


class EmailAlerts(_Model):
    to: list[str]
    smtp: str = "127.0.0.1:25"
    sender: str = "publisher@localhost"


class AlertsConfig(_Model):
    webhook: str | None = None
    email: EmailAlerts | None = None


class LagConfig(_Model):
    """The lag report's rules (publisher/lag/report.py); the defaults follow the inspection rules and the 2019 Regulation."""

    window: Duration = parse_duration("7d")  # p50/p95/max lag over deliveries due this recently
    freshness_warn_before: Duration = parse_duration("3d")  # warn this long before a freshness threshold
    deadline_working_days: int = Field(default=20, ge=1)  # public within this many working days of the date
    deadline_warn_working_days: int = Field(default=5, ge=0)  # "at risk" when this few are left
    alert_every: Duration = parse_duration("1m")  # how often the daemon checks for new alerts


# The rows of the national annual report's table 主动公开政府信息情况 (国办公开办函〔2021〕30号) that count
# items: config.yaml's `annual_report` maps each to the categories whose items are its documents or decisions.
# (行政事业性收费 is an amount of money, which the store cannot know.)
ANNUAL_REPORT_ROWS = ("规章", "行政规范性文件", "行政许可", "行政处罚", "行政强制")


class ReviewNotifyConfig(_Model):
    """Reviewers are told what waits for their roles: one digest per role every `every`, by e-mail to the
    accounts holding the role (when `smtp` is set) and/or a JSON webhook; a revision within
    `escalate_working_days` of its legal deadline goes to the next role up (or `escalate_to`)."""

    every: Duration = parse_duration("5m")
    smtp: str | None = None  # host:port; None: no e-mail
    sender: str = "publisher@localhost"
    webhook: str | None = None  # e.g. an enterprise chat robot's URL
    escalate_working_days: int = Field(default=3, ge=0)
    escalate_to: list[str] = Field(default_factory=list)  # e-mail addresses when no role is above


class ReviewConfig(_Model):
    """The review rules a bureau may set (publisher/review/rules.py)."""

    separation_of_duties: bool = True  # one account signs at most one step of a revision's chain
    author_may_sign: bool = False  # the item's author may sign or override it
    override_roles: list[str] = Field(default_factory=list)  # may release a screen finding
    retract_roles: list[str] = Field(default_factory=list)  # may take an item down (and sign a queued retraction)
    session_ttl: Duration = parse_duration("8h")  # a web session ends this long after login
    notify: ReviewNotifyConfig = Field(default_factory=ReviewNotifyConfig)


class Config(_Model):
    store: StoreConfig = Field(default_factory=StoreConfig)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    locale: Literal["zh-CN", "en"] = "zh-CN"
    roles: dict[str, str] = Field(default_factory=dict)
    categories: dict[str, CategoryConfig]
    channels: dict[str, ChannelConfig]
    screen: ScreenConfig = Field(default_factory=ScreenConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    lag: LagConfig = Field(default_factory=LagConfig)
    annual_report: dict[str, list[str]] = Field(default_factory=dict)  # national table row → categories
    base_dir: Path = Path(".")  # the directory of config.yaml; relative paths count from it
    digest: str = ""  # which file at which content (config_file.config_digest); the daemon shows it to `publisher lag`

    @model_validator(mode="after")
    def _references(self) -> Config:
        problems: list[str] = []
        for key, cat in self.categories.items():
            for role in cat.review:
                if role not in self.roles:
                    problems.append(f"categories.{key}.review: role {role!r} is not defined under roles")
            for routed in cat.channels:
                if routed not in self.channels:
                    problems.append(f"categories.{key}.channels: channel {routed!r} is not defined under channels")
        for key in ("override_roles", "retract_roles"):
            for role in getattr(self.review, key):
                if role not in self.roles:
                    problems.append(f"review.{key}: role {role!r} is not defined under roles")
        for name, ch in self.channels.items():
            if ch.link_from is not None:
                if ch.link_from not in self.channels:
                    problems.append(f"channels.{name}.link_from: channel {ch.link_from!r} is not defined")
                elif self.channels[ch.link_from].link_from is not None:
                    problems.append(f"channels.{name}.link_from: {ch.link_from!r} itself waits for another channel")
                elif ch.link_from == name:
                    problems.append(f"channels.{name}.link_from: a channel cannot wait for itself")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @model_validator(mode="after")
    def _annual_report(self) -> Config:
        problems = [f"annual_report.{row}: not a row of the national table that counts items; these are: "
                    f"{', '.join(ANNUAL_REPORT_ROWS)}" for row in self.annual_report if row not in ANNUAL_REPORT_ROWS]
        problems += [f"annual_report.{row}: category {key!r} is not defined under categories"
                     for row, keys in self.annual_report.items() for key in keys if key not in self.categories]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def path(self, p: Path | str) -> Path:
        p = Path(p)
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def store_url(self) -> str:
        """The store URL with a relative SQLite path resolved against the config's directory."""
        url = self.store.url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and ":memory:" not in url:
            return "sqlite:///" + str(self.path(url[len("sqlite:///"):]))
        return url

    @property
    def queue_dir(self) -> Path:
        return self.path(self.queue.path)

    def category_name(self, key: str) -> str:
        return self.categories[key].name if key in self.categories else key

    def role_name(self, key: str) -> str:
        return self.roles.get(key, key)


# --- loading -------------------------------------------------------------------------------------

def _describe(err: Any, raw: Any) -> str:
    loc = ".".join(str(x) for x in err["loc"] if not str(x).startswith("function-"))
    msg = err["msg"]
    msg = msg.removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling)"
    elif err["type"] == "missing":
        msg = "is required"
    value = err.get("input")
    shown = f" {_short(value)}" if err["type"] not in ("missing", "extra_forbidden") and not isinstance(value, dict) else ""
    if loc.rpartition(".")[2] in SECRET_KEYS:
        shown = ""  # a refused secret is named, never shown
    if shown and _short(value) in msg:
        shown = ""
    return f"{loc}:{shown} {msg}".replace(":  ", ": ")


def _short(value: Any) -> str:
    text = yaml.safe_dump(value, allow_unicode=True, default_flow_style=True).strip().removesuffix("...").strip()
    return text if len(text) < 60 else text[:57] + "..."


def _substitute(data: dict[Any, Any], env: dict[str, str], *, adapters: bool) -> tuple[dict[Any, Any], list[str]]:
    """config.yaml's data with `${ENV}` substituted, and each unset variable in words. Without adapters, an
    unset variable in a channel's own keys (those ChannelConfig does not declare: the adapter's options, where
    the secrets live) is no problem: the key is left None, and nothing that runs without adapters reads it."""
    missing: list[str] = []
    channels = data.get("channels")
    if adapters or not isinstance(channels, dict):
        return substitute_env(data, "", missing, env), missing

    def channel(name: str, ch: Any) -> Any:
        if not isinstance(ch, dict):
            return substitute_env(ch, f"channels.{name}", missing, env)  # validation says what is wrong
        return {key: substitute_env(value, f"channels.{name}.{key}", missing, env) if key in ChannelConfig.model_fields
                else substitute_env(value, f"channels.{name}.{key}", [], env, none_when_unset=True)
                for key, value in ch.items()}
    substituted = {key: {name: channel(str(name), ch) for name, ch in channels.items()} if key == "channels"
                   else substitute_env(value, str(key), missing, env) for key, value in data.items()}
    return substituted, missing


def parse_config(data: Any, *, base_dir: Path, source: str = "config.yaml",
                 env: dict[str, str] | None = None, adapters: bool = True) -> Config:
    """Validate config.yaml's data. `adapters=True` (the default) is for the commands that send: every
    `${ENV}` must be set and every channel's own keys must suit its adapter. `adapters=False` is the mode for
    readers, the commands that never talk to a channel (`publisher lag`, `items`, `show`, `review`, `audit`,
    and approve/reject/override/retract/retry, which only write to the store): each channel's own keys are
    neither checked nor read, the adapter modules are not imported, and a secret in those keys may be unset.
    A variable a reader does use (`store.url`, `web.token`, a channel's `sla`) must still be set."""
    if not isinstance(data, dict):
        raise ConfigError(source, ["the file must be a YAML mapping (key: value lines)"])
    data, missing = _substitute(data, dict(os.environ) if env is None else env, adapters=adapters)
    try:
        config = Config.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            if err["type"] == "value_error" and "\n" in err["msg"]:
                problems += err["msg"].removeprefix("Value error, ").split("\n")
            else:
                problems.append(_describe(err, data))
        raise ConfigError(source, missing + problems) from None
    problems = []
    for name, ch in config.channels.items() if adapters else ():
        extra = dict(ch.model_extra or {})
        try:
            ch.options = adapter_class(ch.type).Options.model_validate(extra)
        except ValidationError as exc:
            for err in exc.errors():
                err = {**err, "loc": ("channels", name, *err["loc"])}
                problems.append(_describe(err, data))
            continue
        for key in extra:
            (ch.__pydantic_extra__ or {}).pop(key, None)
    if missing or problems:
        raise ConfigError(source, missing + problems)
    return config


def load_config(path: Path | str, env: dict[str, str] | None = None, *, adapters: bool = True) -> Config:
    """config.yaml validated; `adapters=False` for readers (see parse_config). The digest is the file's own
    (its path and bytes), whichever mode and whatever the environment holds."""
    path = Path(path)
    data, digest = read_config_file(path)
    config = parse_config(data, base_dir=path.resolve().parent, source=str(path), env=env, adapters=adapters)
    config.digest = digest
    return config
