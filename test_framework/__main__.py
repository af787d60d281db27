"""`python -m test_framework ...`: a resident process serves the run when there is one to
serve it (daemon/client.py, standard library only); else the engine runs here."""

import sys

from .daemon.client import resident_exit_code

PROG = "python -m test_framework"

if __name__ == "__main__":
    code = resident_exit_code(sys.argv[1:], PROG)
    if code is None:
        from .cli import main

        code = main(prog=PROG)
    sys.exit(code)
