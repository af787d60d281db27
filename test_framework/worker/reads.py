"""What a collection read besides Python source: the data files and folders test ids may come
from (a parametrize over a text file, over a folder's listing).

An audit hook (PEP 578) sees every `open`, `os.listdir` and `os.scandir` of the process; while
`recording` is on (during collection) it keeps the project-relative paths of the files opened for
reading and the folders listed. Python files are left out (the collection cache's fingerprint
covers them), and so is anything under a dot-folder (`.git`, the engine's own store, caches).
Audit hooks cannot be removed, so the hook returns at once while recording is off. Standard
library only.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from .deps import DependencyRecorder

_SKIPPED_SUFFIXES = (".py", ".pyc", ".pyi", ".so", ".pth")


class ReadRecorder:
    def __init__(self, rootdir: str) -> None:
        self.prefix = rootdir.rstrip(os.sep) + os.sep
        self.recording = False
        self.files: dict[str, None] = {}
        self.folders: dict[str, None] = {}
        # Also told of every file read, whenever it records a test file (worker/deps.py).
        self.dependencies: DependencyRecorder | None = None

    def install(self) -> None:
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        attributing = self.dependencies is not None and self.dependencies.current is not None
        if not (self.recording or attributing):
            return
        if event == "open":
            path, mode = args[0], args[1]
            if isinstance(mode, str) and any(flag in mode for flag in "wax+"):
                return
            self._keep(path, self.files)
        elif event in ("os.listdir", "os.scandir"):
            self._keep(args[0] if args else ".", self.folders)

    def _keep(self, path: object, into: dict[str, None]) -> None:
        if isinstance(path, int) or path is None:
            return  # a descriptor: no name to watch
        try:
            full = os.path.abspath(os.fsdecode(path))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return
        if not full.startswith(self.prefix) or full.endswith(_SKIPPED_SUFFIXES):
            return
        relative = full[len(self.prefix) :]
        parts = relative.split(os.sep)
        if any(part.startswith(".") or part == "__pycache__" for part in parts):
            return
        relative = relative.replace(os.sep, "/")
        if self.recording:
            into[relative] = None
        if self.dependencies is not None:
            self.dependencies.read(relative if into is self.files else f"{relative}/")

    def read(self) -> tuple[str, ...]:
        """Files, then folders with a trailing slash, in first-seen order."""
        return (*self.files, *(f"{folder}/" for folder in self.folders if folder))
