"""Plugins' summaries: what the summary process printed between its markers."""

from __future__ import annotations

from pathlib import Path

from test_framework.execution.summary import between_markers
from test_framework.worker.protocol import SUMMARY_BEGIN as BEGIN
from test_framework.worker.protocol import SUMMARY_END as END
from test_framework.worker.summary import latest_attempts

TABLE = """\
================================ tests coverage ================================
_______________ coverage: platform linux, python 3.11.7-final-0 ________________

Name              Stmts   Miss  Cover
-------------------------------------
pkg/__init__.py       8      1    88%
-------------------------------------
TOTAL                 8      1    88%"""

OUTPUT = f"""\
============================= test session starts ==============================
collected 0 items
=================================== FAILURES ===================================
___________________________________ test_bad ___________________________________
E   assert 0
{BEGIN}
{TABLE}
{END}
=========================== short test summary info ============================
FAILED test_a.py::test_bad - assert 0
============================ 1 failed in 0.11s =============================
"""


def test_only_what_plugins_printed_is_kept() -> None:
    assert between_markers(OUTPUT) == TABLE + "\n"


def test_nothing_printed_between_the_markers_gives_nothing() -> None:
    assert between_markers(f"{BEGIN}\n\n{END}\n") == ""


def test_a_summary_that_never_reached_the_markers_gives_nothing() -> None:
    assert between_markers("INTERNALERROR> boom\n") == ""


def phase(nodeid: str, when: str, outcome: str, start: float) -> str:
    import json

    return json.dumps(
        {
            "$report_type": "TestReport",
            "nodeid": nodeid,
            "when": when,
            "outcome": outcome,
            "start": start,
            "location": ["a.py", 1, "t"],
        }
    )


def test_the_latest_attempt_of_each_test_is_the_one_replayed(tmp_path: Path) -> None:
    first = [
        phase("a.py::t", w, "failed" if w == "call" else "passed", 1.0 + i)
        for i, w in enumerate(("setup", "call", "teardown"))
    ]
    first += [phase("a.py::u", w, "passed", 2.0) for w in ("setup", "call", "teardown")]
    retry = [
        phase("a.py::t", w, "passed", 9.0 + i) for i, w in enumerate(("setup", "call", "teardown"))
    ]
    (tmp_path / "reports-1.jsonl").write_text("\n".join(first) + "\n")
    (tmp_path / "reports-2.jsonl").write_text("\n".join(retry) + "\n")
    (tmp_path / "reports-3.jsonl").write_text(
        '{"$report_type": "CollectReport", "nodeid": "b.py", "outcome": "failed"}\n'
    )
    attempts = latest_attempts(tmp_path)
    assert [r["outcome"] for r in attempts["a.py::t"]] == ["passed", "passed", "passed"]
    assert [r["when"] for r in attempts["a.py::u"]] == ["setup", "call", "teardown"]
    assert attempts["b.py"][0]["$report_type"] == "CollectReport"
