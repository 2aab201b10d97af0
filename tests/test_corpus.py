"""The corpus generator: real counts, valid files, planted content the screen catches, broken files."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from publisher.review.screen import screen
from publisher.sandbox.corpus import COUNTS, DISTRICTS, make_corpus


def read_item(path: Path) -> tuple[dict[str, Any], str]:
    """Split an item file into its front matter and body, as an editor's file is read."""
    text = path.read_bytes().decode("utf-8")
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("corpus")
    return out, make_corpus(out, broken=True)


def test_counts_match_the_bureau_year(corpus: tuple[Path, dict[str, Any]]) -> None:
    """One bureau-year has the reported 765 items by category, 127 district updates and 62 microblog items."""
    _, manifest = corpus
    items = manifest["items"]
    assert len(items) == 765
    assert Counter(i["category"] for i in items) == COUNTS
    assert sum(1 for i in items if i["source"]) == 127
    assert {i["category"] for i in items if i["source"]} == {"updates"}
    microblog = [i for i in items if i["channels"] and "microblog" in i["channels"]]
    assert len(microblog) == 62
    assert {i["category"] for i in microblog} <= {"news", "accidents", "guides", "laws", "agency"}


def test_item_files_are_valid_and_match_the_manifest(corpus: tuple[Path, dict[str, Any]]) -> None:
    """Every item file is UTF-8 with YAML front matter whose fields agree with the manifest."""
    out, manifest = corpus
    ids = set()
    for entry in manifest["items"]:
        meta, body = read_item(out / entry["file"])
        assert meta["id"] == entry["id"] and meta["category"] == entry["category"]
        assert meta.get("source") == entry["source"] and meta.get("channels") == entry["channels"]
        assert meta["date"].year == 2015 and meta["title"].strip()
        assert entry["source"] is None or entry["source"] in DISTRICTS
        assert entry["id"].startswith(f"2015-{entry['category']}-")
        assert body.count("\n\n") >= 2
        ids.add(meta["id"])
    assert len(ids) == 765


@pytest.mark.parametrize("seed", [2015, 1, 77])
def test_screen_catches_every_planted_text_and_nothing_else(tmp_path: Path, seed: int) -> None:
    """Each planted item yields exactly its planted finding, and no clean item trips the screen."""
    manifest = make_corpus(tmp_path, seed=seed)
    planted = {s["id"]: (s["kind"], s["text"]) for s in manifest["sensitive"]}
    assert len(planted) == 12
    assert {kind for kind, _ in planted.values()} == {"classified_marking", "internal_marking",
                                                      "resident_id", "mobile_number"}
    for entry in manifest["items"]:
        meta, body = read_item(tmp_path / entry["file"])
        found = [(f.kind, f.text) for f in screen(meta["title"], body)]
        assert found == ([planted[entry["id"]]] if entry["id"] in planted else []), entry["id"]


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    """The corpus is deterministic by seed: two runs write identical files, another seed differs."""
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    make_corpus(a, broken=True)
    make_corpus(b, broken=True)
    make_corpus(c, seed=2016)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert all((a / n).read_bytes() == (b / n).read_bytes() for n in names)
    assert (a / "manifest.json").read_bytes() != (c / "manifest.json").read_bytes()


def test_broken_files_one_per_reason(corpus: tuple[Path, dict[str, Any]]) -> None:
    """--broken writes one file per rejection reason, each showing its fault, plus two valid odd encodings."""
    out, manifest = corpus
    broken = {b["file"]: b for b in manifest["broken"]}
    assert len([b for b in broken.values() if b["reason"]]) == 8
    with pytest.raises(yaml.YAMLError):
        read_item(out / "bad-yaml.md")
    assert "title" not in read_item(out / "no-title.md")[0]
    assert read_item(out / "unknown-category.md")[0]["category"] not in COUNTS
    assert not (out / "no-front-matter.md").read_text(encoding="utf-8").startswith("---")
    assert (out / "empty.md").stat().st_size == 0
    assert isinstance(read_item(out / "bad-date.md")[0]["publish_at"], str)
    missing = read_item(out / "missing-attachment.md")[0]["attachments"]
    assert not any((out / name).exists() for name in missing)
    assert read_item(out / "escape-attachment.md")[0]["attachments"] == ["../../etc/passwd"]


def test_odd_encodings_are_valid_items(corpus: tuple[Path, dict[str, Any]]) -> None:
    """The GB18030 file is not UTF-8 but decodes to a valid item; the BOM file is UTF-8 with a BOM."""
    out, manifest = corpus
    accept = {b["file"]: b["accept_as"] for b in manifest["broken"] if b["reason"] is None}
    assert accept == {"gb18030-encoded.md": "gb18030-encoded-0001", "utf8-bom.md": "utf8-bom-0001"}
    raw = (out / "gb18030-encoded.md").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    meta = yaml.safe_load(raw.decode("gb18030").split("---\n")[1])
    assert meta["id"] == "gb18030-encoded-0001" and meta["title"].startswith("关于")
    raw = (out / "utf8-bom.md").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert yaml.safe_load(raw.decode("utf-8-sig").split("---\n")[1])["id"] == "utf8-bom-0001"


def test_scale_ten_is_ten_years_and_fast(tmp_path: Path) -> None:
    """Scale 10 writes ten times the items over 2015-2024 in a few seconds."""
    started = time.perf_counter()
    manifest = make_corpus(tmp_path, scale=10)
    assert time.perf_counter() - started < 5
    items = manifest["items"]
    assert len(items) == 7650 and len({i["id"] for i in items}) == 7650
    assert sum(1 for i in items if i["channels"] and "microblog" in i["channels"]) == 620
    assert {i["id"][:4] for i in items} == {str(y) for y in range(2015, 2025)}


def test_command_line_writes_the_corpus(tmp_path: Path) -> None:
    """`python -m publisher.sandbox.corpus OUT --scale --seed --sensitive --broken` writes files and the manifest."""
    subprocess.run([sys.executable, "-m", "publisher.sandbox.corpus", str(tmp_path), "--scale", "0.2", "--seed", "3",
                    "--sensitive", "4", "--broken"], check=True, capture_output=True)
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["seed"] == 3 and manifest["scale"] == 0.2
    assert len(manifest["sensitive"]) == 4 and len(manifest["broken"]) == 10
    assert all((tmp_path / i["file"]).is_file() for i in manifest["items"])
