"""The review benchmark at its smoke size: every door clears its items and a figure is printed for each (never a
time bound: figures belong in docs/BENCHMARKS.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_review_smoke_prints_every_door(tmp_path: Path) -> None:
    """`bench/bench_review.py --smoke` approves its items through the desk (batch and one by one) and the CLI batch,
    checks each door approved them all, and prints each figure beside its ideal."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_review.py"), "--smoke", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    for door in ("desk, batch", "desk, one by one", "CLI, batch"):
        assert re.search(rf"^{re.escape(door)} +\d+\.\d\d s +\d+\.\d ms/item +ideal ", done.stdout, re.MULTILINE), done.stdout
    assert re.search(r"^machine: nproc \d+; CPU .+; Python 3\.\d+\.\d+; SQLite", done.stdout, re.MULTILINE)
    assert "command: python bench/bench_review.py --smoke" in done.stdout
