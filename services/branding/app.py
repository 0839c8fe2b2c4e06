from __future__ import annotations

from pathlib import Path

from faststream import FastStream

from services.branding import handlers
from services.branding.settings import BrandingSettings
from shared.worker import Worker, build_worker, create_app, fail_step_on_dead_letter

MIGRATIONS = Path(__file__).parent / "migrations"


def build(settings: BrandingSettings | None = None) -> Worker:
    worker = build_worker(
        "branding",
        settings or BrandingSettings(),
        on_dead_letter=fail_step_on_dead_letter("branding"),
    )
    handlers.register(worker)
    return worker


def create(settings: BrandingSettings | None = None) -> FastStream:
    return create_app(build(settings), MIGRATIONS)
