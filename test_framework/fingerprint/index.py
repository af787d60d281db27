"""Content digests of project files behind a stat shortcut, as git's index keeps them.

Deciding that a test's inputs did not change must cost a `stat` per file when nothing changed,
and must never be fooled. A file whose size, mtime (nanoseconds) and inode are as recorded has
the recorded digest; any other is read and hashed (SHA-256). An entry recorded while its file
could still change within the same mtime tick ("racily clean", in git's words: its mtime is
not safely older than the moment the index was taken) is never trusted: its file is hashed
again, so an edit made in the same tick as the last run is still seen.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

MISSING = "missing"
# Filesystems with coarse timestamps (FAT: 2 s) must not make an edit invisible.
RACY_WINDOW_NS = 2_000_000_000


@dataclass(frozen=True, slots=True)
class Entry:
    mtime_ns: int
    size: int
    inode: int
    digest: str


class FileIndex:
    """Digests of files under `root` by project-relative path ("/"-separated)."""

    def __init__(
        self,
        root: Path,
        entries: Mapping[str, Entry] | None = None,
        *,
        indexed_at_ns: int = 0,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.root = root
        self.entries: dict[str, Entry] = dict(entries or {})
        self.indexed_at_ns = indexed_at_ns
        self.clock = clock
        self.hashed = 0  # files read and hashed by this index (a measure of its cost)

    def digest(self, path: str) -> str:
        """The file's content digest (a folder's, ending in "/": its sorted listing), or
        `MISSING`; read only when its stat moved or its entry is racily clean."""
        full = self.root / path
        try:
            stat = full.stat()
        except OSError:
            self.entries.pop(path, None)
            return MISSING
        known = self.entries.get(path)
        if known is not None and self._trusted(known, stat):
            return known.digest
        try:
            if path.endswith("/"):
                listing = "\0".join(sorted(os.listdir(full))).encode("utf-8", "surrogateescape")
                digest = hashlib.sha256(listing).hexdigest()
            else:
                digest = hashlib.sha256(full.read_bytes()).hexdigest()
        except OSError:
            return MISSING
        self.hashed += 1
        self.entries[path] = Entry(stat.st_mtime_ns, stat.st_size, stat.st_ino, digest)
        return digest

    def digests(self, paths: Iterable[str]) -> dict[str, str]:
        return {path: self.digest(path) for path in paths}

    def changed(self, recorded: Mapping[str, str]) -> list[str]:
        """The paths whose content differs from `recorded` (path -> digest), in order."""
        return [path for path, digest in recorded.items() if self.digest(path) != digest]

    def snapshot(self) -> tuple[int, dict[str, Entry]]:
        """What to persist: the moment taken (entries modified after it minus the racy window
        are hashed again next time) and the entries."""
        return self.clock(), dict(self.entries)

    def _trusted(self, known: Entry, stat: os.stat_result) -> bool:
        if (stat.st_mtime_ns, stat.st_size, stat.st_ino) != (
            known.mtime_ns,
            known.size,
            known.inode,
        ):
            return False
        return known.mtime_ns < self.indexed_at_ns - RACY_WINDOW_NS
