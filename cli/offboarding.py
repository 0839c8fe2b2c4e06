"""`tenancy offboard`: a council leaves a service and takes its data (issue 3, item 4)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this feature's commands to the ``tenancy`` application."""
