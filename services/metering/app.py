from __future__ import annotations

from datetime import timedelta

from faststream import FastStream

from services.metering import MIGRATIONS as MIGRATIONS
from services.metering import handlers
from services.metering.schedule import run_schedule
from services.metering.settings import MeteringSettings
from shared.worker import Worker, build_worker, create_app, fail_step_on_dead_letter


def build(settings: MeteringSettings | None = None) -> Worker:
    settings = settings or MeteringSettings()
    worker = build_worker("metering", settings, on_dead_letter=fail_step_on_dead_letter("metering"))
    handlers.register(worker, settings)
    if settings.billing_auto_close:
        delay = timedelta(hours=settings.billing_close_delay_hours)
        worker.background.append(
            lambda uow: run_schedule(uow, settings.billing_schedule_seconds, delay)
        )
    return worker


def create(settings: MeteringSettings | None = None) -> FastStream:
    return create_app(build(settings), MIGRATIONS)
