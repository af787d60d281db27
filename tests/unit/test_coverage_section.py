"""Cutting pytest-cov's lines out of the report process's output."""

from __future__ import annotations

from test_framework.execution.coverage import coverage_section

OUTPUT = """\
============================= test session starts ==============================
rootdir: /p
collected 0 items
ERROR: Coverage failure: total of 88 is less than fail-under=95

================================ tests coverage ================================
_______________ coverage: platform linux, python 3.11.7-final-0 ________________

Name              Stmts   Miss  Cover
-------------------------------------
pkg/__init__.py       8      1    88%
-------------------------------------
TOTAL                 8      1    88%
FAIL Required test coverage of 95% not reached. Total coverage: 87.50%
============================ no tests ran in 0.11s =============================
"""


def test_the_section_runs_from_pytest_covs_first_line_to_before_the_closing_line() -> None:
    section = coverage_section(OUTPUT).splitlines()
    assert section[0] == "ERROR: Coverage failure: total of 88 is less than fail-under=95"
    assert section[2].strip("= ") == "tests coverage"
    assert section[-1].startswith("FAIL Required test coverage of 95%")


def test_a_quiet_run_without_a_table_gives_nothing() -> None:
    assert coverage_section("\n============ no tests ran in 0.01s ============\n") == ""
