"""structlog, configured once: key-value lines on a terminal, JSON otherwise or on request; and
the error log where an engine bug's traceback goes.

The engine's own log goes to stderr and is quiet by default (warnings); the console reporter owns
stdout. Run and shard ids are bound in context, so every line of a run can be grepped together.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import structlog


def configure_logging(
    *,
    log_format: str | None,
    verbose: int,
    debug: bool,
    stream: TextIO | None = None,
    level: int | None = None,
) -> None:
    out = stream or sys.stderr
    fmt = log_format or ("console" if out.isatty() else "json")
    # -v is pytest's one line per test; the engine's own log joins at -vv.
    if level is None:
        level = logging.DEBUG if debug or verbose >= 2 else logging.WARNING
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


INTERNAL_ERROR_LOG = "internal-errors.log"
ENGINE_LOG = "engine.log"


@contextlib.contextmanager
def api_logging(folder: Path) -> Iterator[None]:
    """The Python API's log: the engine's lines go to `<store folder>/engine.log` (JSON, info
    and up) for the run, never to the host program's stdout; afterwards structlog is as the
    host had it. A host that configured structlog itself keeps its configuration."""
    if structlog.is_configured():
        yield
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle: TextIO = (folder / ENGINE_LOG).open("a", encoding="utf-8")
    except OSError:
        handle = open(os.devnull, "w")  # noqa: SIM115 - closed below
    with handle:
        configure_logging(
            log_format="json", verbose=0, debug=False, stream=handle, level=logging.INFO
        )
        try:
            yield
        finally:
            structlog.reset_defaults()


def log_internal_error(error: BaseException, folder: Path | None) -> Path | None:
    """Append an engine bug's traceback to the engine's error log (`folder`, the store's
    folder, else the temporary directory) and return where it went; None if nowhere could be
    written. The console gets one line, never the traceback."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    for candidate in (folder, Path(tempfile.gettempdir())):
        if candidate is None:
            continue
        path = candidate / INTERNAL_ERROR_LOG
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as handle:
                handle.write(f"--- {stamp} test_framework internal error\n{text}\n")
        except OSError:
            continue
        return path
    return None


def internal_error_line(error: BaseException, log_path: Path | None) -> str:
    where = f"the traceback is in {log_path}" if log_path else "no log could be written"
    return (
        f"internal error: {type(error).__name__}: {error} -- this is a bug in test_framework, "
        f"not in your tests; {where} (please include it in a bug report)"
    )
