"""The lag-surfaces benchmark at its smoke size: it runs end to end and prints every figure (never a time bound)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_surfaces_smoke_prints_every_figure(tmp_path: Path) -> None:
    """`bench/bench_surfaces.py --smoke` builds its store, runs the sandbox and the busy daemon, and prints
    each figure with its ideal, the machine and the command."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_surfaces.py"), "--smoke", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for figure, ideal in (("publisher lag (table)", "≤ 300 ms"), ("GET /api/lag", "≤ 150 ms"),
                          ("GET /api/lag?since=7d", "≤ 150 ms")):
        line = re.search(rf"^{re.escape(figure)} +(\d+\.\d) ms +(\d+) .*{ideal}", out, re.MULTILINE)
        assert line is not None, f"no figure for {figure!r} in:\n{out}"
        assert int(line.group(2)) >= 3, f"{figure}: fewer timings than --runs"
    ratio = re.search(r"^dispatch rate ratio +(\d+\.\d\d) .*≥ 0\.90 .* (\d+\.\d) deliveries/s over .*, (\d+\.\d)/s over",
                      out, re.MULTILINE)
    assert ratio is not None, f"no dispatch rate ratio in:\n{out}"
    assert re.search(r"^windows in order \(deliveries/s, \* measuring\): \d+\*? \d+", out, re.MULTILINE), out
    assert re.search(r"^GET /api/lag Age headers: \d+-\d+ s$", out, re.MULTILINE), out
    assert re.search(r"^machine: nproc \d+; CPU .+; RAM \d+ GiB; Python 3\.\d+\.\d+; SQLite 3\.\d+\.\d+", out, re.MULTILINE), out
    assert "command: python bench/bench_surfaces.py --smoke" in out
    assert re.search(r"^store: [\d,]+ deliveries due 2015-\d{4} over \d channels; .* in review [1-9]", out, re.MULTILINE), out
