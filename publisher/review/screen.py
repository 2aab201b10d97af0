"""The confidentiality screen: what must not leave the bureau, found before any channel sees it, and the
mechanical part of the review (wrong forms, forbidden expressions), so that reviewers read for meaning.

**What is read.** Every field that reaches a channel: title, summary, body, source, author, each tag and
each attachment's file name, each *as its readers see it* (publisher/review/seen.py): the body rendered
from Markdown, every field with HTML tags dropped and entities decoded, then Unicode NFKC, invisible
characters (zero-width spaces and joiners, soft hyphens, bidi controls) removed, and traditional characters
folded to simplified. So `&#26426;&#23494;★`, `机<span></span>密★`, `機密★` and `机\u200b密★` are all 机密★.
Number patterns are also looked for in the field as written (a number in a link's `tel:` address or in
an HTML comment is published too), and they allow separators (spaces, NBSP, dots, dashes) between digits.

Each finding names its field (`where`, and `index` for the n-th tag or attachment), the text exactly as it
stands in the field (`text`, with `start`/`end` offsets into it), the text as a reader sees it (`seen`), its
`kind`, its `level` and its reason in Chinese and English. A *blocking* finding holds the revision until a
reviewer overrides it with a reason; an *advisory* one is shown to the reviewers and holds nothing.

The rules, and why. The screen leans towards markings *as markings*: the words 绝密 / 机密 / 秘密 / 内部
occur in ordinary prose ("保守国家秘密", "内部审计", "机关内部设机构"), and a law on secrecy must stay
publishable.

``classified_marking`` (绝密, 机密, 秘密; blocking) is flagged when the word stands as a marking:
  * with the star of GB/T 9704 (``机密★10年``, ``秘密★1年``, ``绝密★长期``, ``机密★``), anywhere; ☆ and ＊
    count as the star; a plain ASCII ``*`` only when a period follows (``机密*10年``);
  * in brackets of any shape (``【机密】``, ``〔秘密★1年〕``, ``[绝密]``, ``（机密级）``), anywhere;
  * after a label (``密级：机密``), anywhere;
  * standing alone on a line of running text: the word, optionally with 级 and a period (``秘密级``,
    ``机密 10年``, a bold ``**机密**`` line).
  Not flagged: the word inside a sentence ("公民有保守国家秘密的义务", "商业秘密"), a line that merely
  begins with it ("机密文件管理办法"), and a heading, list item or table cell that is only the word
  (``## 秘密`` heading a section on secrets, ``- 秘密`` in a list of the three levels): there it is an
  ordinary word; such a line with a star, a period, brackets or a label is still a marking.

``internal_marking`` (内部, 内部资料, 内部文件, 内部使用, 内部参考; blocking) is flagged:
  * in square or lenticular brackets (``【内部】``, ``〔内部资料〕``, ``[内部]``), anywhere: that is how the
    marking is printed;
  * as a handling instruction: ``内部资料 注意保存`` (also with a comma, 妥善保管, 请勿外传...),
    ``仅供内部使用`` / ``限内部参考`` / ``内部★``, anywhere;
  * standing alone on a line of running text (``内部``, ``内部资料``, ``（内部）``, ``内部文件 注意保存``).
  **The rule for 内部 in round parentheses**: ``（内部）`` / ``(内部)`` is a marking only when it stands
  alone on its line (or is followed by a handling instruction). Inside running text round parentheses
  annotate the words they stand in ("（内部）审计部门负责" is the internal-audit department), whereas the
  marking is printed in 【】 or 〔〕, which are flagged wherever they stand.
  Not flagged: ``内部审计``, ``机关内部设机构``, "加强内部资料管理" inside a sentence.

``resident_id`` (blocking): 18-character PRC resident ID numbers (GB 11643) whose ISO 7064 MOD 11-2
  check character is right, whose region code names a province and whose birth date is a real date
  between 1900 and today; and the old 15-digit form, which was issued only to residents aged 16 and over
  until the 18-digit number replaced it in 1999: a valid region and a real birth date from 1900 to the end
  of 1983 (``110101900101123`` is not one: its holder would have been born in 1990). In any grouping:
  digits separated by spaces, NBSP, dots or dashes (``370302 19901115 5432``) count. Invalid checksums are
  not flagged: most 18-digit runs are something else (account or serial numbers).

``mobile_number`` (blocking): mainland mobile numbers, 1[3-9] and nine more digits, not part of a longer
  digit run; an optional ``+86`` / ``86`` / ``0086`` prefix; digits may be grouped with one kind of
  separator (spaces and NBSP, or dots, or dashes: ``138.1234.5678``). Not flagged: groups joined by
  different separators (``130 2014-2015年度`` is a count and a range of years), a number followed by 年,
  and a number labelled as a serial (``编号13912012015``, 序号, 文号, 批号, No.).

``term`` (blocking): each configured term (config.yaml `screen.terms`).

``wording`` / ``forbidden``: the dictionary (publisher/review/wording.py): a wrong form with its right
  form (`suggest`), or an expression that must not appear; each rule advisory or blocking.

``link`` (advisory): a link in the body that did not answer, or points outside `screen.links.allow`;
  checked once per revision by the daemon (publisher/review/links.py), never at intake.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any, Literal

from publisher.review.seen import Seen
from publisher.review.wording import Dictionary, normalise

Kind = Literal["classified_marking", "internal_marking", "resident_id", "mobile_number", "term", "wording",
               "forbidden", "link"]
Level = Literal["blocking", "advisory"]

# Each field that reaches a channel, in the order they are reported, with its name for a reader.
FIELDS: dict[str, tuple[str, str]] = {
    "title": ("标题", "title"), "summary": ("摘要", "summary"), "body": ("正文", "body"),
    "source": ("来源", "source"), "author": ("作者", "author"), "tags": ("标签", "tags"),
    "attachment": ("附件名", "attachment name"),
}

_DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "classified_marking": ("发现密级标志", "classified marking"),
    "internal_marking": ("发现内部资料标志", "internal-use marking"),
    "resident_id": ("发现居民身份证号码", "resident ID number"),
    "mobile_number": ("发现手机号码", "mobile number"),
    "term": ("发现敏感词", "configured sensitive term"),
    "forbidden": ("发现不得使用的说法", "forbidden expression"),
    "wording": ("发现用词错误", "wrong form"),
    "link": ("发现有问题的链接", "link with a problem"),
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the screen found: `text` is the field's source[start:end]; `seen` is what a reader sees."""

    kind: Kind
    text: str
    where: str  # the field: a key of FIELDS
    start: int | None
    end: int | None
    level: Level = "blocking"
    seen: str = ""
    index: int | None = None  # which tag or attachment
    reason_zh: str = ""
    reason_en: str = ""
    suggest: str | None = None  # the right form, for a wrong one

    def _reason(self, locale: str) -> str:
        zh, en = _DESCRIPTIONS[self.kind]
        if locale.lower().startswith("zh"):
            return self.reason_zh or zh
        return self.reason_en or en

    def describe(self, locale: str = "zh-CN") -> str:
        """A short sentence for the reviewer, in Chinese (zh*) or English (anything else)."""
        zh_place, en_place = FIELDS.get(self.where, (self.where, self.where))
        if self.index is not None:
            zh_place, en_place = f"第{self.index + 1}个{zh_place}", f"{en_place} {self.index + 1}"
        if locale.lower().startswith("zh"):
            if self.kind == "wording" and self.suggest:
                return f"{zh_place}中\u201c{self.text}\u201d应为\u201c{self.suggest}\u201d（{self._reason(locale)}）"
            if self.kind in ("forbidden", "link"):
                return f"{zh_place}中\u201c{self.text}\u201d：{self._reason(locale)}"
            return f"{zh_place}中{self._reason(locale)}\u201c{self.text}\u201d"
        if self.kind == "wording" and self.suggest:
            return f"\u201c{self.text}\u201d in the {en_place} should be \u201c{self.suggest}\u201d ({self._reason(locale)})"
        if self.kind in ("forbidden", "link"):
            return f"\u201c{self.text}\u201d in the {en_place}: {self._reason(locale)}"
        return f"{self._reason(locale)} \u201c{self.text}\u201d found in the {en_place}"

    def as_dict(self) -> dict[str, Any]:
        """The stored form (the revision's `findings` JSON): every field, the reasons and both sentences."""
        return {**asdict(self), "field": self.where, "reason_zh": self._reason("zh-CN"),
                "reason_en": self._reason("en"), "zh": self.describe("zh-CN"), "en": self.describe("en")}


def is_blocking(finding: dict[str, Any]) -> bool:
    """Whether a stored finding holds its revision (findings stored before levels existed all do)."""
    return bool(finding.get("level", "blocking") != "advisory")


def _spaced(word: str) -> str:
    """The word with spaces allowed between its characters (`机 密` reads 机密; NBSP and U+3000 are spaces here)."""
    return "[ \t]*".join(re.escape(c) for c in word)


_LEVEL = rf"(?:{_spaced('绝密')}|{_spaced('机密')}|{_spaced('秘密')})"
_PERIOD = r"(?:[0-9]+[ \t]*(?:年|个月|月|天|日)|长期|永久)"
_STAR = r"[★☆＊]"
_OPEN, _CLOSE = r"[【〔［\[（(]", r"[】〕］\])）]"
_SQUARE_OPEN, _SQUARE_CLOSE = r"[【〔［\[]", r"[】〕］\]]"
_LINE_START = r"(?:^|(?<=\n))[ \t]*(?:[>#*+\-][ \t]*|[0-9]+\.[ \t]+|\*\*|__)*"
_LINE_END = r"(?=[ \t]*(?:\*\*|__|\*|_)?(?:[ \t\r\n]|$))"

# (pattern, only as a line of running text): a standalone word is a marking only there
_CLASSIFIED: list[tuple[re.Pattern[str], bool]] = [
    (re.compile(rf"{_LEVEL}级?[ \t]*{_STAR}(?:[ \t]*{_PERIOD})?"), False),
    (re.compile(rf"{_LEVEL}级?[ \t]*\*[ \t]*{_PERIOD}"), False),
    (re.compile(rf"{_OPEN}[ \t]*{_LEVEL}级?(?:[ \t]*[★☆＊*](?:[ \t]*{_PERIOD})?)?[ \t]*{_CLOSE}"), False),
    (re.compile(rf"{_spaced('密级')}[ \t]*[:：][ \t]*{_LEVEL}级?(?:[ \t]*[★☆＊*](?:[ \t]*{_PERIOD})?)?"), False),
    (re.compile(rf"{_LINE_START}(?P<m>{_LEVEL}级?(?:[ \t]*{_PERIOD})?){_LINE_END}"), True),
]

_INNER = _spaced("内部")
_INTERNAL_WORD = rf"{_INNER}(?:资料|文件|使用|参考|刊物|材料)?"
_KEEP = r"(?:注意保存|妥善保管|注意保管|请勿外传|严禁外传|不得外传|不得翻印|请勿翻印)"
_INTERNAL: list[tuple[re.Pattern[str], bool]] = [
    (re.compile(rf"{_SQUARE_OPEN}[ \t]*{_INTERNAL_WORD}[ \t]*{_SQUARE_CLOSE}"), False),
    (re.compile(rf"[（(]?{_INNER}(?:资料|文件|材料|刊物)[）)]?[ \t，,、;；]*{_KEEP}"), False),
    (re.compile(rf"(?:仅供|仅限|只供|限){_INNER}(?:使用|参考|传阅|交流)"), False),
    (re.compile(rf"{_INNER}[ \t]*{_STAR}"), False),
    (re.compile(rf"{_LINE_START}(?P<m>(?:[（(][ \t]*)?{_INTERNAL_WORD}(?:[ \t]*[）)])?(?:[ \t，,]*{_KEEP})?){_LINE_END}"), True),
]

# Between two digits of a number: spaces (NBSP and the ideographic space are spaces after NFKC), dots, dashes.
_SEP = r"[ \t._·・\-\u2010-\u2015\u2212]"
_SEP_KIND = {**dict.fromkeys(" \t", "space"), **dict.fromkeys(".·・", "dot"),
             **dict.fromkeys("_-\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "dash")}
_NOT_AFTER = rf"(?<![0-9A-Za-z])(?<![0-9]{_SEP})"
_ID18 = re.compile(rf"{_NOT_AFTER}[1-9](?:{_SEP}{{0,2}}[0-9]){{16}}{_SEP}{{0,2}}[0-9Xx](?![0-9A-Za-z])(?!{_SEP}{{1,2}}[0-9])")
_ID15 = re.compile(rf"{_NOT_AFTER}[1-9](?:{_SEP}{{0,2}}[0-9]){{14}}(?![0-9A-Za-z])(?!{_SEP}{{1,2}}[0-9])")
_MOBILE = re.compile(rf"(?<![0-9])(?<![0-9]{_SEP})(?:(?:\+|00)?86{_SEP}{{0,2}})?"
                     rf"(?P<n>1(?:{_SEP}{{0,2}}[0-9]){{10}})(?!{_SEP}{{0,2}}[0-9])")
_SERIAL_LABEL = re.compile(r"(?:编号|序号|批号|单号|流水号|文号|案号|登记号|证书号|代码|代号|No\.?|NO\.?|№)[ \t:：#]*$")
_PROVINCES = frozenset({11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45,
                        46, 50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83})
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_OLD_ID_LAST_BIRTH = date(1983, 12, 31)  # 16 before the 18-digit number replaced the old one (1999), with slack


def id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of the first 17 digits of a resident ID number."""
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def _born(year: int, month: int, day: int, last: date) -> bool:
    try:
        born = date(year, month, day)
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= last


def is_resident_id(text: str) -> bool:
    """True for a plausible resident ID number: region, birth date, and (18 digits) the checksum."""
    s = normalise(text).upper()
    if len(s) == 18 and s[:17].isdigit() and s[:17].isascii():
        return (int(s[:2]) in _PROVINCES and _born(int(s[6:10]), int(s[10:12]), int(s[12:14]), date.today())
                and id_check_char(s[:17]) == s[17])
    if len(s) == 15 and s.isdigit() and s.isascii():
        return int(s[:2]) in _PROVINCES and _born(1900 + int(s[6:8]), int(s[8:10]), int(s[10:12]), _OLD_ID_LAST_BIRTH)
    return False


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit() or c in "Xx")


def _one_separator(s: str) -> bool:
    return len({_SEP_KIND[c] for c in s if c in _SEP_KIND}) <= 1


# Every pattern of a group holds its word (密 of a level, 内部): a text without the word is not searched further.
_GROUPS: tuple[tuple[Kind, re.Pattern[str], list[tuple[re.Pattern[str], bool]]], ...] = (
    ("classified_marking", re.compile(_LEVEL), _CLASSIFIED), ("internal_marking", re.compile(_INNER), _INTERNAL))
# Every number pattern holds eleven digits or more, at most two separators apart: a text without such a run holds
# no number the screen looks for.
_DIGIT_RUN = re.compile(rf"[0-9](?:{_SEP}{{0,2}}[0-9]){{10}}")


def _markings(text: str, seen: Seen) -> Iterator[tuple[Kind, int, int]]:
    for kind, word, patterns in _GROUPS:
        if not word.search(text):
            continue
        spans = []
        for pattern, running_text_only in patterns:
            for m in pattern.finditer(text):
                start, end = m.span("m") if "m" in pattern.groupindex else m.span()
                if running_text_only and seen.line_kind(start) != "text":
                    continue  # a heading, list item or table cell that is only the word: an ordinary word
                spans.append((start, end))
        for start, end in _merge(spans):
            yield kind, start, end


def _numbers(text: str) -> Iterator[tuple[Kind, int, int]]:
    if not _DIGIT_RUN.search(text):
        return
    taken: list[tuple[int, int]] = []
    for pattern in (_ID18, _ID15):
        for m in pattern.finditer(text):
            if is_resident_id(_digits(m.group())):
                taken.append(m.span())
                yield "resident_id", *m.span()
    for m in _MOBILE.finditer(text):
        number = m.group("n")
        if not re.fullmatch(r"1[3-9][0-9]{9}", _digits(number)) or not _one_separator(number):
            continue
        if text[m.end():].lstrip(" \t").startswith("年") or _SERIAL_LABEL.search(text[max(0, m.start() - 12):m.start()]):
            continue  # a count before a range of years; a serial number
        if not any(s < m.end() and m.start() < e for s, e in taken):
            yield "mobile_number", *m.span()


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping matches of one kind (a bracketed star marking matches two rules) become one."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


MOST_PER_FIELD = 100  # findings of each level kept for one field: enough to act on, and a revision's JSON stays small


@dataclass(frozen=True)
class Rules:
    """What the screen looks for beyond the fixed rules: configured terms and the wording dictionary."""

    terms: tuple[str, ...] = ()
    dictionary: Dictionary | None = None

    @classmethod
    def of(cls, terms: Iterable[str] = (), dictionary: Dictionary | None = None) -> Rules:
        return cls(tuple(dict.fromkeys(normalise(t.strip()) for t in terms if t and t.strip())), dictionary)


def _finding(seen: Seen, where: str, index: int | None, kind: Kind, start: int, end: int,
             **extra: Any) -> Finding:
    span = seen.source_span(start, end)
    shown = seen.shown_span(start, end)
    if span is None:
        return Finding(kind, shown, where, None, None, seen=shown, index=index, **extra)
    return Finding(kind, seen.source[span[0]:span[1]], where, span[0], span[1], seen=shown, index=index, **extra)


def screen_field(where: str, value: str, rules: Rules, index: int | None = None) -> list[Finding]:
    """Every finding in one field, in reading order."""
    if not value or not value.strip():
        return []
    seen = Seen.of(value, mode="markdown" if where == "body" else "html")
    text = seen.text
    out = [_finding(seen, where, index, kind, s, e) for kind, s, e in _markings(text, seen)]
    numbers = [_finding(seen, where, index, kind, s, e) for kind, s, e in _numbers(text)]
    # as written: numbers in addresses, attributes and comments (a field without markup reads the same either way)
    raw = Seen.of(value, mode="plain") if seen.shown != value or where == "body" else seen
    for kind, s, e in _numbers(raw.text) if raw is not seen else ():
        f = _finding(raw, where, index, kind, s, e)
        if not any(o.start is not None and f.start is not None and o.start < (f.end or 0) and f.start < (o.end or 0)
                   for o in numbers):
            numbers.append(f)
    out += numbers
    for term in rules.terms:
        at = text.find(term)
        while at >= 0:
            out.append(_finding(seen, where, index, "term", at, at + len(term)))
            at = text.find(term, at + len(term))
    if rules.dictionary is not None:
        for hit in rules.dictionary.find(text):
            r = hit.rule
            out.append(_finding(seen, where, index, "wording" if r.right else "forbidden", hit.start, hit.end,
                                level=r.level, reason_zh=r.reason, reason_en=r.reason_en, suggest=r.right))
    out.sort(key=lambda f: (f.start if f.start is not None else -1, f.end or 0))
    kept = [f for f in out if f.level == "blocking"][:MOST_PER_FIELD] + [f for f in out if f.level == "advisory"][:MOST_PER_FIELD]
    return out if len(kept) == len(out) else sorted(kept, key=out.index)


def screen_fields(fields: Sequence[tuple[str, int | None, str | None]], rules: Rules) -> list[Finding]:
    """Every finding in every (field, index, value), field by field in FIELDS' order."""
    order = {name: i for i, name in enumerate(FIELDS)}
    out: list[Finding] = []
    for where, index, value in sorted(fields, key=lambda f: (order.get(f[0], len(order)), f[1] or 0)):
        out += screen_field(where, value or "", rules, index)
    return out


def screen(title: str, body: str, *, terms: Iterable[str] = (), summary: str | None = None,
           source: str | None = None, author: str | None = None, tags: Sequence[str] = (),
           attachments: Sequence[str] = (), dictionary: Dictionary | None = None) -> list[Finding]:
    """Every finding in an item's fields, in reading order; no blocking finding means it may go out."""
    fields: list[tuple[str, int | None, str | None]] = [
        ("title", None, title), ("summary", None, summary), ("body", None, body), ("source", None, source),
        ("author", None, author)]
    fields += [("tags", i, t) for i, t in enumerate(tags)]
    fields += [("attachment", i, a) for i, a in enumerate(attachments)]
    return screen_fields(fields, Rules.of(terms, dictionary))
