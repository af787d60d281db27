"""The file index: a stat per unchanged file, a hash when anything moved, never fooled by an
edit made in the same mtime tick."""

from __future__ import annotations

import os
from pathlib import Path

from test_framework.fingerprint.index import MISSING, RACY_WINDOW_NS, FileIndex


def write(path: Path, text: str, mtime_ns: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))


OLD = 1_000 * 1_000_000_000  # an mtime far in the past


def test_an_unchanged_file_is_not_read_again(tmp_path: Path) -> None:
    write(tmp_path / "a.py", "x = 1\n", OLD)
    first = FileIndex(tmp_path)
    digest = first.digest("a.py")
    taken, entries = first.snapshot()
    again = FileIndex(tmp_path, entries, indexed_at_ns=taken)
    assert again.digest("a.py") == digest
    assert again.hashed == 0


def test_an_edit_is_seen_through_its_stat(tmp_path: Path) -> None:
    write(tmp_path / "a.py", "x = 1\n", OLD)
    first = FileIndex(tmp_path)
    before = first.digest("a.py")
    taken, entries = first.snapshot()
    write(tmp_path / "a.py", "x = 2\n", OLD + 5)
    again = FileIndex(tmp_path, entries, indexed_at_ns=taken)
    assert again.digest("a.py") != before
    assert again.changed({"a.py": before}) == ["a.py"]


def test_an_edit_that_keeps_size_and_mtime_is_seen_when_racily_clean(tmp_path: Path) -> None:
    """Recorded within the racy window of its mtime, an entry is hashed again: an edit in the
    same tick (same size, same mtime) cannot hide."""
    write(tmp_path / "a.py", "x = 1\n", OLD)
    index = FileIndex(tmp_path, indexed_at_ns=OLD + RACY_WINDOW_NS // 2)
    before = index.digest("a.py")
    _, entries = index.snapshot()
    write(tmp_path / "a.py", "x = 9\n", OLD)  # same size, same mtime
    again = FileIndex(tmp_path, entries, indexed_at_ns=OLD + RACY_WINDOW_NS // 2)
    assert again.digest("a.py") != before


def test_a_trusted_entry_is_a_stat_only_when_safely_older(tmp_path: Path) -> None:
    write(tmp_path / "a.py", "x = 1\n", OLD)
    index = FileIndex(tmp_path, indexed_at_ns=OLD + 2 * RACY_WINDOW_NS)
    digest = index.digest("a.py")
    again = FileIndex(tmp_path, index.entries, indexed_at_ns=OLD + 2 * RACY_WINDOW_NS)
    assert again.digest("a.py") == digest
    assert again.hashed == 0


def test_a_missing_file_says_so_and_a_new_one_is_hashed(tmp_path: Path) -> None:
    index = FileIndex(tmp_path)
    assert index.digest("gone.py") == MISSING
    write(tmp_path / "gone.py", "", OLD)
    assert index.digest("gone.py") != MISSING


def test_a_folders_digest_is_its_listing(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write(tmp_path / "data" / "a.json", "{}", OLD)
    index = FileIndex(tmp_path)
    before = index.digest("data/")
    write(tmp_path / "data" / "a.json", "[]", OLD + 7)  # content: not the listing
    assert FileIndex(tmp_path).digest("data/") == before
    write(tmp_path / "data" / "b.json", "{}", OLD)
    assert FileIndex(tmp_path).digest("data/") != before
