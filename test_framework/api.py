"""The Python API: run a suite from code, async (`run`) or not (`run_tests_with_optimization`).

Both build the same RunRequest the command line builds, so every layer of configuration applies,
and report through the same subscribers. Errors are the engine's tree (errors.py); an engine bug
arrives as `InternalError`, its traceback written to the store folder's error log.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

from .errors import InternalError, TestFrameworkError, UsageError
from .execution.executor import ExecutorFactory, local_executor
from .logging import api_logging, internal_error_line, log_internal_error
from .models import FAILING_OUTCOMES, Outcome, RunSummary
from .orchestrator import run_events
from .reporting import subscribers_for
from .reporting.run_document import RunDocument
from .request import RunRequest, resolve


async def run(
    project_root: str | Path = ".",
    categories: str | Sequence[str] = (),
    optimization: str | None = None,
    *,
    workers: int | None = None,
    pytest_args: Sequence[str] = (),
    report: str | Path | None = None,
    junitxml: str | Path | None = None,
    html: str | Path | None = None,
    trace: str | Path | None = None,
    maxfail: int | None = None,
    retries: int | None = None,
    per_test_timeout: float | None = None,
    cache_dir: str | Path | None = None,
    quiet: bool = False,
    executors: ExecutorFactory = local_executor,
    document_sink: Callable[[RunDocument], None] | None = None,
) -> RunSummary:
    """Run the suite and return its summary (test failures are in it, never raised).

    `categories`: one name or several. `document_sink` receives the run's document (the
    typed form of the JSON report) when the run finished; `run_document` returns it. The
    engine's own log goes to `<store>/engine.log`, never to stdout; the console report goes to
    stdout unless `quiet`.

    Raises (all from `test_framework.errors`, each with a one-line message):
    `UsageError` (a bad option or value; `ConfigError` and `ProjectError` are kinds of it: exit
    4 on the command line), `NoTestsCollected` (5), `CollectionFailed` (pytest could not
    collect: 3, or 4 when pytest rejected the arguments), `InternalError` (a bug in the
    engine, its traceback in `<store>/internal-errors.log`: 3); `KeyboardInterrupt` passes
    through."""
    request = RunRequest(
        categories=(categories,) if isinstance(categories, str) else tuple(categories),
        optimization=optimization,
        workers=workers,
        project_root=Path(project_root),
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
        maxfail=maxfail,
        report=Path(report) if report is not None else None,
        junitxml=Path(junitxml) if junitxml is not None else None,
        html=Path(html) if html is not None else None,
        trace=Path(trace) if trace is not None else None,
        pytest_args=tuple(pytest_args),
        retries=retries,
        timeout=per_test_timeout,
    )
    settings = resolve(request)
    out = io.StringIO() if quiet else sys.stdout
    sinks = [document_sink] if document_sink is not None else []
    subscribers = subscribers_for(settings, out, document_sinks=sinks)
    try:
        with api_logging(settings.cache_dir):
            return await run_events(settings, subscribers, executors=executors)
    except (TestFrameworkError, KeyboardInterrupt):
        raise
    except Exception as exc:
        log_path = log_internal_error(exc, settings.cache_dir)
        raise InternalError(internal_error_line(exc, log_path), log_path) from exc


async def run_document(
    project_root: str | Path = ".", categories: str | Sequence[str] = (), **options: Any
) -> RunDocument:
    """Run as `run` does and return the run's document: every test with its outcome, times,
    attempts and worker slot, the metrics and the timings (reporting/run_document.py)."""
    documents: list[RunDocument] = []
    await run(project_root, categories, document_sink=documents.append, **options)
    return documents[0]


def run_tests_with_optimization(**options: Any) -> dict[str, Any]:
    """Run synchronously (the options are `run`'s) and answer with the counts the seed
    documents use, plus one key per outcome (`outcomes`) and pytest's closing-line counts
    (`counts`): every test is counted; `document` is the run's document (`RunDocument`).
    Inside a running event loop, `await run(...)` instead.
    Raises what `run` raises."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise UsageError(
            "run_tests_with_optimization() cannot be called inside a running event loop; "
            "use `await test_framework.api.run(...)` there"
        )
    documents: list[RunDocument] = []
    summary: RunSummary = anyio.run(
        lambda: run(document_sink=documents.append, **options), backend="asyncio"
    )
    outcomes = [r.outcome for r in summary.results]
    return {
        "total_tests": len(outcomes),
        "passed": sum(o in (Outcome.PASSED, Outcome.FLAKY) for o in outcomes),
        "xpassed": sum(o is Outcome.XPASSED for o in outcomes),
        "failed": sum(o in FAILING_OUTCOMES for o in outcomes),
        "skipped": sum(o in (Outcome.SKIPPED, Outcome.XFAILED) for o in outcomes),
        "cached": sum(o is Outcome.CACHED for o in outcomes),
        "flaky": sum(o is Outcome.FLAKY for o in outcomes),
        "not_run": sum(o is Outcome.NOT_RUN for o in outcomes),
        "outcomes": {o.value: outcomes.count(o) for o in Outcome if o in outcomes},
        "counts": dict(summary.counts),
        "execution_time": summary.duration,
        "exit_code": summary.exit_code,
        "summary": summary,
        "document": documents[0] if documents else None,
    }
