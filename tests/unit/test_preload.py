"""What an early zygote imports before it forks: the whole collection's modules, each only if it
resolves to the same file as in that collection."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from test_framework.worker.items import preload


def test_a_module_is_kept_only_where_it_resolves_to_the_recorded_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    for folder in (here, elsewhere):
        folder.mkdir()
    (here / "preload_probe_same.py").write_text("VALUE = 1\n", encoding="utf-8")
    (here / "preload_probe_moved.py").write_text("VALUE = 2\n", encoding="utf-8")
    (here / "preload_probe_broken.py").write_text("raise RuntimeError('no')\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(here))
    listing = tmp_path / "preload.txt"
    listing.write_text(
        f"preload_probe_same:{here / 'preload_probe_same.py'}\n"
        f"preload_probe_moved:{elsewhere / 'preload_probe_moved.py'}\n"
        f"preload_probe_broken:{here / 'preload_probe_broken.py'}\n",
        encoding="utf-8",
    )
    try:
        preload(str(listing))
        assert "preload_probe_same" in sys.modules
        assert "preload_probe_moved" not in sys.modules  # another file than the collection's
        assert "preload_probe_broken" not in sys.modules
    finally:
        for name in ("preload_probe_same", "preload_probe_moved", "preload_probe_broken"):
            sys.modules.pop(name, None)
