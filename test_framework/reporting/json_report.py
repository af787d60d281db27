"""The JSON report is the run document (run_document.py; schema in
`docs/run-document.schema.json`), and `ReportFiles` writes every file format from it at the run's
end: one document, many renderings.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from ..events import Event, RunFinished
from .run_document import SCHEMA_VERSION, RunDocument, RunDocumentBuilder

__all__ = ["SCHEMA_VERSION", "JsonReportBuilder", "ReportFiles", "render_json", "write_atomic"]

Renderer = Callable[[RunDocument], str]


def render_json(document: RunDocument) -> str:
    return json.dumps(document.to_json(), indent=1)


class ReportFiles:
    """Builds the run document from the events and, when the run finished, writes each
    `(path, renderer)` atomically and hands it to each sink (GitHub's annotations).
    `document` is then the run's document."""

    def __init__(
        self,
        outputs: Sequence[tuple[Path, Renderer]],
        sinks: Sequence[Callable[[RunDocument], None]] = (),
        builder: RunDocumentBuilder | None = None,
    ) -> None:
        """`builder`: the run's, fed by its own subscription (before this one); without it,
        this builds its own."""
        self.outputs = list(outputs)
        self.sinks = list(sinks)
        self.feeds_builder = builder is None
        self.builder = builder or RunDocumentBuilder()
        self.document: RunDocument | None = None
        self.written = False

    def __call__(self, event: Event) -> None:
        if self.feeds_builder:
            self.builder(event)
        if isinstance(event, RunFinished):
            self.document = self.builder.document(event.summary)
            for path, render in self.outputs:
                write_atomic(path, render(self.document))
            for sink in self.sinks:
                sink(self.document)
            self.written = True


class JsonReportBuilder(ReportFiles):
    def __init__(self, path: Path) -> None:
        super().__init__([(path, render_json)])


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_atomic(path: Path, text: str) -> None:
    """Write next to the target and rename, so a reader never sees half a report."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a report is for others to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
