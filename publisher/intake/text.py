"""Text an item file may carry, and text a note may quote.

Every channel ends in XML or HTML (the Atom feed, WordPress, the portal's RSS): characters XML 1.0
cannot carry (C0 controls other than tab and newline, DEL and the C1 controls, lone UTF-16 surrogates,
U+FFFE and U+FFFF) are refused at intake, named by field and place, instead of failing a channel
later. A surrogate *pair* written as a YAML escape (`"\\ud83d\\ude00"`, as JSON tools write an emoji)
is joined into the character it means.

What a note or the audit log quotes from a file is shown, never trusted: cut to a few dozen characters
and with every character a terminal or a text editor would act on written as `\\uXXXX`.
"""

from __future__ import annotations

import re
from typing import Any

# What XML 1.0 cannot carry, plus DEL and C1 (legal in XML, never meant in an article: mojibake or terminal escapes)
UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_QUOTE_MAX = 80  # characters of a value a note quotes


def join_surrogates(text: str) -> str:
    """`\\ud83d\\ude00` (two halves of a UTF-16 pair, as YAML reads the escapes) → 😀; lone halves stay."""
    if not _SURROGATE.search(text):
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if "\ud800" <= ch <= "\udbff" and i + 1 < len(text) and "\udc00" <= text[i + 1] <= "\udfff":
            out.append(chr(0x10000 + ((ord(ch) - 0xD800) << 10) + (ord(text[i + 1]) - 0xDC00)))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def join_all(value: Any) -> Any:
    """`join_surrogates` through the strings of a YAML value (lists and mappings included)."""
    if isinstance(value, str):
        return join_surrogates(value)
    if isinstance(value, list):
        return [join_all(v) for v in value]
    if isinstance(value, dict):
        return {join_all(k): join_all(v) for k, v in value.items()}
    return value


def first_unsafe(text: str) -> tuple[int, str] | None:
    """(index, character) of the first character intake refuses, or None."""
    m = UNSAFE.search(text)
    return None if m is None else (m.start(), m.group())


def code_point(ch: str) -> str:
    return f"U+{ord(ch):04X}"


def shown(value: Any, limit: int = _QUOTE_MAX) -> str:
    """A value as a note quotes it: at most `limit` characters, nothing a terminal would act on."""
    text = value if isinstance(value, str) else repr(value)[:4 * limit]  # repr of a big structure: no more than needed
    total = len(text)
    cut = total > limit
    text = UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text[:limit])
    text = text.replace("\u202e", "\\u202e").replace("\u202d", "\\u202d")  # bidi overrides reorder what follows
    return f"{text}…（共 {total} 字 / {total} chars）" if cut and isinstance(value, str) else (f"{text}…" if cut else text)


def safe_note(text: str, limit: int) -> str:
    """Note text that encodes as UTF-8 whatever it quotes, cut to `limit` characters."""
    text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    if len(text) > limit:
        text = text[:limit] + "\n…\n"
    return text
