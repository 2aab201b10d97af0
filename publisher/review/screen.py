"""The confidentiality screen: what must not leave the bureau, found before any channel sees it.

Every revision is screened before publication (title and body). A finding blocks the item until a
reviewer overrides it with a reason, so the screen leans towards markings *as markings*: the words
绝密 / 机密 / 秘密 / 内部 occur in ordinary prose ("保守国家秘密", "内部审计", "机关内部设机构"), and a
law on secrecy must stay publishable.

The rules, and why:

``classified_marking`` (绝密, 机密, 秘密) is flagged when the word stands as a marking:
  * with the star of GB/T 9704 (``机密★10年``, ``秘密★1年``, ``绝密★长期``, ``机密★``), anywhere; ☆ and ＊
    count as the star; a plain ASCII ``*`` only when a period follows (``机密*10年``), because in
    Markdown ``**秘密**`` is bold text;
  * in brackets (``【机密】``, ``〔秘密★1年〕``, ``[绝密]``, ``（机密级）``), anywhere;
  * after a label (``密级：机密``), anywhere;
  * at the start of a line (after Markdown marks), standing alone: the word, optionally with 级 and a
    period, followed by the end of the line, a space or Markdown emphasis (``秘密级``, ``机密 10年``).
  Not flagged: the word inside a sentence ("公民有保守国家秘密的义务", "绝密级国家秘密是最重要的国家
  秘密", "商业秘密"), nor a line that merely begins with it ("机密文件管理办法").

``internal_marking`` (内部, 内部资料, 内部文件, 内部使用, 内部参考) is flagged:
  * in brackets (``【内部】``, ``〔内部资料〕``), anywhere;
  * as a handling instruction: ``内部资料 注意保存`` (also with a comma, 妥善保管, 请勿外传...),
    ``仅供内部使用`` / ``限内部参考`` / ``内部★``, anywhere;
  * at the start of a line, standing alone (``内部``, ``内部资料``, ``内部文件 注意保存``).
  Not flagged: ``内部审计``, ``机关内部设机构``, "加强内部资料管理" inside a sentence.

``resident_id``: 18-character PRC resident ID numbers (GB 11643) whose ISO 7064 MOD 11-2 check
  character is right, whose region code names a province, and whose birth date is a real date
  between 1900 and today; the old 15-digit form with a valid region and date. Invalid checksums
  are not flagged: most 18-digit runs are something else (account or serial numbers).

``mobile_number``: mainland mobile numbers, 1[3-9] and nine more digits, not part of a longer digit
  run; an optional ``+86`` / ``86`` / ``0086`` prefix, and spaces or hyphens in 3-4-4 groups.

``term``: each configured term, as an exact substring.

Full-width digits, ``＋``, ``－`` and ``Ｘ`` are read as their ASCII forms (a one-to-one mapping, so
offsets stay those of the original text).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Literal

Kind = Literal["classified_marking", "internal_marking", "resident_id", "mobile_number", "term"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the screen stopped: `text` is `title`/`body`[start:end] (`where` says which)."""

    kind: Kind
    text: str
    where: str
    start: int
    end: int

    def describe(self, locale: str = "zh-CN") -> str:
        """A short sentence for the reviewer, in Chinese (zh*) or English (anything else)."""
        zh, en = _DESCRIPTIONS[self.kind]
        if locale.lower().startswith("zh"):
            place = "标题" if self.where == "title" else "正文"
            return f"{place}中{zh}\u201c{self.text}\u201d"
        return f"{en} \u201c{self.text}\u201d found in the {self.where}"


_DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "classified_marking": ("发现密级标志", "classified marking"),
    "internal_marking": ("发现内部资料标志", "internal-use marking"),
    "resident_id": ("发现居民身份证号码", "resident ID number"),
    "mobile_number": ("发现手机号码", "mobile number"),
    "term": ("发现敏感词", "configured sensitive term"),
}

# Full-width forms editors type in Chinese input methods, mapped one-to-one onto ASCII.
_ASCII = str.maketrans("０１２３４５６７８９＋－Ｘｘ", "0123456789+-Xx")

_LEVEL = r"(?:绝密|机密|秘密)"
_PERIOD = r"(?:[0-9]+\s*(?:年|个月|月|天|日)|长期|永久)"
_STAR = r"[★☆＊]"
_OPEN, _CLOSE = r"[【〔［\[（(]", r"[】〕］\])）]"
_LINE_START = r"(?:^|(?<=\n))[ \t\u3000]*(?:[>#*+\-][ \t]*|[0-9]+\.[ \t]+|\*\*|__)*"
_LINE_END = r"(?=[ \t\u3000]*(?:\*\*|__|\*|_)?(?:[ \t\u3000\r\n]|$))"

_CLASSIFIED = [
    re.compile(rf"{_LEVEL}级?\s*{_STAR}\s*{_PERIOD}?"),
    re.compile(rf"{_LEVEL}级?\s*\*\s*{_PERIOD}"),
    re.compile(rf"{_OPEN}\s*{_LEVEL}级?(?:\s*[★☆＊*]\s*{_PERIOD}?)?\s*{_CLOSE}"),
    re.compile(rf"密级\s*[:：]\s*{_LEVEL}级?(?:\s*[★☆＊*]\s*{_PERIOD}?)?"),
    re.compile(rf"{_LINE_START}(?P<m>{_LEVEL}级?(?:[ \t\u3000]*{_PERIOD})?){_LINE_END}"),
]

_INTERNAL_WORD = r"内部(?:资料|文件|使用|参考|刊物|材料)?"
_KEEP = r"(?:注意保存|妥善保管|注意保管|请勿外传|严禁外传|不得外传|不得翻印|请勿翻印)"
_INTERNAL = [
    re.compile(rf"{_OPEN}\s*{_INTERNAL_WORD}\s*{_CLOSE}"),
    re.compile(rf"内部(?:资料|文件|材料|刊物)[ \t\u3000，,、;；]*{_KEEP}"),
    re.compile(r"(?:仅供|仅限|只供|限)内部(?:使用|参考|传阅|交流)"),
    re.compile(rf"内部\s*{_STAR}"),
    re.compile(rf"{_LINE_START}(?P<m>{_INTERNAL_WORD}(?:[ \t\u3000，,]*{_KEEP})?){_LINE_END}"),
]

# 18 characters: 6 region, 8 birth date, 3 sequence, 1 check; not inside a longer alphanumeric run.
_ID18 = re.compile(r"(?<![0-9A-Za-z])[1-9][0-9]{16}[0-9Xx](?![0-9A-Za-z])")
_ID15 = re.compile(r"(?<![0-9A-Za-z])[1-9][0-9]{14}(?![0-9A-Za-z])")
_PROVINCES = frozenset({11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45,
                        46, 50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83})
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"

_MOBILE = re.compile(
    r"(?<![0-9])(?:(?:\+|00)?86[ \t-]?)?"
    r"(?:1[3-9][0-9]{9}|1[3-9][0-9][ \t-][0-9]{4}[ \t-][0-9]{4})(?![0-9])"
)


def id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of the first 17 digits of a resident ID number."""
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def _valid_birth(year: int, month: int, day: int) -> bool:
    try:
        born = date(year, month, day)
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= date.today()


def is_resident_id(text: str) -> bool:
    """True for a plausible resident ID number: region, birth date, and (18 digits) the checksum."""
    s = text.translate(_ASCII).upper()
    if len(s) == 18 and s[:17].isdigit() and s[:17].isascii():
        return (int(s[:2]) in _PROVINCES and _valid_birth(int(s[6:10]), int(s[10:12]), int(s[12:14]))
                and id_check_char(s[:17]) == s[17])
    if len(s) == 15 and s.isdigit() and s.isascii():
        return int(s[:2]) in _PROVINCES and _valid_birth(1900 + int(s[6:8]), int(s[8:10]), int(s[10:12]))
    return False


def _spans(pattern: re.Pattern[str], text: str) -> Iterator[tuple[int, int]]:
    for m in pattern.finditer(text):
        if "m" in pattern.groupindex:
            yield m.span("m")
        else:
            yield m.span()


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping matches of one kind (a bracketed star marking matches two rules) become one."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _screen_text(original: str, where: str, terms: tuple[str, ...]) -> list[Finding]:
    text = original.translate(_ASCII)
    found: list[tuple[Kind, int, int]] = []
    markings: tuple[tuple[Kind, list[re.Pattern[str]]], ...] = (("classified_marking", _CLASSIFIED),
                                                                ("internal_marking", _INTERNAL))
    for kind, patterns in markings:
        spans = (span for p in patterns for span in _spans(p, text))
        found += [(kind, s, e) for s, e in _merge(spans)]
    for pattern in (_ID18, _ID15):
        found += [("resident_id", *m.span()) for m in pattern.finditer(text) if is_resident_id(m.group())]
    found += [("mobile_number", *m.span()) for m in _MOBILE.finditer(text)]
    for term in terms:
        start = text.find(term)
        while start >= 0:
            found.append(("term", start, start + len(term)))
            start = text.find(term, start + len(term))
    return [Finding(kind, original[s:e], where, s, e) for kind, s, e in sorted(found, key=lambda f: (f[1], f[2]))]


def screen(title: str, body: str, *, terms: Iterable[str] = ()) -> list[Finding]:
    """Every finding in the title, then the body, in reading order; an empty list means it may go out."""
    wanted = tuple(dict.fromkeys(t.translate(_ASCII) for t in terms if t and t.strip()))
    return _screen_text(title, "title", wanted) + _screen_text(body, "body", wanted)
