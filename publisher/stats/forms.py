"""The statistics as the office reads them: tables (sections) in zh-CN or en, then Markdown, CSV, xlsx
(openpyxl) or JSON. The terminal's boxed table is drawn by the command line from the same sections.

A cell the store cannot know is None: shown as "（人工填写）" / "(fill in)", left empty and yellow in xlsx,
empty in CSV and null in JSON, so that a person sees what is theirs to fill in.
"""

from __future__ import annotations

import calendar
import csv
import io
from dataclasses import asdict, dataclass, field
from typing import Any

from publisher.i18n import Translator
from publisher.stats.annual import AnnualReport, DistrictsReport

Cell = str | int | None


@dataclass
class Section:
    title: str
    headers: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    note: str | None = None


def month_names(_: Translator) -> list[str]:
    return [_("rpt_month", m=m, abbr=calendar.month_abbr[m]) for m in range(1, 13)]


def annual_sections(r: AnnualReport, _: Translator) -> list[Section]:
    d = r.deadline
    summary = Section(_("rpt_summary"), [_("rpt_figure"), _("rpt_value")], [
        [_("rpt_disclosed"), r.disclosed], [_("rpt_edits"), r.edits], [_("rpt_retractions"), r.retractions],
        [_("rpt_blocked"), r.blocked], [_("rpt_released"), r.released], [_("rpt_rejected"), r.rejected]])
    deadline_rows: list[list[Cell]] = [
        [_("rpt_on_time"), d.on_time], [_("rpt_late"), d.late], [_("rpt_worst"), d.worst_days or 0],
        [_("rpt_worst_item"), d.worst_item or "—"]]
    deadline = Section(_("rpt_deadline", n=d.working_days), [_("rpt_figure"), _("rpt_value")], deadline_rows,
                       note=None if d.calendar_known else _("rpt_calendar_guess"))
    cat_rows: list[list[Cell]] = [[name, n] for _k, name, n in r.categories]
    by_cat = Section(_("rpt_by_category"), [_("category"), _("rpt_items")], [*cat_rows, [_("rpt_total"), r.disclosed]])
    names = {k: name for k, name, _n in r.categories}
    by_month = Section(_("rpt_by_month"), [_("category"), *month_names(_), _("rpt_total")],
                       [[names[k], *months, sum(months)] for k, months in r.months.items()])
    by_month.rows.append([_("rpt_total"), *(sum(col) for col in zip(*r.months.values(), strict=True)), r.disclosed]
                         if r.months else [_("rpt_total"), *([0] * 12), 0])
    by_channel = Section(_("rpt_by_channel"), [_("channel"), _("rpt_items")], [[name, n] for _k, name, n in r.channels])
    national: list[Section] = []
    for row in r.national:
        if not national or national[-1].title != f"{_('rpt_national')} · {row.section}":
            national.append(Section(f"{_('rpt_national')} · {row.section}", [_("rpt_content"), *row.headers],
                                    note=_("rpt_fill_note")))
        national[-1].rows.append([row.row, *row.values])
    return [summary, by_cat, by_month, by_channel, deadline, *national]


def districts_sections(r: DistrictsReport, _: Translator) -> list[Section]:
    cats = list(r.category_names)
    section = Section(_("rpt_districts", first=r.first.isoformat(), last=r.last.isoformat()),
                      [_("rpt_district"), _("rpt_received"), _("rpt_disclosed"), *r.category_names.values()],
                      [[row.district, row.received, row.disclosed, *(row.categories.get(c, 0) for c in cats)]
                       for row in r.rows], note=None if r.rows else _("rpt_no_items"))
    section.rows.append([_("rpt_total"), sum(x.received for x in r.rows), sum(x.disclosed for x in r.rows),
                         *(sum(x.categories.get(c, 0) for x in r.rows) for c in cats)])
    return [section]


def annual_json(r: AnnualReport) -> dict[str, Any]:
    doc = asdict(r)
    doc["categories"] = [{"key": k, "name": name, "items": n} for k, name, n in r.categories]
    doc["channels"] = [{"key": k, "name": name, "items": n} for k, name, n in r.channels]
    doc["national"] = [{**asdict(row), "values": dict(zip(row.headers, row.values, strict=True))}
                       for row in r.national]
    for row in doc["national"]:
        del row["headers"]
    return doc


def districts_json(r: DistrictsReport) -> dict[str, Any]:
    return {"from": r.first.isoformat(), "to": r.last.isoformat(), "category_names": r.category_names,
            "districts": [asdict(row) for row in r.rows],
            "total": {"received": sum(x.received for x in r.rows), "disclosed": sum(x.disclosed for x in r.rows)}}


def shown(cell: Cell, _: Translator) -> str:
    return _("rpt_fill_in") if cell is None else str(cell)


def markdown(title: str, sections: list[Section], _: Translator) -> str:
    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    out = [f"# {esc(title)}", ""]
    for s in sections:
        out += [f"## {esc(s.title)}", "", "| " + " | ".join(esc(h) for h in s.headers) + " |",
                "|" + "|".join("---" if i == 0 else "---:" for i in range(len(s.headers))) + "|"]
        out += ["| " + " | ".join(esc(shown(c, _)) for c in row) + " |" for row in s.rows]
        out += [""] + ([f"*{esc(s.note)}*", ""] if s.note else [])
    return "\n".join(out)


def csv_text(title: str, sections: list[Section]) -> str:
    """All sections in one CSV: each a title line, its header and rows, then an empty line."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([title])
    for s in sections:
        writer.writerow([])
        writer.writerow([s.title])
        writer.writerow(s.headers)
        writer.writerows([["" if c is None else c for c in row] for row in s.rows])
    return buf.getvalue()


def xlsx_bytes(title: str, sections: list[Section], _: Translator) -> bytes:
    """A workbook for the office: one sheet holding every section, numbers as numbers, blanks in yellow."""
    from openpyxl import Workbook
    from openpyxl.comments import Comment
    from openpyxl.styles import Font, PatternFill

    wb = Workbook()
    ws = wb.active
    assert ws is not None  # a new workbook has its one sheet
    ws.title = "统计" if _.locale == "zh-CN" else "Statistics"
    bold, fill = Font(bold=True), PatternFill("solid", fgColor="FFF2CC")
    ws.append([title])
    ws.cell(row=1, column=1).font = Font(bold=True, size=14)
    for s in sections:
        ws.append([])
        ws.append([s.title])
        ws.cell(row=ws.max_row, column=1).font = bold
        ws.append(s.headers)
        for cell in ws[ws.max_row]:
            cell.font = bold
        for row in s.rows:
            ws.append(["" if c is None else c for c in row])
            for col, value in enumerate(row, start=1):
                if value is None:
                    target = ws.cell(row=ws.max_row, column=col)
                    target.value = None
                    target.fill = fill
                    target.comment = Comment(_("rpt_fill_note"), "publisher")
        if s.note:
            ws.append([s.note])
    ws.column_dimensions["A"].width = 40
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
