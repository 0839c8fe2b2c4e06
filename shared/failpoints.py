"""Named points where a test can make a worker die, to prove what survives a crash.

``TENANCY_FAILPOINTS=isolation.after-commit`` makes the isolation worker exit abruptly right
after its database transaction commits and before the offset is committed or the result
published: the worst moment for a crash. Unset in production, where this costs one dict lookup.
"""

from __future__ import annotations

import os
import sys

_armed = frozenset(filter(None, os.environ.get("TENANCY_FAILPOINTS", "").split(",")))


def failpoint(name: str) -> None:
    if name in _armed:
        sys.stderr.write(f"failpoint {name}: exiting abruptly\n")
        sys.stderr.flush()
        os._exit(137)
