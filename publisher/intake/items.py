"""The item file: Markdown with YAML front matter, as an editor writes it, read into a `ParsedItem`.

Every problem is an `ItemFileError` that says, in Chinese and English, what is wrong and how to fix it."""

from __future__ import annotations

import codecs
import datetime as dt
import difflib
import re
from datetime import datetime
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from publisher.clock import CHINA
from publisher.errors import PublisherError

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
    category: str
    date: dt.date | None = None
    source: str | None = None
    summary: str | None = None
    channels: list[str] | None = None
    publish_at: datetime | None = None
    attachments: list[str] = Field(default_factory=list)
    author: str | None = None
    retract: bool = False
    tags: list[str] = Field(default_factory=list)


class ParsedItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    item_id: str
    front: ItemFile
    body: str
    attachment_paths: tuple[Path, ...] = ()


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
                    folder: Path) -> ParsedItem:
    """Read one dropped file; every problem is an ItemFileError an editor can act on."""
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
    try:
        front = yaml.load("\n".join(lines[1:end]), Loader=_FrontMatterLoader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"第 {mark.line + 2} 行" if mark else ""
        line_en = f" at line {mark.line + 2}" if mark else ""
        raise ItemFileError(
            f"元数据不是有效的 YAML{('（' + line + '）') if line else ''}：{getattr(exc, 'problem', '')}。"
            "常见原因：括号或引号没有配对，冒号后缺少空格。",
            f"The front matter is not valid YAML{line_en}: {getattr(exc, 'problem', exc)}. "
            "Common causes: an unclosed bracket or quote, or a missing space after a colon.") from None
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
            raise ItemFileError(f"元数据里有不认识的字段“{key}”。{hint_zh}", f"Unknown field '{key}'. {hint_en}")
    if not str(front.get("title") or "").strip():
        raise ItemFileError("缺少标题：请在元数据中加一行 title: 标题。", "The title is missing: add a line 'title: ...'.")
    cat = front.get("category")
    if cat is None:
        raise ItemFileError(f"缺少栏目：请加一行 category:，可用栏目：{_cats(categories)}。",
                            f"The category is missing: add 'category: ...'. Configured: {_cats(categories)}.")
    if str(cat) not in categories:
        by_name = {v: k for k, v in categories.items()}
        hint = f"（“{cat}”是显示名称，请写 {by_name[str(cat)]}）" if str(cat) in by_name else ""
        raise ItemFileError(f"栏目“{cat}”没有配置{hint}。可用栏目：{_cats(categories)}。",
                            f"Category '{cat}' is not configured. Configured: {_cats(categories)}.")
    try:
        parsed = ItemFile.model_validate(front)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err["loc"])
        raise ItemFileError(
            f"字段“{field}”的值“{err.get('input')}”不正确：{_zh_hint(field)}",
            f"Field '{field}' has an invalid value {err.get('input')!r}: {err['msg']}. {_en_hint(field)}") from None
    if parsed.publish_at is not None and parsed.publish_at.tzinfo is None:
        parsed = parsed.model_copy(update={"publish_at": parsed.publish_at.replace(tzinfo=CHINA)})
    item_id = parsed.id or Path(name).stem
    if not _ID_OK.match(item_id):
        raise ItemFileError(f"编号“{item_id}”只能包含字母、数字、汉字、“-”“_”“.”。",
                            f"The id '{item_id}' may hold only letters, digits, '-', '_' and '.'.")
    for ch in parsed.channels or []:
        if ch not in channels:
            raise ItemFileError(f"渠道“{ch}”没有配置。可用渠道：{', '.join(sorted(channels))}。",
                                f"Channel '{ch}' is not configured. Configured: {', '.join(sorted(channels))}.")
    paths = []
    root = folder.resolve()
    for att in parsed.attachments:
        target = (folder / att).resolve()
        if Path(att).is_absolute() or not target.is_relative_to(root):
            raise ItemFileError(f"附件路径“{att}”超出了收件箱目录。附件必须和稿件放在同一文件夹里。",
                                f"The attachment path '{att}' leaves the inbox. Put attachments beside the item file.")
        if not target.is_file():
            raise ItemFileError(f"找不到附件“{att}”。请把附件和稿件放在同一文件夹，文件名要一致。",
                                f"Attachment '{att}' was not found. Put it beside the item file, with exactly that name.")
        paths.append(target)
    if not body.strip() and not parsed.retract:
        raise ItemFileError("正文是空的。请在元数据的“---”之后写正文。",
                            "The body is empty. Write the text after the closing '---'.")
    return ParsedItem(item_id=item_id, front=parsed, body=body, attachment_paths=tuple(paths))


class _FrontMatterLoader(yaml.SafeLoader):
    """YAML without its own date parsing: `2015-13-45` must reach the field check as text, and be
    explained there, instead of failing inside the YAML reader."""


_FrontMatterLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _cats(categories: dict[str, str]) -> str:
    return "、".join(f"{k}（{v}）" for k, v in categories.items())


def _zh_hint(field: str) -> str:
    return {
        "date": "日期请写成 2015-03-18。",
        "publish_at": "定时发布时间请写成 2015-03-20T09:00:00+08:00 或 2015-03-20 09:00。",
        "channels": "渠道请写成列表，例如 [bureau_site, microblog]。",
        "attachments": "附件请写成列表，例如 [report.pdf]。",
        "retract": "撤回请写 true 或 false。",
    }.get(field, "请检查这个字段的写法。")


def _en_hint(field: str) -> str:
    return {
        "date": "Write dates as 2015-03-18.",
        "publish_at": "Write the embargo as 2015-03-20T09:00:00+08:00 or 2015-03-20 09:00.",
        "channels": "Write a list, e.g. [bureau_site, microblog].",
        "attachments": "Write a list, e.g. [report.pdf].",
        "retract": "Write true or false.",
    }.get(field, "Check how this field is written.")
