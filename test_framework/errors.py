"""The engine's exception tree; `cli.py` is the one place that maps it to exit codes.

    TestFrameworkError                      -> 3 internal error (unless a subclass says otherwise)
     +-- UsageError (ValueError)            -> 4 the user asked for something invalid
     |    +-- ConfigError                   -> 4 a config file, key or value is wrong
     |    +-- ProjectError                  -> 4 the project root or a path in it cannot be used
     +-- NoTestsCollected                   -> 5 the selection holds no test
     +-- CollectionFailed                   -> 3 pytest could not even start collecting
     +-- InternalError                      -> 3 a bug in the engine itself, traceback in a log
     +-- StoreError                         -> never fatal: logged as a warning, the run goes on

Each message says what was wrong, where, and what is valid, so the CLI prints it on one line and no
traceback ever reaches a user for a mistake of theirs.
"""

from __future__ import annotations

from pathlib import Path

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


class InternalError(TestFrameworkError):
    """An exception outside this tree escaped the engine: a bug of ours, never the user's. The
    entry points write its traceback to `log_path` and say so in one line."""

    def __init__(self, message: str, log_path: Path | None) -> None:
        super().__init__(message)
        self.log_path = log_path


class StoreError(TestFrameworkError):
    """The results store could not be read or written; callers warn and go on."""


def collection_failure(returncode: int | None, output: str) -> TestFrameworkError:
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    if returncode == ExitCode.USAGE_ERROR:
        # pytest prints "ERROR: usage: ..." then "<prog>: error: <the actual reason>".
        reasons = [line.split(": error: ", 1)[1] for line in lines if ": error: " in line]
        errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR:")]
        detail = (reasons or errors or lines or ["usage error"])[0]
        return UsageError(f"pytest rejected the arguments: {detail}")
    kept = [line.rstrip() for line in output.strip().splitlines() if line.strip()]
    tail = "\n".join(kept[-30:])  # indented as pytest printed it: a traceback stays readable
    # pytest's own status where it has one (an exception escaping pytest's start exits 1, as
    # Python does, an INTERNALERROR 3); anything else (a signal, no status) is the engine's 3.
    mirrored = returncode in (ExitCode.TESTS_FAILED, ExitCode.INTERRUPTED, ExitCode.INTERNAL_ERROR)
    return CollectionFailed(
        f"pytest could not collect the suite (exit status {returncode}):\n{tail}",
        exit_code=ExitCode(returncode)
        if mirrored and returncode is not None
        else ExitCode.INTERNAL_ERROR,
    )
