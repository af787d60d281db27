"""The worker's record of what a collection read besides Python source (the audit hook)."""

from __future__ import annotations

import os
from pathlib import Path

from test_framework.worker.reads import ReadRecorder


def test_reads_of_data_files_and_listings_under_the_root_are_kept(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "data" / "cases.txt").write_text("a\n", encoding="utf-8")
    (root / "helper.py").write_text("", encoding="utf-8")
    (root / ".cache").mkdir()
    (root / ".cache" / "x").write_text("", encoding="utf-8")
    outside = tmp_path / "outside.txt"
    outside.write_text("", encoding="utf-8")
    recorder = ReadRecorder(str(root))
    recorder.install()
    (root / "data" / "cases.txt").read_text(encoding="utf-8")  # not recording yet
    recorder.recording = True
    (root / "data" / "cases.txt").read_text(encoding="utf-8")
    (root / "helper.py").read_text(encoding="utf-8")  # Python source: fingerprinted already
    (root / ".cache" / "x").read_text(encoding="utf-8")  # a dot-folder
    outside.read_text(encoding="utf-8")  # outside the project
    (root / "written.txt").write_text("x", encoding="utf-8")  # written, not read
    os.listdir(root / "data")
    recorder.recording = False
    (root / "data" / "late.txt").write_text("", encoding="utf-8")
    (root / "data" / "late.txt").read_text(encoding="utf-8")
    assert recorder.read() == ("data/cases.txt", "data/")
