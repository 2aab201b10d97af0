"""`publisher lag`'s tables as text: box-drawn, wide-character aware, coloured on a terminal.

rich draws every other table of the command line. This one is printed by the command an admin runs to
see which channel is late, which has a start-up budget (docs/BENCHMARKS.md), and rich's import and layout
took a quarter of it. So these few tables are drawn here from the standard library, in well under a millisecond each. Widths
count East Asian wide characters as two cells (unicodedata), as terminals draw them.
"""

from __future__ import annotations

import os
import re
import sys
import unicodedata
from dataclasses import dataclass, field

Line = str | tuple[str, str]  # text, or (text, style)
# What must never reach a terminal from stored text: control characters (an escape sequence can retitle the
# window, clear the screen or move the cursor) and the bidirectional overrides (they reorder what is read).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` with each character a terminal would act on instead of show replaced by U+FFFD."""
    return _UNSAFE.sub("\ufffd", text)

Cell = Line | list[Line]  # one line, or several (e.g. an id over its title)
STYLES = {"red": "31", "green": "32", "yellow": "33", "dim": "2", "bold": "1", "bold red": "1;31"}


def cells(text: str) -> int:
    """How many terminal cells `text` takes."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in text)


def cut(text: str, width: int) -> str:
    """`text` in at most `width` cells, ending in "…" when something was cut off."""
    if cells(text) <= width:
        return text
    out, used = [], 0
    for c in text:
        used += cells(c)
        if used > width - 1:
            break
        out.append(c)
    return "".join(out) + "…"


def wrap(text: str, width: int) -> list[str]:
    """A header in lines of at most `width` cells, as even as the fewest lines allow, broken after a "/" or
    a space where the line has one ("发送状态" at 6 cells: "发送" over "状态", not "发送状" over "态")."""
    fewest = _wrap(text, width)
    for even in range(-(-cells(text) // len(fewest)), width):
        lines = _wrap(text, even)
        if len(lines) == len(fewest):
            return lines
    return fewest


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for c in text:
        if cells(line + c) <= width or not line:
            line += c
            continue
        k = max(line.rfind("/"), line.rfind(" "))
        head, line = (line[:k + 1], line[k + 1:] + c) if k > 0 else (line, c)
        lines.append(head.rstrip())
    return [*lines, line]


def paint(text: str, style: str | None, color: bool) -> str:
    return f"\x1b[{STYLES[style]}m{text}\x1b[0m" if color and style and text else text


def terminal() -> tuple[int, bool]:
    """(width, colour): the terminal's, or 80 columns (COLUMNS) and no colour when piped; NO_COLOR,
    FORCE_COLOR and TERM=dumb as everywhere else."""
    width = os.get_terminal_size(sys.stdout.fileno()).columns if sys.stdout.isatty() else 80
    if os.environ.get("COLUMNS", "").isdigit():
        width = int(os.environ["COLUMNS"])
    color = (sys.stdout.isatty() and os.environ.get("TERM") != "dumb") or bool(os.environ.get("FORCE_COLOR"))
    return max(width, 20), color and not os.environ.get("NO_COLOR")


@dataclass
class Column:
    header: str
    right: bool = False  # numbers
    shrink: int | None = None  # may be cut down to this many cells (errors, titles); None: always whole
    cap: int | None = None  # never wider than this; longer lines are cut


@dataclass
class Table:
    title: str
    columns: list[Column]
    rows: list[list[Cell]] = field(default_factory=list)

    def add_row(self, *row: Cell) -> None:
        """A row of cells; their text is made printable here, as it may come from an editor's file."""
        self.rows.append([_printable_cell(cell) for cell in row])

    def widths(self, room: int) -> list[int]:
        """Each column's width in cells: its widest line, then, while the table is wider than `room`, the
        cuttable columns give way (widest first), then the headers wrap."""
        body = [max((cells(_text(line)) for row in self.rows for line in _lines(row[i])), default=0)
                for i in range(len(self.columns))]
        width = [max(b, cells(col.header), 1) for b, col in zip(body, self.columns, strict=True)]
        width = [min(w, col.cap) if col.cap else w for w, col in zip(width, self.columns, strict=True)]
        over = sum(width) + 3 * len(width) + 1 - room
        while over > 0:
            give = [i for i, col in enumerate(self.columns) if col.shrink is not None and width[i] > col.shrink]
            if not give:
                break
            widest = max(give, key=lambda i: width[i])
            width[widest] -= 1
            over -= 1
        for i in sorted(range(len(width)), key=lambda i: body[i] - width[i]):
            floor = max(body[i] if self.columns[i].shrink is None else width[i], 4)
            if over <= 0:
                break
            less = min(over, max(0, width[i] - floor))
            width[i] -= less
            over -= less
        return width

    def fits(self, room: int) -> bool:
        return sum(self.widths(room)) + 3 * len(self.columns) + 1 <= room

    def render(self, room: int, color: bool) -> str:
        width = self.widths(room)
        rule = {k: f"{ends[0]}{ends[1].join('─' * (w + 2) for w in width)}{ends[2]}" for k, ends in
                {"top": "┌┬┐", "mid": "├┼┤", "end": "└┴┘"}.items()}
        heads = [wrap(col.header, w) for col, w in zip(self.columns, width, strict=True)]
        tall = max(len(h) for h in heads)
        out = [self.title, rule["top"]] if self.title else [rule["top"]]
        for k in range(tall):  # headers sit on the bottom line, as the values they name
            out.append(self._line([h[k - tall + len(h)] if k >= tall - len(h) else "" for h in heads],
                                  width, color, header=True))
        out.append(rule["mid"])
        for row in self.rows:
            lines = [_lines(c) for c in row]
            for k in range(max(len(ls) for ls in lines)):
                out.append(self._line([ls[k] if k < len(ls) else "" for ls in lines], width, color))
        out.append(rule["end"])
        return "\n".join(out)

    def _line(self, row: list[Line], width: list[int], color: bool, header: bool = False) -> str:
        parts = []
        for line, w, col in zip(row, width, self.columns, strict=True):
            text = cut(_text(line), w)
            pad = " " * (w - cells(text))
            shown = paint(text, "bold" if header else line[1] if isinstance(line, tuple) else None, color)
            parts.append(f"{pad}{shown}" if col.right else f"{shown}{pad}")
        return "│ " + " │ ".join(parts) + " │"


def _printable_cell(cell: Cell) -> Cell:
    if isinstance(cell, list):
        return [(printable(line[0]), line[1]) if isinstance(line, tuple) else printable(line) for line in cell]
    return (printable(cell[0]), cell[1]) if isinstance(cell, tuple) else printable(cell)


def _lines(cell: Cell) -> list[Line]:
    if isinstance(cell, list):
        return cell
    if isinstance(cell, tuple):
        return [(part, cell[1]) for part in cell[0].split("\n")]
    return list(cell.split("\n"))


def _text(line: Line) -> str:
    return line[0] if isinstance(line, tuple) else line
