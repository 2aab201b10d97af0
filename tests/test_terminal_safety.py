"""Stored text reaches an admin's terminal as text: an editor's title cannot send escape sequences through
`publisher show`, `items`, `review`, `audit` or `lag`, nor be read as rich markup."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from publisher.app.cli.table import printable
from tests.test_cli import cli, workdir  # noqa: F401  # workdir is a fixture

# ESC ] 0 ; … BEL retitles the window, ESC [ 2 J clears the screen, U+202E reverses what follows
TITLE = "\x1b]0;owned\x07\x1b[2J[bold]关于\u202e检查[/bold]的通知"


def test_printable_replaces_what_a_terminal_would_act_on() -> None:
    """Control characters and bidirectional overrides become U+FFFD; Chinese text, tabs and newlines stay."""
    assert printable(TITLE) == "\ufffd]0;owned\ufffd\ufffd[2J[bold]关于\ufffd检查[/bold]的通知"
    assert printable("第一行\n\t第二行") == "第一行\n\t第二行"


def test_no_command_prints_an_editors_escape_sequences(workdir: Path) -> None:  # noqa: F811
    """An item whose title carries escape sequences, rich markup and a bidi override waits in review; every
    read-only command shows the title with those characters replaced and the markup as literal text."""
    (workdir / "queue" / "inbox" / "evil.md").write_text(
        '---\nid: evil-1\ntitle: "关于检查的通知"\ncategory: accidents\ndate: 2015-03-18\n---\n正文。\n', "utf-8")
    cli("run", "--once", cwd=workdir)
    # Intake refuses control characters in an item file (tests/test_intake_hardening.py), so the title is
    # put in the store the way another door could bring it (a district feed, a remote's error text).
    db = sqlite3.connect(workdir / "var" / "publisher.db")
    with db:
        db.execute("UPDATE items SET title = ? WHERE id = 'evil-1'", (TITLE,))
        db.execute("UPDATE revisions SET title = ? WHERE item_id = 'evil-1'", (TITLE,))
    db.close()
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    for args in (["show", "evil-1"], ["items"], ["review"], ["audit", "evil-1"], ["lag", "--store"]):
        out = subprocess.run([sys.executable, "-m", "publisher", *args], cwd=workdir, capture_output=True,
                             text=True, timeout=120, env={**env, "COLUMNS": "300"}, check=True).stdout
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, args
        if args[0] == "show":
            assert "\ufffd]0;owned\ufffd\ufffd[2J[bold]关于\ufffd检查[/bold]的通知" in out, out
        if args[0] == "lag":  # the deadline table cuts the title to its column
            assert "\ufffd]0;owne" in out, out
