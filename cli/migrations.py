"""`tenancy migrate`: roll a service's new migrations out to every tenancy (issue 3, item 3)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this feature's commands to the ``tenancy`` application."""
