"""Argument types and the parser every command of the command line shares.

A mistake of the user's must be one line and exit 4, never argparse's exit 2 and usage dump:
`CommandParser` turns argparse's errors into `UsageError`, and the types say what was expected.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NoReturn

from .errors import UsageError


class CommandParser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations: `--co` is pytest's, never a prefix of one of ours.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def add_project_options(parser: argparse.ArgumentParser, project_help: str) -> None:
    """`--project-root` and `--cache-dir`: which project, and where its results store lives."""
    parser.add_argument(
        "--project-root",
        type=Path,
        metavar="DIR",
        help=f"{project_help} (default: found as pytest finds its rootdir: the nearest folder "
        "up from here, or from the path arguments, with pytest's configuration)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="where the results store lives, relative to the current folder (default: "
        "<project>/.test_framework)",
    )


def positive_int(text: str) -> int:
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds, got {text}")
    return value


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def ratio_above_one(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 1.5, got {text!r}") from None
    if not value > 1:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be more than 1 (2 = twice as long), got {text}")
    return value
