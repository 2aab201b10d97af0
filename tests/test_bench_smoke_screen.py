"""The screen benchmark at its smoke size: it runs and prints every figure beside its ideal (never a time bound)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_screen_smoke_prints_every_figure() -> None:
    """`bench/bench_screen.py --smoke` screens a slice of the corpus and a long body, and prints each figure with
    its ideal, the machine and the command; the planted items are found."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_screen.py"), "--smoke"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    item = re.search(r"^screen per corpus item +\d+\.\d\d ms +ideal ≤ 5 ms .* (\d+) items, (\d+) findings$", out, re.M)
    assert item is not None and int(item.group(1)) > 0 and int(item.group(2)) > 0, out
    assert re.search(r"^screen of one long body +\d+\.\d ms +ideal ≤ 10 µs a character +9,200 characters", out, re.M), out
    assert re.search(r"^machine: nproc \d+; .+; Python 3\.\d+\.\d+; load \d+\.\d$", out, re.M), out
    assert "command: python bench/bench_screen.py --smoke" in out
