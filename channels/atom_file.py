"""The Atom feed file of the `atom_feed` channel: its entries, reading it back, writing it safely.

RFC 4287 entries with `tag:` ids, RFC 6721 tombstones (`at:deleted-entry`), written atomically so
that a reader (or a crash) only ever sees the old feed or the new one.

The file keeps the `max_entries` entries written most recently, newest first (RFC 4287 gives the
order of entries no meaning, so readers are free of it). A window by `updated` instead would drop an
entry written now for an older document at once: a backfill, or an item that waited long in review,
would never reach a collector, and no resend could bring it back. Each entry carries its revision
number in a foreign element (`pub:revision`, which RFC 4287 §6.4 tells readers to skip), so that a
late retry of an older revision never replaces a newer one.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from feedgen.feed import FeedGenerator
from lxml import etree

from channels.base import PermanentError

ATOM_NS = "http://www.w3.org/2005/Atom"
TOMBSTONE_NS = "http://purl.org/atompub/tombstones/1.0"
REVISION_NS = "tag:publisher.invalid,2026:atom"  # ours (RFC 4151 tag; .invalid is owned by no one, RFC 2606)
_A = f"{{{ATOM_NS}}}"
# Our own file: no entities, no network; huge_tree because one long article is one long text node (libxml2
# refuses text nodes over 10 MB without it, and the feed would never be read back again)
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
# What XML 1.0 cannot carry: an entry holding one is refused alone (intake refuses them too)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class Entry:
    """One entry as the file holds it; `content` is sanitized HTML."""

    id: str
    title: str
    updated: datetime
    published: datetime
    content: str
    summary: str | None = None
    link: str | None = None
    category: tuple[str, str | None] | None = None  # (term, label)
    author: str | None = None
    revision: int | None = None  # None in files written before revisions were recorded


@dataclass
class FeedState:
    entries: dict[str, Entry] = field(default_factory=dict)  # newest written first
    tombstones: dict[str, datetime] = field(default_factory=dict)  # entry id -> when it was deleted

    def copy(self) -> FeedState:
        return FeedState(entries=dict(self.entries), tombstones=dict(self.tombstones))


def check_xml_text(entry: Entry) -> None:
    """An entry whose text XML cannot carry is refused alone, saying which field and character."""
    fields = {"title": entry.title, "content": entry.content, "summary": entry.summary, "link": entry.link,
              "author": entry.author, "category": entry.category[1] if entry.category else None}
    for name, text in fields.items():
        m = _NOT_XML.search(text or "")
        if m is not None:
            raise PermanentError(f"the item's {name} holds U+{ord(m.group()):04X} at character {m.start() + 1}, "
                                 "which XML cannot carry: remove it and send a new revision")


def aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_time(text: str | None) -> datetime:
    return aware(datetime.fromisoformat((text or "").strip()))


def read_feed(path: Path) -> FeedState:
    """Parse our own feed file back into entries and tombstones (an absent file is an empty feed)."""
    try:
        root = etree.parse(str(path), _PARSER).getroot()
    except OSError:
        if not path.exists():
            return FeedState()
        raise
    except etree.XMLSyntaxError as exc:
        raise PermanentError(f"the feed file {path} is not valid XML ({exc}); restore it from a backup "
                             "or remove it so that it is written anew") from exc
    state = FeedState()
    for el in root.iter(f"{_A}entry"):
        cat = el.find(f"{_A}category")
        link = next((ln.get("href") for ln in el.iter(f"{_A}link") if ln.get("rel", "alternate") == "alternate"),
                    None)
        entry = Entry(
            id=el.findtext(f"{_A}id", "").strip(),
            title=el.findtext(f"{_A}title", ""),
            updated=parse_time(el.findtext(f"{_A}updated")),
            published=parse_time(el.findtext(f"{_A}published") or el.findtext(f"{_A}updated")),
            content=el.findtext(f"{_A}content", ""),
            summary=el.findtext(f"{_A}summary"),
            link=link,
            category=(cat.get("term", ""), cat.get("label")) if cat is not None else None,
            author=el.findtext(f"{_A}author/{_A}name"),
            revision=_int(el.findtext(f"{{{REVISION_NS}}}revision")),
        )
        state.entries[entry.id] = entry
    for el in root.iter(f"{{{TOMBSTONE_NS}}}deleted-entry"):
        state.tombstones[el.get("ref", "")] = parse_time(el.get("when"))
    return state


def _int(text: str | None) -> int | None:
    return int(text) if text and text.strip().isdigit() else None


def write_atomically(path: Path, data: bytes) -> None:
    """Temp file in the same directory, fsync, rename: readers see the old feed or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a front web server may serve the file too
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself must survive a power cut
    finally:
        os.close(dir_fd)


def render_feed(state: FeedState, opts: Any, *, title: str, now: datetime) -> bytes:
    """The feed document: the `max_entries` entries written last, tombstones, and the self and hub links."""
    keep = list(state.entries.values())[:opts.max_entries]
    graves = sorted(state.tombstones.items(), key=lambda t: t[1], reverse=True)[:opts.max_entries]
    fg = FeedGenerator()
    fg.id(opts.feed_id)
    fg.title(title)
    fg.author({"name": opts.author})
    fg.language("zh-CN")
    fg.generator("publisher")
    if opts.public_url:
        fg.link(href=opts.public_url, rel="self", type="application/atom+xml")
    if opts.websub_hub:
        fg.link(href=opts.websub_hub, rel="hub")
    fg.updated(max([now] + [e.updated for e in keep] + [w for _, w in graves]))
    for e in reversed(keep):  # feedgen prepends: add the oldest first so that the newest leads
        fe = fg.add_entry()
        fe.id(e.id)
        fe.title(e.title)
        fe.updated(e.updated)
        fe.published(e.published)
        fe.content(e.content, type="html")
        if e.summary:
            fe.summary(e.summary)
        if e.link:
            fe.link(href=e.link, rel="alternate", type="text/html")
        if e.category:
            term, label = e.category
            fe.category(term=term, **({"label": label} if label else {}))
        if e.author:
            fe.author({"name": e.author})
    # feedgen knows no RFC 6721 tombstones: add them to its XML ourselves
    root = etree.fromstring(fg.atom_str(), _PARSER)
    for el, e in zip(root.iter(f"{_A}entry"), keep, strict=True):
        if e.revision is not None:
            etree.SubElement(el, f"{{{REVISION_NS}}}revision").text = str(e.revision)
    for ref, when in graves:
        grave = etree.SubElement(root, f"{{{TOMBSTONE_NS}}}deleted-entry")
        grave.set("ref", ref)
        grave.set("when", when.isoformat())
    etree.cleanup_namespaces(root, top_nsmap={"at": TOMBSTONE_NS, "pub": REVISION_NS})
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))  # lxml ships no type hints
