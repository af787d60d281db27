"""Starting the engine on a fixture suite through its command line, for the end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SUITES = Path(__file__).resolve().parent.parent / "fixtures" / "suites"


def engine_command(suite: str, cache_dir: Path, *args: str) -> list[str]:
    """`python -m test_framework` on a fixture suite with a private store."""
    return [
        sys.executable,
        "-m",
        "test_framework",
        "--project-root",
        str(SUITES / suite),
        "--cache-dir",
        str(cache_dir),
        *args,
    ]


def run_suite(
    suite: str, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run the engine on `suite` with a private store; return the process and its JSON report."""
    report = tmp_path / "report.json"
    report.unlink(missing_ok=True)
    done = subprocess.run(
        engine_command(suite, tmp_path / "cache", "--report", str(report), *args),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    document = json.loads(report.read_text(encoding="utf-8")) if report.exists() else {}
    return done, document
