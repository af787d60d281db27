"""The oracle: what plain, serial pytest says about a suite, recorded report by report.

Independent of the engine on purpose (none of its plugin or protocol): a recorder of its own,
loaded into plain pytest, writes each report's node id and pytest's category for it, so
comparing the engine with it checks the engine against pytest and not against itself. The same
reduction as `models.final_outcome` turns several reports of one test (a pass and a teardown
error, a failed subtest) into one outcome.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_RANK = {"failed": 6, "error": 5, "xpassed": 4, "xfailed": 3, "skipped": 2, "passed": 1}
OUTPUT_ENV = "TF_ORACLE_OUTPUT"
RECORDER_MODULE = "_test_framework_oracle_recorder"
# A plugin of its own, loaded into plain pytest with `-p`: one JSON line per report, with the
# category pytest's own `pytest_report_teststatus` gives it (what the closing line counts). It
# costs a write per report, so a 64,000-test suite is read in the time pytest takes to run it,
# where `-v -rA` output made pytest's passes summary quadratic.
RECORDER = """
import json, os

_config = None
_out = None


def _write(nodeid, category):
    global _out
    if _out is None:
        _out = open(os.environ["TF_ORACLE_OUTPUT"], "a", encoding="utf-8")
    _out.write(json.dumps([nodeid, category]) + "\\n")
    _out.flush()


def pytest_configure(config):
    global _config
    _config = config


def pytest_runtest_logreport(report):
    status = _config.hook.pytest_report_teststatus(report=report, config=_config)
    category = status[0] if status and isinstance(status[0], str) else ""
    _write(report.nodeid, category)


def pytest_unconfigure(config):
    if _out is not None:
        _out.close()


def pytest_collectreport(report):
    if report.failed:
        _write(report.nodeid, "error")
    elif report.skipped and report.nodeid.endswith(".py"):
        _write(report.nodeid, "skipped")  # a module-level skip
"""


@dataclass(frozen=True, slots=True)
class OracleRun:
    outcomes: dict[str, str]
    exit_code: int
    output: str


def outcomes_from_records(records: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Each test's one outcome from its reports' categories: failed beats error beats xpassed,
    xfailed, skipped, passed (`models.final_outcome`'s rule); a category no test outcome has
    (`subtests passed`, a silent phase) says nothing."""
    outcomes: dict[str, str] = {}
    for nodeid, category in records:
        if category not in _RANK:
            continue
        old = outcomes.get(nodeid)
        if old is None or _RANK[category] > _RANK[old]:
            outcomes[nodeid] = category
    return outcomes


def run_pytest(python: str, root: Path, args: Sequence[str] = ()) -> OracleRun:
    """Plain pytest with its own defaults (no `-v`, no `--continue-on-collection-errors`
    unless `args` say so) and the recorder; serial, in `root`."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / f"{RECORDER_MODULE}.py").write_text(RECORDER, encoding="utf-8")
        output = folder / "records.jsonl"
        output.touch()
        env = dict(os.environ)
        env[OUTPUT_ENV] = str(output)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [scratch, env.get("PYTHONPATH")]))
        completed = subprocess.run(
            [python, "-m", "pytest", "-p", RECORDER_MODULE, "-p", "no:cacheprovider", *args],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        lines = output.read_text(encoding="utf-8").splitlines()
    records = [(str(nodeid), str(category)) for nodeid, category in map(json.loads, lines)]
    return OracleRun(
        outcomes_from_records(records), completed.returncode, completed.stdout + completed.stderr
    )


def run_engine(
    python: str,
    root: Path,
    args: Sequence[str] = (),
    engine_args: Sequence[str] = ("--retries", "0"),
    env: Mapping[str, str] | None = None,
    cache_dir: Path | None = None,
) -> OracleRun:
    """The engine on `root` with its JSON report read back; a store of its own unless
    `cache_dir` names one (two runs on one store: the second is warm)."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        completed = subprocess.run(
            [
                python,
                "-m",
                "test_framework",
                "--project-root",
                str(root),
                "--cache-dir",
                str(cache_dir or Path(scratch) / "cache"),
                "--report",
                str(report),
                *engine_args,
                "--",
                *args,
            ],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
            env=None if env is None else dict(env),
        )
        outcomes = {}
        if report.exists():
            document = json.loads(report.read_text(encoding="utf-8"))
            outcomes = {t["nodeid"]: t["outcome"] for t in document["tests"]}
    return OracleRun(outcomes, completed.returncode, completed.stdout + completed.stderr)


def split_pytest_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """A checking script's own arguments, and pytest's after `--`."""
    if "--" not in argv:
        return list(argv), []
    cut = list(argv).index("--")
    return list(argv[:cut]), list(argv[cut + 1 :])


def differences(expected: Mapping[str, str], actual: Mapping[str, str]) -> list[str]:
    lines = []
    for nodeid in sorted(set(expected) | set(actual)):
        want, got = expected.get(nodeid, "(absent)"), actual.get(nodeid, "(absent)")
        if want != got:
            lines.append(f"{nodeid}: pytest {want}, engine {got}")
    return lines
