"""Rendering an item's Markdown for a medium: the one place that decides what HTML is safe to publish."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt

_MARKDOWN = MarkdownIt("commonmark").enable(["table", "strikethrough"])
# nh3 (ammonia) drops <script>, every on* attribute and any URL scheme not listed here (javascript:, data:)
URL_SCHEMES = {"http", "https", "mailto", "tel"}


# Every channel of an item renders the same body: the recent ones are kept (pure functions of the text), so a
# fan-out to four channels parses and sanitises it once, not four times. Long bodies are not kept.
CACHED_UP_TO = 64 * 1024


def render_html(markdown: str) -> str:
    """Markdown to HTML that is safe to publish: no script, no event handlers, no javascript: links."""
    return _html(markdown) if len(markdown) <= CACHED_UP_TO else _html.__wrapped__(markdown)


def render_text(markdown: str) -> str:
    """Markdown to plain text (marks and tags gone, paragraphs kept)."""
    return _text(markdown) if len(markdown) <= CACHED_UP_TO else _text.__wrapped__(markdown)


@lru_cache(maxsize=256)
def _html(markdown: str) -> str:
    return nh3.clean(_MARKDOWN.render(markdown), url_schemes=URL_SCHEMES, link_rel="noopener noreferrer").strip()


@lru_cache(maxsize=256)
def _text(markdown: str) -> str:
    stripped = html.unescape(nh3.clean(_MARKDOWN.render(markdown), tags=set()))
    lines = (line.strip() for line in stripped.splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def longest(fits: Callable[[int], bool], text: str) -> int:
    """The largest n ≤ len(text) for which `fits(n)` holds (fits is monotone; 0 when none does)."""
    lo, hi = 0, len(text)
    while lo < hi:  # binary search: a 200-character title is fitted in 8 tries, not 200
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo
