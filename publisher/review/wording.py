"""The wording dictionary: wrong forms with their right form, and expressions that must not appear.

The shipped starter dictionary (`wording.yaml` beside this module, each entry with its source or reason)
and config.yaml's `screen:` entries are compiled into one Aho–Corasick automaton (pyahocorasick), so a body
is read once whatever the size of the dictionary. Patterns are normalised as the text is (NFKC, simplified),
so `截止到` also finds `截止到` typed in traditional characters or full-width forms.

A wrong form that is part of its own right form (a leader's former title 局长 inside the current 副局长)
is not reported where the right form stands.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

import ahocorasick
import yaml

from publisher.config.screen import WordingRule
from publisher.review.seen import t2s


def normalise(text: str) -> str:
    """A pattern in the form the screen reads text in: NFKC, no invisible characters, simplified."""
    kept = "".join(c for c in unicodedata.normalize("NFKC", text) if unicodedata.category(c) != "Cf")
    return str(t2s().convert(kept))


@lru_cache(maxsize=1)
def starter_rules() -> tuple[WordingRule, ...]:
    """The shipped dictionary (publisher/review/wording.yaml)."""
    raw = yaml.safe_load(files("publisher.review").joinpath("wording.yaml").read_text("utf-8"))
    return tuple(WordingRule.model_validate(entry) for entry in raw)


@dataclass(frozen=True, slots=True)
class Hit:
    rule: WordingRule
    start: int
    end: int


class Dictionary:
    """Every rule in one automaton; `find` yields each occurrence of each rule in a normalised text."""

    def __init__(self, rules: Iterable[WordingRule]) -> None:
        self._automaton = ahocorasick.Automaton()
        by_pattern: dict[str, list[WordingRule]] = {}
        for rule in rules:
            pattern = normalise(rule.match)
            if not pattern or (rule.right is not None and normalise(rule.right) == pattern):
                continue  # a rule that folding makes meaningless (the wrong form reads as the right one)
            by_pattern.setdefault(pattern, []).append(rule)
        for pattern, group in by_pattern.items():
            self._automaton.add_word(pattern, (pattern, tuple(group)))
        self.size = len(by_pattern)
        if self.size:
            self._automaton.make_automaton()

    def find(self, text: str) -> Iterator[Hit]:
        if not self.size:
            return
        for last, (pattern, group) in self._automaton.iter(text):
            start, end = last - len(pattern) + 1, last + 1
            for rule in group:
                if not _right_form_here(text, pattern, start, rule):
                    yield Hit(rule, start, end)


def _right_form_here(text: str, pattern: str, start: int, rule: WordingRule) -> bool:
    if rule.right is None:
        return False
    right = normalise(rule.right)
    at = right.find(pattern)
    while at >= 0:
        if start - at >= 0 and text.startswith(right, start - at):
            return True
        at = right.find(pattern, at + 1)
    return False
