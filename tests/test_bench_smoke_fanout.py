"""The fan-out bench at its smoke size: it runs, and prints every figure beside its ideal (never a time asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run() -> tuple[str, dict[str, Any]]:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_fanout.py"), "--smoke"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    return out, json.loads(out[out.index("\n{") + 1:])


def test_every_figure_is_printed_beside_its_ideal(run: tuple[str, dict[str, Any]]) -> None:
    """Each of the four figures is printed on its own line with the ideal it is held against."""
    out, _ = run
    for name, ideal in (("raw", "ideal ≥ 0.7 ×"), ("backfill", "ideal ≤ 1.15 ×"), ("isolation", "ideal ≤ 1.10 ×"),
                        ("memory", "ideal ≤ 150 MB")):
        lines = [line for line in out.splitlines() if line.startswith(f"FIGURE {name}:")]
        assert len(lines) == 1 and ideal in lines[0], out


def test_the_machine_and_command_are_reported(run: tuple[str, dict[str, Any]]) -> None:
    """The result names the machine (cores, CPU, RAM, Python, SQLite) and the command that made it."""
    _, result = run
    assert {"nproc", "cpu", "ram_mib", "python", "sqlite"} <= set(result["machine"])
    assert "--smoke" in result["command"] and result["size"] == "smoke"


def test_raw_fan_out_sends_each_row_once_and_measures_both_rates(run: tuple[str, dict[str, Any]]) -> None:
    """The raw part's peer takes exactly one create per delivery row, and both the daemon's rate and the
    bare httpx ceiling are measured."""
    raw = run[1]["raw"]
    assert raw["peer_creates"] == raw["deliveries"] > 0
    assert raw["daemon_deliveries_per_s"] > 0 and raw["bare_httpx_per_s"] > 0 and raw["bare_daemons_client_per_s"] > 0


def test_backfill_sends_the_whole_corpus_to_four_channels(run: tuple[str, dict[str, Any]]) -> None:
    """Every corpus item reaches each of the four channels in the backfill, and the ideal is computed."""
    backfill = run[1]["backfill"]
    assert backfill["sent"] == backfill["rows_per_channel"] and len(backfill["sent"]) == 4
    assert backfill["ideal_s"] > 0 and backfill["wall_s"] > 0


def test_isolation_leaves_the_hung_channel_unsent_and_the_others_done(run: tuple[str, dict[str, Any]]) -> None:
    """With one peer black-holed, its channel sends nothing while the other three send every row."""
    iso = run[1]["isolation"]
    assert iso["hung"] not in iso["sent"] and len(iso["sent"]) == 3
    assert all(iso["sent"][ch] == iso["rows_per_channel"][ch] for ch in iso["sent"])
    assert not iso["hung_states"].get("sent") and not iso["hung_states"].get("live")
    assert iso["p95_lag_without_fault_s"] > 0


def test_memory_reads_the_daemons_peak_resident_set(run: tuple[str, dict[str, Any]]) -> None:
    """The memory part reads a non-zero VmHWM of the daemon while it works through the pending rows."""
    mem = run[1]["memory"]
    assert mem["daemon_vmhwm_mb"] > 0 and mem["pending_rows"] > 0 and mem["sent_while_watched"] > 0
    assert len(mem["helper_processes_vmhwm_mb"]) >= 2 and mem["with_helpers_mb"] > mem["daemon_vmhwm_mb"]
