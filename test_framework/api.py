"""The Python API: run a suite from code, async (`run`) or not (`run_tests_with_optimization`).

Both build the same RunRequest the command line builds, so every layer of configuration applies,
and report through the same subscribers. Errors are the engine's tree (errors.py); an engine bug
arrives as `InternalError`, its traceback written to the store folder's error log.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from .errors import InternalError, TestFrameworkError
from .execution.executor import ExecutorFactory, local_executor
from .logging import internal_error_line, log_internal_error
from .models import FAILING_OUTCOMES, Outcome, RunSummary
from .orchestrator import run_events
from .reporting import subscribers_for
from .request import RunRequest, resolve


async def run(
    project_root: str | Path = ".",
    categories: Sequence[str] = (),
    optimization: str | None = None,
    *,
    workers: int | None = None,
    pytest_args: Sequence[str] = (),
    report: str | Path | None = None,
    junitxml: str | Path | None = None,
    maxfail: int | None = None,
    retries: int | None = None,
    per_test_timeout: float | None = None,
    cache_dir: str | Path | None = None,
    quiet: bool = False,
    executors: ExecutorFactory = local_executor,
) -> RunSummary:
    """Run the suite; raises UsageError (exit 4), NoTestsCollected (5), CollectionFailed (3) or
    InternalError (3, an engine bug) from errors.py; test failures are in the summary."""
    request = RunRequest(
        categories=tuple(categories),
        optimization=optimization,
        workers=workers,
        project_root=Path(project_root),
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
        maxfail=maxfail,
        report=Path(report) if report is not None else None,
        junitxml=Path(junitxml) if junitxml is not None else None,
        pytest_args=tuple(pytest_args),
        retries=retries,
        timeout=per_test_timeout,
    )
    settings = resolve(request)
    out = io.StringIO() if quiet else sys.stdout
    try:
        return await run_events(settings, subscribers_for(settings, out), executors=executors)
    except (TestFrameworkError, KeyboardInterrupt):
        raise
    except Exception as exc:
        log_path = log_internal_error(exc, settings.cache_dir)
        raise InternalError(internal_error_line(exc, log_path), log_path) from exc


def run_tests_with_optimization(**options: Any) -> dict[str, Any]:
    """Run synchronously and answer with the counts the seed documents use."""
    summary: RunSummary = anyio.run(lambda: run(**options), backend="asyncio")
    outcomes = [r.outcome for r in summary.results]
    return {
        "total_tests": len(outcomes),
        "passed": sum(o in (Outcome.PASSED, Outcome.FLAKY) for o in outcomes),
        "failed": sum(o in FAILING_OUTCOMES for o in outcomes),
        "skipped": sum(o in (Outcome.SKIPPED, Outcome.XFAILED) for o in outcomes),
        "cached": sum(o is Outcome.CACHED for o in outcomes),
        "flaky": sum(o is Outcome.FLAKY for o in outcomes),
        "execution_time": summary.duration,
        "exit_code": summary.exit_code,
        "summary": summary,
    }
