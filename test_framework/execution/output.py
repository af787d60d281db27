"""What a worker wrote: the bounded tail kept for crash reports. Standard library only (the
prestart path reads it before the engine's packages are imported)."""

from __future__ import annotations

import os
from pathlib import Path

OUTPUT_TAIL_BYTES = 64 * 1024


def file_tail(path: Path, limit: int = OUTPUT_TAIL_BYTES) -> str:
    """The last `limit` bytes of a forked process's output file, as text ("" if unreadable)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - limit))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
