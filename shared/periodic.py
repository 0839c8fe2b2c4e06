"""Work that is cheaper done together: a loop that flushes what piled up, and once more on stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


async def flush_every(interval_seconds: float, flush: Callable[[], Awaitable[None]]) -> None:
    """Call ``flush`` every ``interval_seconds`` until cancelled, then once more, if it can."""
    try:
        while True:
            await asyncio.sleep(interval_seconds)
            await flush()
    finally:
        # Stopping: what piled up since the last round is flushed too, or left for the next
        # process to repeat (a redelivered event, a republished row), never lost.
        with contextlib.suppress(Exception):
            await asyncio.shield(flush())
