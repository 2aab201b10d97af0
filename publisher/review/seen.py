"""A field as its readers see it, with a way back to what the editor wrote.

The screen must read what a channel shows, not the characters an editor typed: `&#26426;&#23494;`,
`机<span></span>密`, `機密` and `机\u200b密` all read 机密. `Seen.of` renders a field (the body as
Markdown, the other fields as text that a web channel may still read as HTML), decodes entities, drops
tags, comments, scripts and styles, then normalises each visible character: Unicode NFKC (full-width
digits and letters, NBSP and ideographic spaces become ASCII), format characters removed (zero-width
spaces and joiners, word joiners, soft hyphens, BOMs, bidi controls, variation selectors), and traditional
characters folded to simplified (OpenCC `t2s`).

Every character of the normalised text keeps the offset of the character of the source it came from, so a
finding reports the text exactly as it stands in the field (`&#26426;&#23494;★`), where the desk can
mark it, beside the text a reader sees (`机密★`).
"""

from __future__ import annotations

import bisect
import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser

import opencc
from markdown_it import MarkdownIt

# The same Markdown the web channels render (channels/render.py: commonmark, tables, strikethrough).
MARKDOWN = MarkdownIt("commonmark").enable(["table", "strikethrough"])

# Elements whose content no reader sees (nh3 drops them with their content before anything is published).
_HIDDEN = frozenset({"script", "style", "template", "head", "title", "noscript", "iframe", "object", "textarea"})
# Elements that start a new line (block level, table cells): text in two of them is never one word.
_BLOCK = frozenset({"p", "div", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "li", "ul", "ol", "blockquote",
                    "pre", "table", "thead", "tbody", "tr", "td", "th", "section", "article", "header", "footer",
                    "dl", "dt", "dd", "figure", "figcaption", "address", "details", "summary"})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})

# How each line of the rendered text was set: a heading, a list item, a table cell or running text.
LineKind = str  # "heading" | "list" | "cell" | "text"

_TAG = re.compile(r"<!--.*?-->|<![^>]*>|<\?.*?\?>|</?[A-Za-z][^<>]*>", re.S)
_ENTITY = re.compile(r"&(?:#[0-9]{1,7};?|#[xX][0-9A-Fa-f]{1,6};?|[A-Za-z][A-Za-z0-9]{1,31};?)")
_LOOKAHEAD = 2000  # source characters searched for one rendered character before it is left unmapped


@lru_cache(maxsize=1)
def t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def _invisible(ch: str) -> bool:
    """Characters that take no place on screen: format characters (Cf) and variation selectors."""
    return unicodedata.category(ch) == "Cf" or "\ufe00" <= ch <= "\ufe0f" or "\U000e0100" <= ch <= "\U000e01ef"


@lru_cache(maxsize=65536)
def _normal(ch: str) -> str:
    """One character as the screen reads it: NFKC, and nothing for what takes no place on screen."""
    return "".join(n for n in unicodedata.normalize("NFKC", ch) if not _invisible(n))


_UNCHANGED: set[str] = set()  # characters met so far that are their own `_normal` form (most of a text's)
_UNCHANGED_MOST = 65536
_IDEOGRAPHS = re.compile("[\u4e00-\u9fff]+")  # CJK Unified Ideographs: each its own NFKC form, none invisible


def _changed(text: str) -> dict[str, str]:
    """Each character of `text` that `_normal` changes, with what it becomes. The ideographs (most of a Chinese
    text) are left out in one pass, and the characters already known to stay as they are in one set difference
    (both in C): a body's few hundred distinct characters are not looked up one by one."""
    if text.isascii():  # ASCII is its own NFKC form and holds no invisible character
        return {}
    out = {}
    for c in set(_IDEOGRAPHS.sub("", text)) - _UNCHANGED:
        n = _normal(c)
        if n != c:
            out[c] = n
        elif len(_UNCHANGED) < _UNCHANGED_MOST:
            _UNCHANGED.add(c)
    return out


class _Text(HTMLParser):
    """The visible text of rendered HTML: data outside hidden elements, a newline at each block edge,
    and, for each line, how it was set (heading, list item, table cell or text)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.size = 0
        self.stack: list[str] = []
        self.hidden = 0
        self.lines: list[tuple[int, LineKind]] = [(0, "text")]
        self.fresh = True  # nothing on the current line yet

    def _newline(self) -> None:
        if not self.fresh:
            self.parts.append("\n")
            self.size += 1
            self.fresh = True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag in _BLOCK:
            self._newline()
        if tag not in ("br", "hr", "img", "input", "meta", "link", "wbr"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN and self.hidden:
            self.hidden -= 1
        if tag in self.stack:
            while self.stack and self.stack.pop() != tag:
                pass
        if tag in _BLOCK:
            self._newline()

    def handle_data(self, data: str) -> None:
        if self.hidden or not data:
            return
        if self.fresh:
            data = data.lstrip("\n")
            if not data:
                return
            kind = ("heading" if _HEADINGS.intersection(self.stack) else "list" if "li" in self.stack
                    else "cell" if {"td", "th"}.intersection(self.stack) else "text")
            self.lines.append((self.size, kind))
            self.fresh = False
        self.parts.append(data)
        self.size += len(data)
        if data.endswith("\n"):
            self.fresh = True


def _visible(rendered_html: str) -> tuple[str, list[tuple[int, LineKind]]]:
    parser = _Text()
    parser.feed(rendered_html)
    parser.close()
    return "".join(parser.parts), parser.lines


# What could make Markdown more than paragraphs of text: a character that starts markup anywhere (emphasis, a
# link, code, an entity, HTML, a table, a strikethrough), a control character, a line that begins or ends with
# white space (indented code, a hard break, the space Markdown trims), or one that begins as a heading, a quote,
# a list, a rule or a heading's underline does (`#`, `-`, `+`, `=`, a number and a period or parenthesis).
_MARKUP = re.compile(r"[\\`*_\[\]<>!&|~\x00-\x09\x0b-\x1f\x7f\x85\u2028\u2029]|^[^\S\n]|[^\S\n]$|^[-+=#]|^[0-9]+[.)]",
                     re.MULTILINE)
_BLANK_LINES = re.compile(r"\n\n+")


def _markdown_shown(source: str) -> tuple[str, list[tuple[int, LineKind]]]:
    """A body's visible text and lines as Markdown renders it. Paragraphs of plain text (most bodies) are read
    without the renderer: each paragraph's lines as they stand, one line break after each, every paragraph a line
    of running text, as `_visible(MARKDOWN.render(source))` gives them (tests/test_seen_plain.py holds the two
    equal); anything else is rendered."""
    if _MARKUP.search(source):
        return _visible(MARKDOWN.render(source))
    shown: list[str] = []
    lines: list[tuple[int, LineKind]] = [(0, "text")]
    size = 0
    for paragraph in _BLANK_LINES.split(source.strip("\n")):
        if paragraph:
            lines.append((size, "text"))
            shown.append(paragraph)
            shown.append("\n")
            size += len(paragraph) + 1
    return "".join(shown), lines


def _align(source: str, shown: str) -> list[int | None]:
    """For each character a reader sees, the offset in `source` it came from (None: made by the rendering,
    such as a line break between blocks). Markup (tags, Markdown marks) is skipped; an entity or a
    backslash escape stands for the character it gives."""
    out: list[int | None] = []
    p, n = 0, len(source)
    budget = 4 * n + 4 * _LOOKAHEAD  # source characters skipped over in all: linear in the field's size
    i, total = 0, len(shown)
    while i < total:
        # A run of text the source holds as it is shown (a paragraph's words): each character is found where
        # the one before it ended, as the walk below would find it, taken in one step. An `&` ends the run
        # (it may begin an entity, which the walk reads as the character it stands for).
        if p < n and source[p] == shown[i] != "&":
            run = _common_run(source, p, shown, i)
            out.extend(range(p, p + run))
            budget -= run
            p += run
            i += run
            continue
        ch = shown[i]
        i += 1
        q, found = p, None
        limit = min(n, p + (_LOOKAHEAD if budget > 0 else 8))
        while q < limit:
            c = source[q]
            if c == "&" and (m := _ENTITY.match(source, q)) and html.unescape(m.group()).startswith(ch):
                found, q = q, m.end()  # `R&amp;D` shows R&D: the whole entity stands for the one character
                break
            if c == ch:
                found, q = q, q + 1
                break
            if c == "&" and m:
                q = m.end()
                continue
            if c == "<" and (m := _TAG.match(source, q)):
                q = m.end()
                continue
            q += 1
        out.append(found)
        budget -= q - p
        if found is not None:
            p = q
    return out


def _common_run(source: str, p: int, shown: str, i: int) -> int:
    """How many characters from source[p] on equal those from shown[i] on, stopping before an `&` of the source
    (at least one: the caller saw source[p] == shown[i] != "&")."""
    amp = source.find("&", p)
    most = min((len(source) if amp < 0 else amp) - p, len(shown) - i)
    good, step = 1, 1
    while good < most:  # doubling, then halving: a few comparisons in C for a paragraph
        size = min(most, good + step)
        if source.startswith(shown[i + good:i + size], p + good):
            good, step = size, step * 2
        elif step == 1:
            break
        else:
            step //= 2
    return good


@dataclass(frozen=True)
class Seen:
    """A field's text as a reader sees it, normalised, with the source offset of each character."""

    source: str
    shown: str  # the rendered text, before normalisation (what a reader reads)
    text: str  # normalised: NFKC, no invisible characters, simplified
    to_shown: Sequence[int]  # text[i] comes from shown[to_shown[i]] (a range where each is its own)
    to_source: Sequence[int | None]  # shown[j] comes from source[to_source[j]]
    lines: tuple[tuple[int, LineKind], ...]  # (offset in `text` where a line starts, how it was set)

    @classmethod
    def of(cls, source: str, *, mode: str = "markdown") -> Seen:
        """`mode`: "markdown" (the body), "html" (a one-line field a web channel may read as HTML: tags show
        nothing, entities decode) or "plain" (the characters as written, only normalised)."""
        if mode == "markdown":
            shown, shown_lines = _markdown_shown(source)
        elif mode == "html":
            shown, shown_lines = html.unescape(_TAG.sub("", source)), [(0, "text")]
        else:
            shown, shown_lines = source, [(0, "text")]
        to_source: Sequence[int | None] = range(len(source)) if shown == source else _align(source, shown)
        changed = _changed(shown)
        to_shown: Sequence[int] = range(len(shown))
        if not changed:  # most fields: nothing to normalise
            chars = shown
        elif all(len(n) == 1 for n in changed.values()):  # nearly every text (full-width punctuation: one for one)
            chars = shown
            if changed.keys().isdisjoint(changed.values()):  # no pass changes what an earlier one wrote
                for c, n in changed.items():  # one pass in C for each character that changes
                    chars = chars.replace(c, n)
            else:
                chars = shown.translate({ord(c): n for c, n in changed.items()})
        else:
            normal = {c: changed.get(c, c) for c in set(shown)}
            kept: list[str] = []
            offsets: list[int] = []
            for j, ch in enumerate(shown):
                for c in normal[ch]:
                    kept.append(c)
                    offsets.append(j)
            chars, to_shown = "".join(kept), offsets
        text, to_shown = _fold(chars, to_shown)
        lines: list[tuple[int, LineKind]] = []
        i = 0
        for start, kind in shown_lines:  # both in ascending order (to_shown never decreases)
            i = bisect.bisect_left(to_shown, start, i)
            lines.append((i, kind))
        return cls(source=source, shown=shown, text=text, to_shown=to_shown, to_source=to_source,
                   lines=tuple(lines))

    def source_span(self, start: int, end: int) -> tuple[int, int] | None:
        """The span of the source that text[start:end] came from (None when no character of it did)."""
        offsets = [o for i in range(start, end) if (o := self.to_source[self.to_shown[i]]) is not None]
        if not offsets:
            return None
        last = offsets[-1]
        m = _ENTITY.match(self.source, last) if self.source[last] == "&" else None
        return offsets[0], m.end() if m else last + 1

    def shown_span(self, start: int, end: int) -> str:
        """What a reader sees of text[start:end], with whatever the rendering kept between its characters."""
        return self.shown[self.to_shown[start]:self.to_shown[end - 1] + 1]

    def line_kind(self, offset: int) -> LineKind:
        kind = "text"
        for start, k in self.lines:
            if start > offset:
                break
            kind = k
        return kind


def _fold(text: str, to_shown: Sequence[int]) -> tuple[str, Sequence[int]]:
    """Traditional characters folded to simplified, phrase by phrase where OpenCC keeps the length (it
    nearly always does), else character by character so that each keeps its offset."""
    folded = t2s().convert(text)
    if len(folded) == len(text):
        return folded, to_shown
    chars: list[str] = []
    offsets: list[int] = []
    for ch, j in zip(text, to_shown, strict=True):
        for c in t2s().convert(ch):
            chars.append(c)
            offsets.append(j)
    return "".join(chars), offsets
