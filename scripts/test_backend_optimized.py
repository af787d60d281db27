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

from test_framework.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="test_backend_optimized.py"))
