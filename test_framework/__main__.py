"""`python -m test_framework ...`"""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m test_framework"))
