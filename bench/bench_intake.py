"""Intake's CPU per accepted file, in process: `await Intake.scan()` over a corpus dropped at once into a fresh
store (the backfill's config: four http_push channels, no review), timed with `time.process_time`. Prints the
median of the runs beside the ideal, the machine and the command.

    python bench/bench_intake.py            # the scale-2 corpus (1 530 files), 3 runs, each on a fresh store
    python bench/bench_intake.py --smoke    # 40 files, 1 run: for CI, figures only
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import structlog

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _fanout_kit import CHANNELS, write_config  # noqa: E402  # after the path: run as a script

from publisher.clock import SystemClock  # noqa: E402
from publisher.config.settings import load_config  # noqa: E402
from publisher.intake.queue import Intake  # noqa: E402
from publisher.logs import configure_logging  # noqa: E402
from publisher.review.chain import Review  # noqa: E402
from publisher.sandbox.corpus import make_corpus  # noqa: E402
from publisher.store.db import Store  # noqa: E402


def one_run(corpus: Path) -> tuple[float, dict[str, int]]:
    """CPU seconds of one scan of the whole corpus into a fresh store, and the files' outcomes."""
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        work = Path(tmp)
        config_path, _ = write_config(work, dict.fromkeys(CHANNELS, "http://127.0.0.1:9"), concurrency=8)
        cwd = Path.cwd()
        os.chdir(work)  # the config's relative store and queue paths
        try:
            config = load_config(config_path, env={})
            store = Store.open(config.store_url)
            clock = SystemClock()
            intake = Intake(config, store, Review(store, config, clock), clock)
            for f in corpus.glob("*.md"):
                shutil.copy(f, intake.inbox / f.name)
            started = time.process_time()
            asyncio.run(intake.scan())
            cpu = time.process_time() - started
            store.close()
        finally:
            os.chdir(cwd)
    return cpu, dict(intake.counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    configure_logging(json=True)  # the daemon's JSON lines, rendered as it renders them, written to nowhere
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(open(os.devnull, "w")))  # noqa: SIM115
    with tempfile.TemporaryDirectory(prefix="bench-intake-corpus-") as tmp:
        corpus = Path(tmp)
        make_corpus(corpus, scale=0.05 if args.smoke else 2.0, sensitive=0)
        runs = [one_run(corpus) for _ in range(1 if args.smoke else 3)]
    per_file = [cpu / counts["accepted"] * 1000 for cpu, counts in runs]
    counts = runs[-1][1]
    print(f"intake CPU per accepted file   {statistics.median(per_file):5.2f} ms   ideal ≤ 1.2 ms   median of "
          f"{len(runs)}: {', '.join(f'{x:.2f}' for x in per_file)}; {counts['accepted']} accepted, "
          f"{counts['rejected']} rejected of {sum(counts.values())} files")
    print(f"machine: nproc {os.cpu_count()}; {platform.processor() or platform.machine()}; Python {platform.python_version()};"
          f" load {os.getloadavg()[0]:.1f}")
    print(f"command: python bench/bench_intake.py{' --smoke' if args.smoke else ''}")


if __name__ == "__main__":
    main()
