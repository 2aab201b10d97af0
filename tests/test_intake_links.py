"""The archive's link: made in one call where the name is free, and never over a file or a note that holds it."""

from __future__ import annotations

import os
from pathlib import Path

from publisher.intake.files import NOTE_SUFFIX, link_into


def _claimed(tmp_path: Path, text: str = "---\ntitle: t\n---\n正文\n") -> Path:
    (tmp_path / "claimed").mkdir(exist_ok=True)
    (tmp_path / "archive").mkdir(exist_ok=True)
    src = tmp_path / "claimed" / "a.md"
    src.write_text(text, encoding="utf-8")
    return src


def test_a_free_name_is_linked(tmp_path: Path) -> None:
    """The usual case: the archive's file is the claimed file itself, under its own name."""
    src = _claimed(tmp_path)
    target = link_into(tmp_path / "archive", src, "a.md")
    assert target == tmp_path / "archive" / "a.md" and os.path.samefile(src, target)


def test_a_name_held_by_another_file_or_a_note_goes_to_the_next_name(tmp_path: Path) -> None:
    """An archived file of that name stays as it is, and a note of that name keeps its file's name free too."""
    src = _claimed(tmp_path)
    other = tmp_path / "archive" / "a.md"
    other.write_text("older", encoding="utf-8")
    assert link_into(tmp_path / "archive", src, "a.md") == tmp_path / "archive" / "a-2.md"
    assert other.read_text(encoding="utf-8") == "older"
    (tmp_path / "archive" / f"a-3.md{NOTE_SUFFIX}").write_text("note", encoding="utf-8")
    src2 = tmp_path / "claimed" / "b.md"
    src2.write_text("second", encoding="utf-8")
    target = link_into(tmp_path / "archive", src2, "a.md")
    assert target == tmp_path / "archive" / "a-4.md" and os.path.samefile(src2, target)
    assert not (tmp_path / "archive" / "a-3.md").exists()  # the name its note holds is left free


def test_the_link_a_crashed_try_made_is_found_again(tmp_path: Path) -> None:
    """Taken again after a crash, the file keeps the archive's link it had, not a second one."""
    src = _claimed(tmp_path)
    first = link_into(tmp_path / "archive", src, "a.md")
    assert link_into(tmp_path / "archive", src, "a.md") == first
    assert sorted(p.name for p in (tmp_path / "archive").iterdir()) == ["a.md"]


def test_a_note_holding_the_first_name_leaves_it_free(tmp_path: Path) -> None:
    """A note named for the file's own name sends it to the next name, with nothing left under the first."""
    src = _claimed(tmp_path)
    (tmp_path / "archive" / f"a.md{NOTE_SUFFIX}").write_text("note", encoding="utf-8")
    assert link_into(tmp_path / "archive", src, "a.md") == tmp_path / "archive" / "a-2.md"
    assert not (tmp_path / "archive" / "a.md").exists()
