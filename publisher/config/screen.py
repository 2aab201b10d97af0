"""config.yaml's `screen:` section: the bureau's own words for the confidentiality and wording screen.

```yaml
screen:
  terms: [内部讨论稿]                    # must never be published: blocking, as a configured term
  official_name: 淄博市安全生产监督管理局    # the bureau's name ...
  wrong_names: [淄博市安全监督管理局]       # ... and the forms it is mistakenly written in (advisory)
  leaders:                              # a former title beside a name is out of date (advisory)
    - {name: 张三, title: 局长, former_titles: [副局长], wrong_names: [张叁]}
  forbidden: [某某不宜公开的说法]          # expressions that must not appear (blocking)
  rules:                                # anything else: the same shape as the shipped dictionary
    - {match: 安监站, right: 安全生产监督管理站, level: advisory, reason: 全称, reason_en: full name}
  starter: true                         # also the shipped dictionary (publisher/review/wording.yaml)
  links: {allow: [gov.cn], timeout: 5s, every: 30s}
```
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from publisher.units import Duration, parse_duration

Level = Literal["advisory", "blocking"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WordingRule(_Model):
    """One dictionary entry: `match` is wrong (use `right`), or must not appear at all (no `right`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # hashable: the compiled dictionary is cached by its rules

    match: str = Field(min_length=1)
    right: str | None = None
    level: Level = "advisory"
    reason: str = ""
    reason_en: str = ""
    source: str = ""

    @field_validator("match")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("a rule needs the text it matches")
        return v.strip()


class Leader(_Model):
    name: str = Field(min_length=1)
    title: str = Field(min_length=1)  # the current title
    former_titles: list[str] = Field(default_factory=list)
    wrong_names: list[str] = Field(default_factory=list)  # misspellings of the name


class LinksConfig(_Model):
    check: bool = True
    allow: list[str] = Field(default_factory=list)  # domains (and their subdomains); empty: any domain
    timeout: Duration = parse_duration("5s")
    every: Duration = parse_duration("30s")  # how often the daemon looks for revisions with unchecked links

    @field_validator("allow")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        return [d.strip().lower().strip(".") for d in v if d.strip()]


class ScreenConfig(_Model):
    terms: list[str] = Field(default_factory=list)
    official_name: str | None = None
    wrong_names: list[str] = Field(default_factory=list)
    leaders: list[Leader] = Field(default_factory=list)
    forbidden: list[str] = Field(default_factory=list)
    rules: list[WordingRule] = Field(default_factory=list)
    starter: bool = True
    links: LinksConfig = Field(default_factory=LinksConfig)

    def wording_rules(self) -> list[WordingRule]:
        """The bureau's own entries as dictionary rules (the shipped starter dictionary is added by review)."""
        out = list(self.rules)
        if self.official_name:
            out += [WordingRule(match=w, right=self.official_name, level="advisory", source="config.yaml screen.official_name",
                                reason="本局名称写法有误", reason_en="the bureau's official name is written wrongly")
                    for w in self.wrong_names if w.strip()]
        for leader in self.leaders:
            current = f"{leader.name}{leader.title}"
            for former in leader.former_titles:
                for wrong, right in ((f"{leader.name}{former}", current), (f"{former}{leader.name}",
                                                                           f"{leader.title}{leader.name}")):
                    out.append(WordingRule(match=wrong, right=right, level="advisory", source="config.yaml screen.leaders",
                                           reason=f"{leader.name}的现任职务是{leader.title}",
                                           reason_en=f"{leader.name}'s current title is {leader.title}"))
            out += [WordingRule(match=w, right=leader.name, level="advisory", source="config.yaml screen.leaders",
                                reason="领导姓名写错", reason_en="a leader's name is misspelt")
                    for w in leader.wrong_names if w.strip()]
        out += [WordingRule(match=f, level="blocking", source="config.yaml screen.forbidden",
                            reason="本局规定不得出现的说法", reason_en="an expression the bureau does not allow")
                for f in self.forbidden if f.strip()]
        return out
