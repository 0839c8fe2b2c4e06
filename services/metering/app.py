from __future__ import annotations

from pathlib import Path

from faststream import FastStream

from services.metering import handlers
from services.metering.settings import MeteringSettings
from shared.worker import Worker, build_worker, create_app, fail_step_on_dead_letter

MIGRATIONS = Path(__file__).parent / "migrations"


def build(settings: MeteringSettings | None = None) -> Worker:
    worker = build_worker(
        "metering",
        settings or MeteringSettings(),
        on_dead_letter=fail_step_on_dead_letter("metering"),
    )
    handlers.register(worker)
    return worker


def create(settings: MeteringSettings | None = None) -> FastStream:
    return create_app(build(settings), MIGRATIONS)
