"""`tenancy credentials`: a tenancy's connection string, and rotation (issue 3, item 2)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this feature's commands to the ``tenancy`` application."""
