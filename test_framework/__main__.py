"""`python -m test_framework ...` (and the `test-framework` command): a resident process
serves the run when there is one to serve it (daemon/client.py, standard library only); else
the engine runs here."""

import sys

from .daemon.client import resident_exit_code

PROG = "python -m test_framework"


def main(prog: str = PROG) -> int:
    code = resident_exit_code(sys.argv[1:], prog)
    if code is None:
        from .cli import main as engine_main

        code = engine_main(prog=prog)
    return code


def console_main() -> int:
    return main("test-framework")


if __name__ == "__main__":
    sys.exit(main())
