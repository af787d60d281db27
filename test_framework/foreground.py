"""pytest options that need pytest itself, in one process on the user's terminal.

`--pdb` and `--trace` stop at a prompt that only a process holding the terminal can show; `-s`
(`--capture=no`) writes the tests' output straight to it; `--collect-only` and pytest's
informational options (`--fixtures`, `--markers`, `--setup-plan`) print what pytest prints.
Run in parallel workers, each would be lost or wrong, so the engine says so on one line and
runs plain pytest over the same selection (each category query in turn) in the foreground,
with the terminal, and exits as it does. Nothing is stored: no test ran in a worker.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from typing import TextIO

from .discovery import queries_for, query_args
from .exit_codes import ExitCode
from .request import RunSettings

FOREGROUND_OPTIONS = (
    "--pdb",
    "--trace",
    "-s",
    "--capture=no",
    "--co",
    "--collect-only",
    "--collectonly",
    "--fixtures",
    "--funcargs",
    "--fixtures-per-test",
    "--markers",
    "--setup-plan",
    "--setup-only",
)


# pytest's short options that take a value: in a cluster (`-rs`, `-kslow`) the rest is it.
_SHORT_WITH_VALUE = frozenset("kmcpoWrn")


def foreground_option(pytest_args: Sequence[str]) -> str | None:
    """The first of the user's pytest options that needs pytest in the foreground; `-s` also
    inside a cluster of short options (`-sv`, `-xs`)."""
    for arg in pytest_args:
        if arg in FOREGROUND_OPTIONS:
            return arg
        if arg.startswith("--capture") and arg.split("=", 1)[-1] == "no":
            return arg
        if _clusters_s(arg):
            return arg
    args = list(pytest_args)
    for index, arg in enumerate(args[:-1]):
        if arg == "--capture" and args[index + 1] == "no":
            return "--capture no"
    return None


def run_in_foreground(settings: RunSettings, option: str, err: TextIO) -> int:
    """Plain pytest over the run's selection, with this terminal; its exit status (the most
    severe of the queries', as pytest ranks them: a failure beats no tests)."""
    queries = queries_for(settings.categories, settings.project_root)
    verbosity = ["-" + "v" * settings.verbose] if settings.verbose else []  # the user's -v
    commands = [
        [sys.executable, "-m", "pytest", *verbosity, *query_args(q, settings.pytest_args)]
        for q in queries
    ]
    shown = " && ".join(" ".join(c[1:]) for c in commands)
    print(
        f"test_framework: {option} needs pytest in one process on this terminal: running "
        f"`{shown}` in the foreground (not in parallel; no results stored)",
        file=err,
        flush=True,
    )
    codes = [
        subprocess.run(command, cwd=settings.project_root, check=False).returncode
        for command in commands
    ]
    return _most_severe(codes)


def _clusters_s(arg: str) -> bool:
    if not arg.startswith("-") or arg.startswith("--"):
        return False
    for letter in arg[1:]:
        if letter == "s":
            return True
        if letter in _SHORT_WITH_VALUE:
            return False
    return False


def _most_severe(codes: Sequence[int]) -> int:
    order = (
        ExitCode.INTERRUPTED,
        ExitCode.INTERNAL_ERROR,
        ExitCode.USAGE_ERROR,
        ExitCode.TESTS_FAILED,
        ExitCode.OK,
        ExitCode.NO_TESTS_COLLECTED,
    )
    for wanted in order:
        if int(wanted) in codes:
            return int(wanted)
    return max(codes, default=int(ExitCode.NO_TESTS_COLLECTED))
