"""What the store says about a period: the annual disclosure statistics and the districts' count.

The rules, in one place:
- An item is **disclosed** once a revision of it (not a retraction) was accepted by a channel (sent) or
  seen live there; its first such revision is the one that disclosed it.
- An item belongs to the day of that revision's document `date`, else to the day it first reached
  readers (first live, else first sent), in China's time zone; an item never disclosed to its first
  revision's `date`, else the day it was taken in (so that blocked and rejected items are counted too).
- **Edits** are the later revisions of a disclosed item that reached a channel; a **retraction** is an
  approved retraction revision; **blocked** items had a revision the confidentiality screen stopped
  (released ones were overridden by a reviewer and then disclosed); **rejected** ones were sent back.
- The **legal deadline** (2019 Regulation, Art. 26; `lag.deadline_working_days`): working days from the
  document date (else the day taken in) to the day it first went live (else was sent), as the lag
  report counts them (publisher/lag/workdays.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

from publisher.lag import workdays
from publisher.states import RevisionState
from publisher.store.stats_reads import RevisionFact, SendFact, period_facts

if TYPE_CHECKING:
    from publisher.config.settings import Config
    from publisher.store.db import Store

# 国办公开办函〔2021〕30号, table 二、主动公开政府信息情况: (the article and item of the Regulation, its column
# headers, its rows). Each row's first column is what the store can count; the rest it cannot know.
NATIONAL_TABLE: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("第二十条第（一）项", ("本年制发件数", "本年废止件数", "现行有效件数"), ("规章", "行政规范性文件")),
    ("第二十条第（五）项", ("本年处理决定数量",), ("行政许可",)),
    ("第二十条第（六）项", ("本年处理决定数量",), ("行政处罚", "行政强制")),
    ("第二十条第（八）项", ("本年收费金额（单位：万元）",), ("行政事业性收费",)),
)


@dataclass(frozen=True)
class ItemFacts:
    """One item as the statistics see it."""

    item_id: str
    category: str
    source: str | None
    day: date  # the day it counts on (see the module's rules)
    disclosed: bool
    channels: frozenset[str]  # where a revision of it (not a retraction) was sent or went live
    first_public: datetime | None
    start: date  # the legal deadline counts from this day
    edits: int
    retracted: bool
    screened_out: bool
    rejected: bool


def _public(sends: list[SendFact]) -> datetime | None:
    live = [s.live_at for s in sends if s.live_at is not None]
    sent = [s.sent_at for s in sends if s.sent_at is not None]
    return min(live) if live else min(sent) if sent else None


def item_facts(revs: list[RevisionFact], sends: list[SendFact]) -> list[ItemFacts]:
    by_rev: dict[int, list[SendFact]] = {}
    for s in sends:
        by_rev.setdefault(s.revision_id, []).append(s)
    by_item: dict[str, list[RevisionFact]] = {}
    for r in revs:
        by_item.setdefault(r.item_id, []).append(r)
    out = []
    for item_id, its in by_item.items():
        its.sort(key=lambda r: r.number)
        content = [r for r in its if not r.retract] or its
        out_revs = [r for r in content if not r.retract and by_rev.get(r.revision_id)]
        first = out_revs[0] if out_revs else content[0]
        public = _public(by_rev.get(first.revision_id, [])) if out_revs else None
        start = first.doc_date or workdays.local_date(first.created_at)
        out.append(ItemFacts(
            item_id=item_id, category=first.category, source=first.source,
            day=first.doc_date or (workdays.local_date(public) if public else start),
            disclosed=public is not None,
            channels=frozenset(s.channel for r in out_revs for s in by_rev[r.revision_id]),
            first_public=public, start=start, edits=len(out_revs) - 1 if out_revs else 0,
            retracted=any(r.retract and r.state == RevisionState.APPROVED for r in its),
            screened_out=any(r.screened_out for r in its),
            rejected=any(r.state == RevisionState.REJECTED for r in its)))
    return out


def items_in(store: Store, first: date, last: date) -> list[ItemFacts]:
    """The items that count in [first, last]."""
    revs, sends = period_facts(store, first, last)
    return [f for f in item_facts(revs, sends) if first <= f.day <= last]


@dataclass(frozen=True)
class DeadlineRecord:
    working_days: int  # the legal limit
    on_time: int
    late: int
    worst_item: str | None
    worst_days: int | None  # working days from the start to public, of the slowest item
    calendar_known: bool  # False: a year's holidays were unknown, Monday–Friday was assumed


@dataclass(frozen=True)
class NationalRow:
    section: str
    headers: tuple[str, ...]
    row: str
    values: tuple[int | None, ...]  # None: the store cannot know it; a person fills it in
    categories: tuple[str, ...]  # the categories config.yaml maps to this row


@dataclass(frozen=True)
class AnnualReport:
    year: int
    categories: list[tuple[str, str, int]]  # (key, display name, items)
    months: dict[str, list[int]]  # category key → items in each month
    channels: list[tuple[str, str, int]]  # (role, display name, items)
    disclosed: int
    edits: int
    retractions: int
    blocked: int
    released: int  # of the blocked, disclosed after a reviewer's override
    rejected: int
    deadline: DeadlineRecord
    national: list[NationalRow] = field(default_factory=list)


def annual_report(store: Store, config: Config, year: int) -> AnnualReport:
    """The statistics of `year` (see the module's rules)."""
    facts = items_in(store, date(year, 1, 1), date(year, 12, 31))
    out = [f for f in facts if f.disclosed]
    per_cat = Counter(f.category for f in out)
    cats = [*config.categories, *sorted(set(per_cat) - set(config.categories))]
    months = {c: [0] * 12 for c in cats}
    for f in out:
        months[f.category][f.day.month - 1] += 1
    per_channel = Counter(ch for f in out for ch in f.channels)
    chans = [*config.channels, *sorted(set(per_channel) - set(config.channels))]
    national = []
    for section, headers, rows in NATIONAL_TABLE:
        for row in rows:
            mapped = tuple(config.annual_report.get(row, ()))
            counted = sum(per_cat[c] for c in mapped) if row in config.annual_report else None
            national.append(NationalRow(section=section, headers=headers, row=row, categories=mapped,
                                        values=(counted, *(None for _ in headers[1:]))))
    return AnnualReport(
        year=year, categories=[(c, config.category_name(c), per_cat[c]) for c in cats],
        months=months,
        channels=[(c, config.channels[c].display(c) if c in config.channels else c, per_channel[c]) for c in chans],
        disclosed=len(out), edits=sum(f.edits for f in out), retractions=sum(f.retracted for f in facts),
        blocked=sum(f.screened_out for f in facts), released=sum(f.screened_out and f.disclosed for f in facts),
        rejected=sum(f.rejected for f in facts),
        deadline=deadline_record(out, config.lag.deadline_working_days), national=national)


def deadline_record(out: list[ItemFacts], limit: int) -> DeadlineRecord:
    on_time = late = 0
    worst: tuple[int, str] | None = None
    known = True
    for f in out:
        assert f.first_public is not None
        public = workdays.local_date(f.first_public)
        days = workdays.workdays_between(f.start, public)
        known = known and workdays.known(f.start.year) and workdays.known(public.year)
        if days <= limit:
            on_time += 1
        else:
            late += 1
        if worst is None or (days, f.item_id) > worst:
            worst = (days, f.item_id)
    return DeadlineRecord(working_days=limit, on_time=on_time, late=late, worst_item=worst[1] if worst else None,
                          worst_days=worst[0] if worst else None, calendar_known=known)


@dataclass(frozen=True)
class DistrictRow:
    district: str
    received: int  # items from the district in the period, whatever became of them
    disclosed: int
    categories: dict[str, int]  # category key → disclosed items


@dataclass(frozen=True)
class DistrictsReport:
    first: date
    last: date
    rows: list[DistrictRow]
    category_names: dict[str, str]


def districts_report(store: Store, config: Config, first: date, last: date) -> DistrictsReport:
    """Items per district (the `source` of an item, whether written in its file or set by a district feed)
    in [first, last], most disclosed first: the bimonthly assessment of the district bureaus."""
    if last < first:
        raise ValueError(f"the period ends ({last}) before it starts ({first})")
    facts = [f for f in items_in(store, first, last) if f.source]
    rows = []
    for district in sorted({f.source for f in facts if f.source}):
        mine = [f for f in facts if f.source == district]
        out = [f for f in mine if f.disclosed]
        rows.append(DistrictRow(district=district, received=len(mine), disclosed=len(out),
                                categories=dict(Counter(f.category for f in out))))
    rows.sort(key=lambda r: (-r.disclosed, -r.received, r.district))
    used = {c for r in rows for c in r.categories}
    names = {c: config.category_name(c) for c in [*config.categories, *sorted(used - set(config.categories))]
             if c in used}
    return DistrictsReport(first=first, last=last, rows=rows, category_names=names)
