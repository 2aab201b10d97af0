"""How long the screen takes over a bureau-year of items, as intake runs it (every field, the shipped config's
dictionary), and over one long body. Prints each figure beside its ideal, the machine and the command.

    python bench/bench_screen.py            # the generated corpus (765 items) and a 92,000-character body
    python bench/bench_screen.py --smoke    # 40 items and a 9,200-character body: for CI, figures only
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from publisher.config.settings import load_config  # noqa: E402  # after the path: run as a script
from publisher.review.chain import findings_for  # noqa: E402
from publisher.sandbox.corpus import make_corpus  # noqa: E402

PARAGRAPH = ("各区县安监局：根据淄安监发〔2015〕45号文件要求，2015年3月18日至4月30日开展专项检查，共检查企业165家，"
             "发现并整改隐患724项。咨询电话：0533-3184163。\n\n")


def _item(path: Path) -> tuple[dict[str, object], str]:
    text = path.read_text(encoding="utf-8")
    _, front, body = text.split("---\n", 2)
    return yaml.safe_load(front), body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    config = load_config(ROOT / "config.yaml", env={})
    with tempfile.TemporaryDirectory() as tmp:
        manifest = make_corpus(Path(tmp), scale=0.05 if args.smoke else 1.0)
        items = [_item(Path(tmp) / entry["file"]) for entry in manifest["items"]]
    findings_for(config, "预热", "预热")  # the dictionary is compiled once per configuration, not per item
    started = time.perf_counter()
    found = 0
    for front, body in items:
        found += len(findings_for(config, str(front["title"]), body, source=front.get("source")))  # type: ignore[arg-type]
    per_item = (time.perf_counter() - started) / len(items) * 1000
    long_body = PARAGRAPH * (100 if args.smoke else 1000)
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        findings_for(config, "标题", long_body)
        runs.append(time.perf_counter() - started)
    print(f"screen per corpus item          {per_item:6.2f} ms   ideal ≤ 5 ms (intake's drop → first request budget is 50 ms)"
          f"   {len(items)} items, {found} findings")
    print(f"screen of one long body         {min(runs) * 1000:6.1f} ms   ideal ≤ 10 µs a character"
          f"   {len(long_body):,} characters, best of 3")
    print(f"machine: nproc {os.cpu_count()}; {platform.processor() or platform.machine()}; Python {platform.python_version()};"
          f" load {os.getloadavg()[0]:.1f}")
    print(f"command: python bench/bench_screen.py{' --smoke' if args.smoke else ''}")


if __name__ == "__main__":
    main()
