"""The command line as a `RunRequest`: the engine's options parsed, the rest pytest's. Apart
from `command_line.py` (which the thin client imports to find a run's project without reading
the configuration) because a request brings the configuration and the machine's description.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence

from .command_line import PROG, split_command_line
from .errors import UsageError
from .request import RunRequest


def parse_request(argv: Sequence[str], prog: str = PROG) -> tuple[RunRequest, bool]:
    parser, ns, passed_on, after = split_command_line(argv, prog)
    _reject_misspelt_options(parser, passed_on)
    pytest_args = [*passed_on, *after]
    request = RunRequest(
        categories=tuple(ns.category),
        optimization=ns.optimization,
        workers=ns.workers,
        project_root=ns.project_root,
        cache_dir=ns.cache_dir,
        maxfail=ns.maxfail,
        list_only=ns.list_only,
        report=ns.report,
        junitxml=ns.junitxml,
        html=ns.html,
        trace=ns.trace,
        shard=ns.shard,
        time_budget=ns.time_budget,
        executor=ns.executor,
        scheduler=ns.scheduler,
        dask_upload=ns.dask_upload,
        performance_regression=ns.performance_regression or ns.fail_on_regression,
        perf_threshold=ns.perf_threshold,
        fail_on_regression=ns.fail_on_regression,
        verbose=ns.verbose,
        log_format=ns.log_format,
        pytest_args=tuple(pytest_args),
        collection_cache=False if ns.no_cache else None,
        verify_cache=ns.verify_cache,
        changed=ns.changed,
        changed_lenient=ns.changed_lenient,
        timeout=ns.timeout,
        retries=ns.retries,
        isolation=ns.isolation,
        flaky_result=ns.flaky_result,
        session_timeout=ns.session_timeout,
        memory_limit_mb=ns.memory_limit,
        breaker_threshold=ns.breaker_threshold,
        argv=tuple(argv),
        resident=ns.resident,
        watch=ns.watch,
        skip_cache=ns.skip_cache,
    )
    return request, bool(ns.clear_cache)


def _reject_misspelt_options(parser: argparse.ArgumentParser, passed_on: Sequence[str]) -> None:
    """An unknown long option close to one of the engine's is a typo, not pytest's."""
    ours = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
    for arg in passed_on:
        if not arg.startswith("--"):
            continue
        name = arg.split("=", 1)[0]
        close = difflib.get_close_matches(name, ours, n=1, cutoff=0.85)
        if close:
            raise UsageError(f"unknown option {name}; did you mean {close[0]}? (see --help)")
