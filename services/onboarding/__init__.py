"""The onboarding worker. Its schema's migrations are named here, apart from the worker (see
``app``), so the CLI can apply them without importing FastStream."""

from pathlib import Path

MIGRATIONS = Path(__file__).parent / "migrations"
