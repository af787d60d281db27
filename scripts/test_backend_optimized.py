#!/usr/bin/env python
"""Run a project's tests by category and optimization profile.

    python scripts/test_backend_optimized.py --category unit --optimization ultra_fast

The same options as `python -m test_framework run`; see `--help`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Runnable from a checkout without installing: the package sits next to this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from test_framework.daemon.client import resident_exit_code  # standard library only

PROG = "test_backend_optimized.py"

if __name__ == "__main__":
    code = resident_exit_code(sys.argv[1:], PROG)
    if code is None:
        from test_framework.cli import main

        code = main(prog=PROG)
    sys.exit(code)
