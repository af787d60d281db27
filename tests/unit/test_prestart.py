"""The zygote started before the engine imports itself (execution/prestart.py): the run adopts
it when it wants exactly that one, in both of its kinds (collect first; fork before collecting,
told by `Mode` once the store is read), and every other path stops it and leaves no process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from test_framework.__main__ import early_zygote
from test_framework.cli import main

BASIC = Path(__file__).resolve().parent.parent / "fixtures" / "suites" / "basic"


def args_for(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--project-root",
        str(BASIC),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-resident",
        "--report",
        str(tmp_path / "report.json"),
        *extra,
    ]


@pytest.fixture(autouse=True)
def _in_the_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BASIC)
    for name in [n for n in os.environ if n.startswith("TEST_FRAMEWORK_")]:
        monkeypatch.delenv(name)


def test_the_run_adopts_its_early_zygote_in_both_kinds(tmp_path: Path) -> None:
    for kind in ("collects first (no store yet)", "forks before collecting (store known)"):
        args = args_for(tmp_path)
        prestarted = early_zygote(args, "prog")
        assert prestarted is not None, kind
        assert main(args, prestarted=prestarted) == 0, kind
        assert prestarted.adopted, kind
        assert prestarted.process.poll() is not None, kind  # stopped and reaped
        assert not prestarted.scratch.exists(), kind
        report = json.loads((tmp_path / "report.json").read_text())
        assert report["summary"] == {"passed": 12}, kind
        # Its start overlapped the engine's: it was asked for before the engine began.
        assert report["timings"]["warm_start"] > 0, kind


def test_a_zygote_the_run_does_not_want_is_stopped(tmp_path: Path) -> None:
    prestarted = early_zygote(args_for(tmp_path, "-k", "math"), "prog")
    assert prestarted is not None
    assert main(args_for(tmp_path), prestarted=prestarted) == 0
    assert not prestarted.adopted
    assert prestarted.process.poll() is not None
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summary"] == {"passed": 12}


def test_a_run_that_ends_before_its_start_stops_the_zygote(tmp_path: Path) -> None:
    prestarted = early_zygote(args_for(tmp_path), "prog")
    assert prestarted is not None
    assert main([*args_for(tmp_path), "--retries", "-1"], prestarted=prestarted) == 4
    assert prestarted.process.poll() is not None
    assert not prestarted.scratch.exists()


def test_no_early_zygote_for_what_is_not_a_plain_run(tmp_path: Path) -> None:
    assert early_zygote(["daemon", "status"], "prog") is None
    assert early_zygote([*args_for(tmp_path), "--isolation", "spawn"], "prog") is None
    assert early_zygote([*args_for(tmp_path), "--list"], "prog") is None
    assert early_zygote([*args_for(tmp_path), "-s"], "prog") is None  # pytest in the foreground
    assert early_zygote(["--optimizaton", "ultra_fast"], "prog") is None  # a typo: usage error


def test_help_is_printed_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert early_zygote(["--category", "unit", "--help"], "prog") is None
    assert capsys.readouterr().out == ""
