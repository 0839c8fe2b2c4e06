from __future__ import annotations

from pathlib import Path

from faststream import FastStream

from services.branding import handlers
from services.branding.settings import BrandingSettings
from shared.assets import AssetStore
from shared.worker import Worker, build_worker, create_app, fail_step_on_dead_letter

MIGRATIONS = Path(__file__).parent / "migrations"


def build(settings: BrandingSettings | None = None) -> Worker:
    settings = settings or BrandingSettings()
    hook = fail_step_on_dead_letter("branding")
    worker = build_worker("branding", settings, on_dead_letter=hook)
    handlers.register(worker, AssetStore(settings.assets_dir))
    return worker


def create(settings: BrandingSettings | None = None) -> FastStream:
    return create_app(build(settings), MIGRATIONS)
