"""The screen's compiled rules follow the configuration they are asked for: terms, the shipped dictionary switched
off, and config.yaml's own entries each change what is found, and going back finds what it found before."""

from __future__ import annotations

from pathlib import Path

from publisher.config.screen import WordingRule
from publisher.config.settings import Config, load_config
from publisher.review.chain import findings_for

ROOT = Path(__file__).resolve().parent.parent
TEXT = "截止到本月底，甲项目已完工。"  # 截止到: a wrong form in the shipped dictionary


def _with(config: Config, **screen: object) -> Config:
    return config.model_copy(update={"screen": config.screen.model_copy(update=screen)})


def _found(config: Config) -> list[tuple[str, str]]:
    return [(f["kind"], f["text"]) for f in findings_for(config, "标题", TEXT)]


def test_each_configuration_is_screened_by_its_own_rules() -> None:
    """A term added, the starter dictionary off, an own entry: each shows at once; the first config is unchanged."""
    config = load_config(ROOT / "config.yaml", env={})
    shipped = _found(config)
    assert ("wording", "截止到") in shipped and ("term", "甲项目") not in shipped
    assert ("term", "甲项目") in _found(_with(config, terms=[*config.screen.terms, "甲项目"]))
    assert ("wording", "截止到") not in _found(_with(config, starter=False))
    own = WordingRule(match="完工", right="竣工", level="advisory", reason="用词", reason_en="wording")
    assert ("wording", "完工") in _found(_with(config, rules=[*config.screen.rules, own]))
    assert _found(config) == shipped
