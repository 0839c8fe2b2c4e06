"""What every ``tenancy`` command shares: consoles, errors, settings and the event loop."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from cli.context import Unreachable
from cli.settings import CliSettings
from shared.logging import configure_logging

out = Console()
err = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
TERMINAL_STATES = {"active", "failed", "offboarded", "reorganised"}
Answer = TypeVar("Answer")


async def poll(
    ask: Callable[[], Awaitable[Answer]], done: Callable[[Answer], bool], wait: float
) -> Answer:
    """Ask until the answer is done or ``wait`` seconds have passed; the last answer. The
    workers answer through PostgreSQL, so following a request is asking it again."""
    deadline = time.monotonic() + wait
    while True:
        answer = await ask()
        if done(answer) or time.monotonic() >= deadline:
            return answer
        await asyncio.sleep(0.1)


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def settings() -> CliSettings:
    configure_logging("cli", "WARNING", "console")
    return CliSettings()


def run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except Unreachable as error:
        raise fail(str(error)) from None


def parse_tenancy_id(value: str) -> str:
    """A tenancy id from the command line, canonical, or a clear refusal."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise fail(f"tenancy id: {value!r} is not a tenancy id (a UUID)") from None
