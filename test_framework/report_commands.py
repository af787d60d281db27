"""`merge-reports` and `shard-verify`: what a CI pipeline does with its shards' JSON reports.

    python -m test_framework shard-verify shard-*.json
    python -m test_framework merge-reports shard-*.json --report all.json --junitxml all.xml \\
        --html all.html

Both read run documents (reporting/run_document.py) only; neither needs the project or its
store, so they run in a final CI job that downloaded the shards' artifacts. A file that is not
a run document is a usage error (4) naming it; shards that do not cover the selection exactly
once make `shard-verify` exit 1 with one line per problem.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .arguments import CommandParser
from .errors import UsageError
from .exit_codes import ExitCode
from .reporting import report_outputs
from .reporting.json_report import write_atomic
from .reporting.merge import merge, verify
from .reporting.run_document import RunDocument


def read_documents(paths: Sequence[Path]) -> list[RunDocument]:
    documents = []
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            documents.append(RunDocument.from_json(data))
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise UsageError(
                f"{path} is not a test_framework JSON report (--report PATH) of schema 2: "
                f"{type(exc).__name__}: {exc}"
            ) from None
    return documents


def shard_verify_main(argv: Sequence[str], prog: str) -> int:
    parser = CommandParser(
        prog=f"{prog} shard-verify",
        description="Check that CI shards' JSON reports (runs with --shard K/N --report PATH) "
        "together ran every collected test exactly once.",
    )
    parser.add_argument("reports", nargs="+", type=Path, metavar="REPORT")
    ns = parser.parse_args(list(argv))
    documents = read_documents(ns.reports)
    problems = verify(documents)
    if problems:
        for problem in problems:
            print(f"shard-verify: {problem}", file=sys.stdout)
        print(f"shard-verify: FAILED ({len(problems)} problem(s))")
        return int(ExitCode.TESTS_FAILED)
    total = documents[0].shard_of[1] if documents[0].shard_of else len(documents)
    selection = documents[0].shard_selection
    count = selection[0] if selection else sum(len(d.tests) for d in documents)
    print(f"shard-verify: OK: {total} shards ran the {count} selected tests, each exactly once")
    return int(ExitCode.OK)


def merge_reports_main(argv: Sequence[str], prog: str) -> int:
    parser = CommandParser(
        prog=f"{prog} merge-reports",
        description="Merge CI shards' JSON reports into one run: a JSON report, JUnit XML, an "
        "HTML report and a trace, as a single run would have written them. The exit code is "
        "the merged run's (0 passed, 1 failures, ...).",
    )
    parser.add_argument("reports", nargs="+", type=Path, metavar="REPORT")
    parser.add_argument("--report", type=Path, metavar="PATH", help="the merged JSON report")
    parser.add_argument("--junitxml", type=Path, metavar="PATH", help="the merged JUnit XML")
    parser.add_argument("--html", type=Path, metavar="PATH", help="the merged HTML report")
    parser.add_argument("--trace", type=Path, metavar="PATH", help="the merged Chrome trace")
    ns = parser.parse_args(list(argv))
    outputs = report_outputs(report=ns.report, junitxml=ns.junitxml, html=ns.html, trace=ns.trace)
    if not outputs:
        raise UsageError(
            "merge-reports writes nothing: give --report, --junitxml, --html or --trace"
        )
    for path, _ in outputs:
        if not path.parent.is_dir():
            raise UsageError(f"{path}: folder {str(path.parent)!r} does not exist")
    merged = merge(read_documents(ns.reports))
    for path, render in outputs:
        write_atomic(path, render(merged))
    words = ", ".join(f"{n} {word}" for word, n in merged.summary.items())
    print(f"merged {len(ns.reports)} reports: {words or 'no tests'} (exit {merged.exit_code})")
    return merged.exit_code
