"""`pytest --cache-tests`: the engine's skip cache for people who run plain pytest (entry point
`pytest11`, so it is there in every pytest of an environment with the engine installed).

Inert unless `--cache-tests` is given: it only registers its options, and imports nothing
beyond pytest until then (the engine's own workers load it too). With the option, `session.py`
records results, durations and what each test file depended on into the engine's store (the
same SQLite file and records the engine uses, `<rootdir>/.test_framework` unless `--cache-dir`
names another), and reports the tests whose inputs did not change since they passed as skipped
with the reason `cached: ...`. It works under `pytest -n` (pytest-xdist): the controller
decides and writes, the workers obey and say what they imported and read.
"""

from __future__ import annotations

import os

import pytest

PLUGIN_NAME = "test_framework_cache_session"
# Set in every process the engine starts: the engine has its own skip cache.
_ENGINE_WORKER = "TEST_FRAMEWORK_CHANNEL_FD"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("test_framework", "test_framework's skip cache")
    group.addoption(
        "--cache-tests",
        action="store_true",
        default=False,
        help="skip the tests whose inputs did not change since they last passed (reported as "
        "skipped, reason 'cached'); record results, durations and dependencies for next time "
        "(test_framework)",
    )
    group.addoption(
        "--cache-tests-sample",
        type=float,
        default=None,
        metavar="SHARE",
        help="the share of cached tests run anyway to check the cache (the trip-wire), between "
        "0 and 1 (default 0.02, at least one test; 0: none) (test_framework)",
    )
    group.addoption(
        "--performance-regression",
        action="store_true",
        default=False,
        help="with --cache-tests: name the tests that took much longer than their median over "
        "recent runs (passed, 3+ past runs, past --perf-threshold times it and 0.1s more) "
        "(test_framework)",
    )
    group.addoption(
        "--perf-threshold",
        type=float,
        default=None,
        metavar="X",
        help="with --performance-regression: times its median a test must take (default 2.0; "
        "more than 1) (test_framework)",
    )
    group.addoption(
        "--fail-on-regression",
        action="store_true",
        default=False,
        help="with --performance-regression: a regression fails the session (test_framework)",
    )
    names = ["--cache-dir", "--cache-tests-dir"]
    for taken in (False, True):
        try:
            group.addoption(
                *(names[1:] if taken else names),
                dest="test_framework_cache_dir",
                default=None,
                metavar="DIR",
                help="the folder of test_framework's store for --cache-tests (default: "
                "<rootdir>/.test_framework, or the project's configured one)",
            )
            return
        except ValueError:  # another plugin has --cache-dir: keep only our own spelling
            continue


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    regression = any(
        config.getoption(name, None)
        for name in ("performance_regression", "perf_threshold", "fail_on_regression")
    )
    if regression and not config.getoption("cache_tests", False):
        raise pytest.UsageError(
            "--performance-regression needs --cache-tests: durations are recorded in "
            "test_framework's store only with it"
        )
    threshold = config.getoption("perf_threshold", None)
    if threshold is not None and not threshold > 1:
        raise pytest.UsageError(
            f"--perf-threshold must be more than 1 (2 = twice as long), got {threshold}"
        )
    if not config.getoption("cache_tests", False):
        return
    if os.environ.get(_ENGINE_WORKER):
        raise pytest.UsageError(
            "--cache-tests is for plain pytest; under test_framework, turn on the engine's own "
            "skip cache (the profile key skip_cache = true)"
        )
    from .session import start

    config.pluginmanager.register(start(config), PLUGIN_NAME)
