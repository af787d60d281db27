"""The engine's exception tree; `cli.py` is the one place that maps it to exit codes.

    TestFrameworkError                      -> 3 internal error (unless a subclass says otherwise)
     +-- UsageError (ValueError)            -> 4 the user asked for something invalid
     |    +-- ConfigError                   -> 4 a config file, key or value is wrong
     |    +-- ProjectError                  -> 4 the project root or a path in it cannot be used
     +-- NoTestsCollected                   -> 5 the selection holds no test
     +-- CollectionFailed                   -> 3 pytest could not even start collecting
     +-- StoreError                         -> never fatal: logged as a warning, the run goes on

Each message says what was wrong, where, and what is valid, so the CLI prints it on one line and no
traceback ever reaches a user for a mistake of theirs.
"""

from __future__ import annotations

from .exit_codes import ExitCode


class TestFrameworkError(Exception):
    __test__ = False
    exit_code: ExitCode = ExitCode.INTERNAL_ERROR


class UsageError(TestFrameworkError, ValueError):
    exit_code = ExitCode.USAGE_ERROR


class ConfigError(UsageError):
    """A config source (file, environment variable, option) holds a bad key or value."""


class ProjectError(UsageError):
    """The project root, or a path the user named in it, does not exist or cannot be read."""


class NoTestsCollected(TestFrameworkError):
    exit_code = ExitCode.NO_TESTS_COLLECTED


class CollectionFailed(TestFrameworkError):
    """pytest failed before it reported any collected item (bad args, broken conftest)."""

    def __init__(self, message: str, *, exit_code: ExitCode = ExitCode.INTERNAL_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class StoreError(TestFrameworkError):
    """The results store could not be read or written; callers warn and go on."""
