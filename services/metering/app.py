from __future__ import annotations

import gc
from datetime import timedelta

from faststream import FastStream

from services.metering import MIGRATIONS as MIGRATIONS
from services.metering import handlers
from services.metering.schedule import run_schedule
from services.metering.settings import MeteringSettings
from shared import audit
from shared.worker import Worker, build_worker, create_app, fail_step_on_dead_letter

# Allocations between two collections of the youngest objects; Python's default is 700.
GC_THRESHOLD = 7_000


def build(settings: MeteringSettings | None = None) -> Worker:
    settings = settings or MeteringSettings()
    worker = build_worker("metering", settings, on_dead_letter=fail_step_on_dead_letter("metering"))
    worker.schemas["audit"] = audit.MIGRATIONS  # a reorganisation's billing is in the audit trail
    handlers.register(worker, settings)
    # Counting allocates a few objects per event, and Python's cycle collector, run every few
    # hundred allocations, kept scanning everything the imports had made: a quarter of the
    # time of a batch. What exists by now lives as long as the process; frozen, it is never
    # scanned again, and collections run a tenth as often.
    gc.freeze()
    _, *older = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, *older)
    if settings.billing_auto_close:
        delay = timedelta(hours=settings.billing_close_delay_hours)
        worker.background.append(
            lambda uow: run_schedule(uow, settings.billing_schedule_seconds, delay)
        )
    return worker


def create(settings: MeteringSettings | None = None) -> FastStream:
    return create_app(build(settings), MIGRATIONS)
