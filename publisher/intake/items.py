"""The item file: Markdown with YAML front matter, as an editor writes it, read into a `ParsedItem`.

Every problem is an `ItemFileError` that says, in Chinese and English, what is wrong and how to fix it."""

from __future__ import annotations

import codecs
import datetime as dt
import difflib
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from publisher.clock import CHINA
from publisher.errors import PublisherError
from publisher.intake.text import code_point, first_unsafe, join_all, shown

# Caps: an item file is an article's text (large content goes in attachments); a note quotes little of it.
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_FRONT_MATTER_BYTES = 64 * 1024
MAX_NAME_BYTES = 255  # a file name on every filesystem the inbox may live on
EARLIEST, LATEST = dt.date(1900, 1, 1), dt.date(2199, 12, 31)  # dates a document, an embargo can hold

# --- the item file: Markdown with YAML front matter ------------------------------------------------

class ItemFileError(PublisherError):
    """An item file an editor must fix; `zh` and `en` say what is wrong and how to fix it."""

    def __init__(self, zh: str, en: str) -> None:
        super().__init__(en)
        self.zh = zh
        self.en = en


FIELDS = ("id", "title", "category", "date", "source", "summary", "channels", "publish_at", "attachments",
          "author", "retract", "tags")


class ItemFile(BaseModel):
    """The front matter an editor writes (see README: the item file)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, coerce_numbers_to_str=True)

    id: str | None = Field(default=None, min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=500)
    category: str = Field(max_length=64)
    date: dt.date | None = None
    source: str | None = Field(default=None, max_length=200)
    summary: str | None = Field(default=None, max_length=2000)
    channels: list[Annotated[str, Field(max_length=64)]] | None = Field(default=None, max_length=32)
    publish_at: datetime | None = None
    attachments: list[Annotated[str, Field(min_length=1, max_length=MAX_NAME_BYTES)]] = Field(
        default_factory=list, max_length=64)
    author: str | None = Field(default=None, max_length=200)
    retract: bool = False
    tags: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=50)


class ParsedItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    item_id: str
    front: ItemFile
    body: str
    attachment_paths: tuple[Path, ...] = ()
    attachment_names: tuple[str, ...] = ()  # as listed, each naming the path beside it


def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16 with BOM, else GB18030 (a superset of GBK/GB2312)."""
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        raise ItemFileError(
            "文件编码无法识别。请用 UTF-8 编码另存（记事本：另存为 → 编码选 UTF-8）后重新放入。",
            "The file's encoding is neither UTF-8 nor GB18030/GBK. Save it as UTF-8 and drop it again.") from None


_ID_OK = re.compile(r"^[\w\-.·]+$")


def parse_item_file(name: str, data: bytes, *, categories: dict[str, str], channels: set[str],
                    folder: Path, elsewhere: Mapping[str, Path] | None = None) -> ParsedItem:
    """Read one dropped file; every problem is an ItemFileError an editor can act on.

    `elsewhere`: inbox files filed away a moment ago (an item listed as another's attachment), by name."""
    if len(data) > MAX_FILE_BYTES:
        raise ItemFileError(
            f"文件太大（{len(data) / 1048576:.1f} MB，稿件文件最多 {MAX_FILE_BYTES // 1048576} MB）。"
            "图片、表格等大文件请作为附件（attachments:）放在稿件旁边。",
            f"The file is too large ({len(data) / 1048576:.1f} MB; an item file may hold at most "
            f"{MAX_FILE_BYTES // 1048576} MB). Put pictures, tables and other large content in attachments.")
    if not data.strip():
        raise ItemFileError("文件是空的。请写入以“---”开头的元数据和正文后重新放入。",
                            "The file is empty. Write the front matter (starting with ---) and the text, then drop it again.")
    text = decode(data).replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines[0].strip() != "---":
        raise ItemFileError(
            "文件开头缺少元数据（front matter）。第一行必须是“---”，然后写 title:、category: 等，再以“---”结束。",
            "No front matter. The first line must be '---', followed by title:, category: ... and a closing '---'.")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() in ("---", "..."))
    except StopIteration:
        raise ItemFileError("元数据没有结束行。请在 title:、category: 等字段之后加一行“---”。",
                            "The front matter never ends. Add a line '---' after the title:, category: ... lines.") from None
    source = "\n".join(lines[1:end])
    if len(source.encode("utf-8", "surrogatepass")) > MAX_FRONT_MATTER_BYTES:
        raise ItemFileError(
            f"元数据太长（最多 {MAX_FRONT_MATTER_BYTES // 1024} KB）。正文请写在第二个“---”之后。",
            f"The front matter is too long (at most {MAX_FRONT_MATTER_BYTES // 1024} KB). "
            "Write the text after the closing '---'.")
    front = join_all(_load_front_matter(source))
    if not isinstance(front, dict):
        raise ItemFileError("元数据必须是“字段: 值”的形式，每行一个字段。",
                            "The front matter must be 'key: value' lines, one field per line.")
    body = "\n".join(lines[end + 1:]).strip("\n")
    front = {str(k): v for k, v in front.items()}
    for key in front:
        if key not in FIELDS:
            guess = difflib.get_close_matches(key, FIELDS, n=1)
            hint_zh = f"是不是要写“{guess[0]}”？" if guess else f"可用的字段：{', '.join(FIELDS)}。"
            hint_en = f"Did you mean '{guess[0]}'?" if guess else f"Known fields: {', '.join(FIELDS)}."
            raise ItemFileError(f"元数据里有不认识的字段“{shown(key)}”。{hint_zh}",
                                f"Unknown field '{shown(key)}'. {hint_en}")
    for key, value in front.items():
        _refuse_unsafe(key, value)
    _refuse_unsafe_body(body, first_line=end + 2)
    if not str(front.get("title") or "").strip():
        raise ItemFileError("缺少标题：请在元数据中加一行 title: 标题。", "The title is missing: add a line 'title: ...'.")
    cat = front.get("category")
    if cat is None:
        raise ItemFileError(f"缺少栏目：请加一行 category:，可用栏目：{_cats(categories)}。",
                            f"The category is missing: add 'category: ...'. Configured: {_cats(categories)}.")
    if str(cat) not in categories:
        by_name = {v: k for k, v in categories.items()}
        hint = f"（“{cat}”是显示名称，请写 {by_name[str(cat)]}）" if str(cat) in by_name else ""
        raise ItemFileError(f"栏目“{shown(cat)}”没有配置{hint}。可用栏目：{_cats(categories)}。",
                            f"Category '{shown(cat)}' is not configured. Configured: {_cats(categories)}.")
    try:
        parsed = ItemFile.model_validate(front)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err["loc"])
        raise ItemFileError(
            f"字段“{field}”的值“{shown(err.get('input'))}”不正确：{_zh_hint(field, err['type'])}",
            f"Field '{field}' has an invalid value {shown(err.get('input'))}: {err['msg']}. "
            f"{_en_hint(field, err['type'])}") from None
    if parsed.publish_at is not None and parsed.publish_at.tzinfo is None:
        parsed = parsed.model_copy(update={"publish_at": parsed.publish_at.replace(tzinfo=CHINA)})
    _check_dates(parsed)
    item_id = parsed.id or Path(name).stem
    if not _ID_OK.match(item_id) or len(item_id) > 200:
        raise ItemFileError(f"编号“{shown(item_id)}”只能包含字母、数字、汉字、“-”“_”“.”，最长 200 个字符。",
                            f"The id '{shown(item_id)}' may hold only letters, digits, '-', '_' and '.', "
                            "at most 200 characters.")
    for ch in parsed.channels or []:
        if ch not in channels:
            raise ItemFileError(f"渠道“{shown(ch)}”没有配置。可用渠道：{', '.join(sorted(channels))}。",
                                f"Channel '{shown(ch)}' is not configured. Configured: {', '.join(sorted(channels))}.")
    paths = [_attachment(folder, att, elsewhere or {}) for att in parsed.attachments]
    if not body.strip() and not parsed.retract:
        raise ItemFileError("正文是空的。请在元数据的“---”之后写正文。",
                            "The body is empty. Write the text after the closing '---'.")
    return ParsedItem(item_id=item_id, front=parsed, body=body, attachment_paths=tuple(paths),
                      attachment_names=tuple(parsed.attachments))


_MAX_DEPTH = 64  # brackets within brackets: an item file needs two; PyYAML spends seconds failing on a thousand


def _too_deep(source: str) -> bool:
    depth = 0
    for ch in source:
        if ch in "[{":
            depth += 1
            if depth > _MAX_DEPTH:
                return True
        elif ch in "]}":
            depth = max(0, depth - 1)
    return False


# Front matter libyaml reads exactly as the pure-Python loader does: printable characters and newlines only (no
# tab, no control character, no BOM, no Unicode line separator, no `?`: there the two readers' rules differ at the
# edges), and no `*`, so no alias. Anything else, and anything libyaml refuses, goes to the pure-Python loader, whose
# error messages (with their line numbers) are the ones an editor is shown.
_LIBYAML_READS = re.compile("[\n\x20-\x29\x2b-\x3e\x40-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd"
                            "\U00010000-\U0010ffff]*")


def _load_front_matter(source: str) -> Any:
    if _FastFrontMatterLoader is not None and _LIBYAML_READS.fullmatch(source) and not _too_deep(source):
        try:
            return yaml.load(source, Loader=_FastFrontMatterLoader)
        except Exception:  # the pure-Python loader below reads it again and says what is wrong
            pass
    try:
        if _too_deep(source):
            raise RecursionError
        return yaml.load(source, Loader=_FrontMatterLoader)
    except _AliasRefused as exc:
        raise ItemFileError(
            f"元数据第 {exc.line + 2} 行使用了 YAML 别名（*{shown(exc.anchor, 40)}）。稿件里不能引用别名，请把值直接写出来。",
            f"Line {exc.line + 2} of the front matter uses a YAML alias (*{shown(exc.anchor, 40)}). Item files may not "
            "use aliases: write the value out.") from None
    except yaml.reader.ReaderError as exc:  # a character YAML refuses to read (a control character)
        row = source.count("\n", 0, max(0, exc.position)) + 2
        char = chr(exc.character) if isinstance(exc.character, int) else str(exc.character)
        raise ItemFileError(
            f"元数据第 {row} 行有看不见的控制字符 {code_point(char)}，网站和订阅源无法显示。请删除它后重新放入。",
            f"Line {row} of the front matter holds the control character {code_point(char)}, which web pages "
            "and feeds cannot carry. Remove it and drop the file again.") from None
    except RecursionError:  # (raised above, or by PyYAML itself on indentation nested as deep)
        raise ItemFileError("元数据的括号嵌套太深。每个字段写成“字段: 值”，列表写成 [a, b]。",
                            "The front matter nests brackets too deep. Write 'key: value' lines and lists as [a, b].") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"第 {mark.line + 2} 行" if mark else ""
        line_en = f" at line {mark.line + 2}" if mark else ""
        problem = shown(str(getattr(exc, "problem", "") or ""), 200)
        raise ItemFileError(
            f"元数据不是有效的 YAML{('（' + line + '）') if line else ''}：{problem}。"
            "常见原因：括号或引号没有配对，冒号后缺少空格。",
            f"The front matter is not valid YAML{line_en}: {problem or shown(str(exc), 200)}. "
            "Common causes: an unclosed bracket or quote, or a missing space after a colon.") from None


_FIELD_ZH = {"title": "标题", "summary": "摘要", "source": "来源", "author": "作者", "category": "栏目",
             "id": "编号", "tags": "标签", "attachments": "附件", "channels": "渠道"}


def _refuse_unsafe(field: str, value: Any) -> None:
    """A field holding a character XML cannot carry (or a lone surrogate) is refused, named."""
    for text in _strings(value):
        found = first_unsafe(text)
        if found is not None:
            at, ch = found
            what = "不成对的 UTF-16 代理字符（表情符号请直接输入，或写成一对 \\ud83d\\ude00 这样的转义）" \
                if "\ud800" <= ch <= "\udfff" else "看不见的控制字符"
            raise ItemFileError(
                f"字段“{field}”（{_FIELD_ZH.get(field, field)}）第 {at + 1} 个字符是{what} {code_point(ch)}，"
                "网站和订阅源无法显示。请删除它后重新放入。",
                f"Field '{field}' holds {code_point(ch)} at character {at + 1}, which web pages and feeds cannot "
                "carry (a control character or a lone UTF-16 surrogate). Remove it and drop the file again.")


def _refuse_unsafe_body(body: str, *, first_line: int) -> None:
    found = first_unsafe(body)
    if found is not None:
        at, ch = found
        line = first_line + body.count("\n", 0, at)
        raise ItemFileError(
            f"正文第 {line} 行（文件的第 {line} 行）有看不见的控制字符 {code_point(ch)}，网站和订阅源无法显示。"
            "常见原因：从其他软件复制粘贴。请删除它后重新放入。",
            f"Line {line} of the file holds the control character {code_point(ch)}, which web pages and feeds "
            "cannot carry (often pasted from another program). Remove it and drop the file again.")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    return []


def _check_dates(parsed: ItemFile) -> None:
    """Dates every store and every channel can hold (year 1 at +08:00 is no UTC time at all)."""
    for field, when in (("date", parsed.date), ("publish_at", parsed.publish_at)):
        if when is None:
            continue
        try:
            day = when.astimezone(dt.UTC).date() if isinstance(when, datetime) else when
        except OverflowError:
            day = dt.date.min
        if not EARLIEST <= day <= LATEST:
            raise ItemFileError(
                f"字段“{field}”的日期 {when} 不在 {EARLIEST.year}—{LATEST.year} 年之间。请检查年份。",
                f"Field '{field}' holds {when}, outside the years {EARLIEST.year}–{LATEST.year}. Check the year.")


def _attachment(folder: Path, att: str, elsewhere: Mapping[str, Path]) -> Path:
    """The file `att` names beside the item: inside the inbox, no symlink on the way, a regular file."""
    root = folder.resolve()
    rel = Path(att)
    if rel.is_absolute() or ".." in rel.parts or not (root / rel).resolve().is_relative_to(root):
        raise ItemFileError(f"附件路径“{shown(att)}”超出了收件箱目录。附件必须和稿件放在同一文件夹里。",
                            f"The attachment path '{shown(att)}' leaves the inbox. Put attachments beside the item file.")
    here = root
    for part in rel.parts:
        here = here / part
        if here.is_symlink():
            raise ItemFileError(
                f"附件“{shown(att)}”是一个符号链接（快捷方式）。出于安全，只接受真实文件：请把文件本身复制到收件箱。",
                f"The attachment '{shown(att)}' is a symbolic link. For safety only real files are taken: copy the "
                "file itself into the inbox.")
    if not here.is_file() and att in elsewhere:
        return elsewhere[att]  # an item file listed as this one's attachment, read as an item a moment ago
    if not here.is_file():
        raise ItemFileError(f"找不到附件“{shown(att)}”。请把附件和稿件放在同一文件夹，文件名要一致。",
                            f"Attachment '{shown(att)}' was not found. Put it beside the item file, with exactly that name.")
    return here


class _AliasRefused(yaml.YAMLError):
    def __init__(self, anchor: str, line: int) -> None:
        super().__init__(anchor)
        self.anchor, self.line = anchor, line


class _FrontMatterLoader(yaml.SafeLoader):
    """YAML without its own date parsing (`2015-13-45` must reach the field check as text, and be
    explained there, instead of failing inside the YAML reader), and without aliases: a few hundred
    bytes of nested aliases expand into gigabytes (and an item file has no use for them)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event: Any = self.peek_event()  # type: ignore[no-untyped-call]  # PyYAML's stubs leave it untyped
            raise _AliasRefused(str(event.anchor), event.start_mark.line)
        return super().compose_node(parent, index)


_FrontMatterLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


_FastFrontMatterLoader: Any = None
if yaml.__with_libyaml__:  # PyYAML built with libyaml (its wheels are): the C parser, the same resolvers
    class _CFrontMatterLoader(yaml.CSafeLoader):
        """`_FrontMatterLoader` with libyaml's parser: ten times faster on the front matter it is given."""

    _CFrontMatterLoader.yaml_implicit_resolvers = _FrontMatterLoader.yaml_implicit_resolvers
    _FastFrontMatterLoader = _CFrontMatterLoader


def _cats(categories: dict[str, str]) -> str:
    return "、".join(f"{k}（{v}）" for k, v in categories.items())


def _zh_hint(field: str, kind: str = "") -> str:
    if kind.startswith("too_long") or kind == "string_too_long":
        return "内容太长，请缩短。"
    return {
        "date": "日期请写成 2015-03-18。",
        "publish_at": "定时发布时间请写成 2015-03-20T09:00:00+08:00 或 2015-03-20 09:00。",
        "channels": "渠道请写成列表，例如 [bureau_site, microblog]。",
        "attachments": "附件请写成列表，例如 [report.pdf]。",
        "retract": "撤回请写 true 或 false。",
    }.get(field, "请检查这个字段的写法。")


def _en_hint(field: str, kind: str = "") -> str:
    if kind.startswith("too_long") or kind == "string_too_long":
        return "Shorten it."
    return {
        "date": "Write dates as 2015-03-18.",
        "publish_at": "Write the embargo as 2015-03-20T09:00:00+08:00 or 2015-03-20 09:00.",
        "channels": "Write a list, e.g. [bureau_site, microblog].",
        "attachments": "Write a list, e.g. [report.pdf].",
        "retract": "Write true or false.",
    }.get(field, "Check how this field is written.")
