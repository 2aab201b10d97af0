"""The intake benchmark at its smoke size: it runs and prints its figure beside the ideal (never a time bound)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_intake_smoke_prints_its_figure() -> None:
    """`bench/bench_intake.py --smoke` takes a slice of the corpus into a fresh store and prints the CPU per accepted
    file with its ideal, the files' outcomes, the machine and the command."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_intake.py"), "--smoke"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    figure = re.search(r"^intake CPU per accepted file +\d+\.\d\d ms +ideal ≤ 1\.2 ms +median of 1: .*; (\d+) accepted, "
                       r"\d+ rejected of (\d+) files$", out, re.M)
    assert figure is not None and 0 < int(figure.group(1)) <= int(figure.group(2)), out
    assert re.search(r"^machine: nproc \d+; .+; Python 3\.\d+\.\d+; load \d+\.\d$", out, re.M), out
    assert "command: python bench/bench_intake.py --smoke" in out
