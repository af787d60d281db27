"""Make the worker plugin importable in workers even when the engine runs from a checkout.

Installed (pip install / -e), the package is on the interpreter's default path and nothing is
added. Run as `python scripts/...` from a checkout, it is not; then a scratch folder holding only a
link to the package goes on PYTHONPATH, so the project's own `tests`/`scripts` packages are never
shadowed by ours.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import test_framework

_PACKAGE_DIR = Path(test_framework.__file__).resolve().parent


def importable_by_default(cwd: str) -> bool:
    """Installed (a wheel or an editable install) means importable in a fresh interpreter; only a
    bare checkout needs the probe (a subprocess, ~50 ms). Both answers are kept for the life of
    the process: a resident process, which asks on every run, leaves when the installed
    packages or its own code change."""
    return _installed() or _probe(cwd, os.environ.get("PYTHONPATH"))


@functools.cache
def _installed() -> bool:
    """The engine is an installed distribution (reading its RECORD costs ~5 ms)."""
    try:
        from importlib.metadata import distribution

        files = distribution("test_framework").files or ()
    except Exception:
        files = ()
    return any(str(f).endswith((".pth", "__init__.py")) for f in files)


@functools.cache
def _probe(cwd: str, pythonpath: str | None) -> bool:
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import test_framework, sys; sys.stdout.write(test_framework.__file__)",
        ],
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | _pythonpath_only(),
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.returncode == 0 and Path(probe.stdout).resolve().parent == _PACKAGE_DIR


def _pythonpath_only() -> dict[str, str]:
    value = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": value} if value else {}


def worker_env(base: Mapping[str, str], cwd: str, scratch: Path) -> dict[str, str]:
    env = dict(base)
    if importable_by_default(cwd):
        return env
    link_dir = scratch / "plugin-path"
    link_dir.mkdir(exist_ok=True)
    link = link_dir / "test_framework"
    if not link.exists():
        link.symlink_to(_PACKAGE_DIR, target_is_directory=True)
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(link_dir) + (os.pathsep + existing if existing else "")
    return env
