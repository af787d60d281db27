"""Markers the engine reads, registered for every pytest run in an environment with the engine
installed (entry point `pytest11`), so suites with `--strict-markers` accept them under plain
pytest too. Standard library and pytest only; registering is all it does.

- `serial` (alias `parallel_unsafe`): the test runs with nothing else running.
- `resource("name", ...)`: never at the same time as another test holding the same name (a
  database, a port, a GPU); `[tool.test_framework.resources]` can allow a name N at once.
- `timeout(seconds)`: the test's own timeout, above the profile's and `--timeout`.
"""

from __future__ import annotations

import pytest

MARKERS = (
    "serial: run this test with no other test running (test_framework)",
    "parallel_unsafe: alias of serial (test_framework)",
    "resource(*names): never run at the same time as another test holding one of these "
    "names (test_framework)",
    "timeout(seconds): this test's own timeout; longer and its worker is killed and the test "
    "reported as timed out (0: never) (test_framework; the marker pytest-timeout reads too)",
)


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
