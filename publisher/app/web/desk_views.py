"""What the desk shows of a revision: each routed channel's rendering (made by the adapters' own functions
in channels/), the screen's findings marked where readers would see them, a diff against the live revision,
and the urgency of a waiting revision (working days left to its legal deadline)."""

from __future__ import annotations

import difflib
import html
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from channels.mastodon import mastodon_length
from channels.mastodon_media import DEFAULT_MAX_CHARACTERS
from channels.render import render_html, render_text
from channels.weibo import LIMIT as WEIBO_LIMIT
from channels.weibo import weibo_length
from channels.wordpress import slug_for
from publisher.dispatch.outbox import revision_from_row, routed_channels
from publisher.errors import PublisherError
from publisher.lag.workdays import add_workdays, local_date, workdays_between
from publisher.model import StoredRevision

if TYPE_CHECKING:
    from publisher.app.web.context import WebContext

_TAG = re.compile(r"(<[^>]*>)")


@dataclass(frozen=True)
class Finding:
    field: str
    text: str  # as the field's source has it
    kind: str
    level: str
    reason: str  # why, for the mark's tooltip
    sentence: str  # the screen's own sentence (field, text and reason), for the list
    seen: str = ""  # as a reader sees it (entities decoded, normalised), when the screen says

    @property
    def needles(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t for t in (self.text, self.seen) if t))


@dataclass
class View:
    """One channel's rendering of the revision: HTML (site, feed) or text with its count (microblog)."""

    channel: str
    display: str
    type: str
    title: Markup | None = None
    html: Markup | None = None
    text: Markup | None = None
    count: int | None = None
    limit: int | None = None
    link: str | None = None
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def findings(rev: StoredRevision, locale: str) -> list[Finding]:
    """The screen's findings in a form the desk shows: field, matched text, kind, level and reason."""
    en = locale == "en"
    out = []
    for f in rev.findings:
        sentence = str(f.get("en" if en else "zh") or f.get("kind", ""))
        reason = str(f.get("reason_en" if en else "reason_zh") or sentence)
        out.append(Finding(field=str(f.get("field") or f.get("where") or "body"), text=str(f.get("text") or ""),
                           kind=str(f.get("kind", "")), level=str(f.get("level") or "blocking"), reason=reason,
                           sentence=sentence, seen=str(f.get("seen") or "")))
    return out


def highlight(markup: str, marks: list[Finding], *, is_html: bool) -> tuple[Markup, set[int]]:
    """`markup` (HTML, or plain text to be escaped) with each finding's text wrapped in <mark>, outside tags
    only and never overlapping; returns which findings were found."""
    safe = markup if is_html else html.escape(markup, quote=False)
    parts = _TAG.split(safe)
    found: set[int] = set()
    for i in range(0, len(parts), 2):  # the odd parts are tags
        part = parts[i]
        spans = sorted((at, at + len(needle), n) for n, f in enumerate(marks) for text in f.needles
                       if (needle := html.escape(text, quote=False))
                       for at in _occurrences(part, needle))
        out, pos = [], 0
        for begin, finish, n in spans:
            if begin < pos:
                continue  # overlaps a mark already made
            f = marks[n]
            out += [part[pos:begin], f'<mark class="finding finding-{html.escape(f.level)}" data-finding="{n}" '
                                     f'title="{html.escape(f.reason)}">{part[begin:finish]}</mark>']
            pos = finish
            found.add(n)
        parts[i] = "".join(out) + part[pos:]
    return Markup("".join(parts)), found  # noqa: S704 - built from escaped text and sanitized HTML only


def _occurrences(text: str, needle: str) -> list[int]:
    at, out = text.find(needle), []
    while at >= 0:
        out.append(at)
        at = text.find(needle, at + len(needle))
    return out


def views(ctx: WebContext, rev: StoredRevision, marks: list[Finding], live_url: str | None) -> tuple[list[View], set[int]]:
    """Each routed channel's rendering, with the findings marked; and the findings shown somewhere."""
    config = ctx.config
    revision = revision_from_row(rev, config)
    body_marks = [f for f in marks if f.field == "body"]
    title_marks = [f for f in marks if f.field == "title"]
    summary_marks = [f for f in marks if f.field == "summary"] + body_marks  # the summary defaults to the body's start
    seen: set[int] = set()

    def mark(text: str, wanted: list[Finding], *, is_html: bool = False) -> Markup:
        result, found = highlight(text, wanted, is_html=is_html)
        seen.update(marks.index(wanted[i]) for i in found)
        return result

    out: list[View] = []
    for name in routed_channels(config, rev):
        cfg = config.channels[name]
        view = View(channel=name, display=cfg.display(name), type=cfg.type, title=mark(rev.title, title_marks))
        adapter = ctx.channels.get(name)
        if cfg.type in ("weibo", "mastodon"):
            link = live_url or _site_link(ctx, rev)
            render = getattr(adapter, "render", None)
            try:
                text = render(revision.model_copy(update={"link": link})) if render else None
            except PublisherError as exc:
                text, view.note = None, str(exc)
            text = text if text is not None else f"【{rev.title}】{revision.short_summary} {link}"
            view.text = mark(text, title_marks + summary_marks)
            view.count = weibo_length(text) if cfg.type == "weibo" else mastodon_length(text)
            view.limit = WEIBO_LIMIT if cfg.type == "weibo" else DEFAULT_MAX_CHARACTERS
            view.link = link
        elif cfg.type in ("smtp",):
            view.text = mark(render_text(rev.body), body_marks)
        else:  # the site, the portal, the feed: the sanitized HTML the adapters publish
            view.html = mark(render_html(rev.body) or f"<p>{html.escape(revision.short_summary)}</p>", body_marks,
                             is_html=True)
            if cfg.type == "atom_feed":
                view.extra["summary"] = mark(revision.short_summary, summary_marks)
                view.link = live_url or _site_link(ctx, rev)
        out.append(view)
    return out, seen


def _site_link(ctx: WebContext, rev: StoredRevision) -> str | None:
    """Where the bureau site's article will be, for a preview before it exists (None without a site)."""
    for cfg in ctx.config.channels.values():
        if cfg.type == "wordpress":
            extra = cfg.model_extra or {}  # a config read without adapters keeps the adapter's keys here
            base = str(getattr(cfg.options, "base_url", None) or extra.get("base_url") or "").rstrip("/")
            prefix = str(getattr(cfg.options, "slug_prefix", None) or extra.get("slug_prefix") or "item-")
            return f"{base}/{slug_for(rev.item_id, prefix)}/" if base else None
    return None


def diff(live: StoredRevision | None, rev: StoredRevision) -> list[tuple[str, str]]:
    """Line diff (kind, line) of the fields readers see: `+` added, `-` removed, `@` a field's header, ` ` kept."""
    if live is None:
        return []
    out: list[tuple[str, str]] = []
    for name in ("title", "summary", "category", "body"):
        old, new = str(getattr(live, name) or ""), str(getattr(rev, name) or "")
        if old == new:
            continue
        out.append(("@", name))
        for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=2):
            if line.startswith(("---", "+++")):
                continue
            out.append((line[:1] if line[:1] in "+-@" else " ", line[1:] if line[:1] in "+- " else line))
    return out


def working_days_left(config: Any, doc_date: date | None, created_at: datetime | None, now: datetime) -> int | None:
    """Working days from today to the legal deadline of a revision (negative: overdue)."""
    start = doc_date or (local_date(created_at) if created_at else None)
    if start is None:
        return None
    last = add_workdays(start, config.lag.deadline_working_days)
    return workdays_between(local_date(now), last)
