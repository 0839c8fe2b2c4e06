"""A bound on wrong tokens per client: a sliding window per client address, in this process.

A token has 256 random bits, so nobody guesses one; the bound is against scanners and clients
stuck on a revoked token making the database look up a hash as fast as they can send one. A
client that sent ``limit`` wrong tokens within ``window`` seconds is answered ``429`` for every
token (right or wrong, so the answer tells nothing) until the oldest of them is ``window`` old.
Each API replica counts on its own: a bound all the same, the limit times the replicas.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class TooManyFailures(Exception):
    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many wrong tokens; try again in {retry_after} seconds")


class FailedTokens:
    # Clients remembered at once, so a flood of addresses cannot grow the table without end;
    # the one whose last failure is oldest is forgotten first.
    MAX_CLIENTS = 10_000

    def __init__(
        self, limit: int, window_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window_seconds
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def check(self, client: str) -> None:
        """Raise :class:`TooManyFailures` if ``client`` may not try a token now."""
        recent = self._recent(client)
        if recent is not None and len(recent) >= self.limit:
            raise TooManyFailures(max(1, math.ceil(recent[0] + self.window - self.clock())))

    def failed(self, client: str) -> None:
        recent = self._recent(client)
        if recent is None:
            # Only the newest ``limit`` failures can decide when the client may try again.
            recent = self._failures[client] = deque(maxlen=self.limit)
        recent.append(self.clock())
        self._failures.move_to_end(client)
        while len(self._failures) > self.MAX_CLIENTS:
            self._failures.popitem(last=False)

    def _recent(self, client: str) -> deque[float] | None:
        found = self._failures.get(client)
        if found is None:
            return None
        since = self.clock() - self.window
        while found and found[0] <= since:
            found.popleft()
        if not found:
            del self._failures[client]
            return None
        return found
