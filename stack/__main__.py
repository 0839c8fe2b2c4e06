"""``python -m stack``: run the whole system locally (see :mod:`stack.launcher`)."""

import sys

from stack.launcher import main

if __name__ == "__main__":
    sys.exit(main())
