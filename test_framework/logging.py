"""structlog, configured once: key-value lines on a terminal, JSON otherwise or on request.

The engine's own log goes to stderr and is quiet by default (warnings); the console reporter owns
stdout. Run and shard ids are bound in context, so every line of a run can be grepped together.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def configure_logging(
    *, log_format: str | None, verbose: int, debug: bool, stream: TextIO | None = None
) -> None:
    out = stream or sys.stderr
    fmt = log_format or ("console" if out.isatty() else "json")
    level = logging.DEBUG if debug or verbose >= 2 else logging.INFO if verbose else logging.WARNING
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
