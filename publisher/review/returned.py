"""The note a rejection leaves for the editor in the queue folder: `queue/returned/ID.r<N>.txt`, in
Chinese and English, saying who sent the revision back, when, and why. Editors work in the queue
folder, not in the CLI; the note is written after the rejection is committed (the audit log holds the
same facts, so a note that cannot be written loses nothing)."""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

from publisher.clock import CHINA

UNSAFE = re.compile(r"[^\w.\-]")


def note_path(queue_dir: Path, item_id: str, number: int) -> Path:
    return queue_dir / "returned" / f"{UNSAFE.sub('_', item_id)}.r{number}.txt"


def note_text(item_id: str, number: int, title: str, by: str, at: datetime, reason: str) -> str:
    when = at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")
    return (f"{item_id} 第 {number} 版已退回修改\n"
            f"标题：{title}\n退回人：{by}\n时间：{when}（北京时间）\n原因：{reason}\n"
            f"请按原因修改后，以相同 id 重新放入 queue/inbox/，将作为新版本重新审核。\n\n"
            f"{item_id} revision {number} was returned for changes\n"
            f"Title: {title}\nReturned by: {by}\nWhen: {when} (China time)\nReason: {reason}\n"
            f"Fix what the reason says and drop the file again into queue/inbox/ with the same id: "
            f"it is reviewed again as a new revision.\n")


def write_note(queue_dir: Path, item_id: str, number: int, title: str, by: str, at: datetime, reason: str) -> Path:
    """Write the note atomically (a reader never sees half of it); returns its path."""
    path = note_path(queue_dir, item_id, number)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(note_text(item_id, number, title, by, at, reason), encoding="utf-8")
    os.replace(tmp, path)
    return path
