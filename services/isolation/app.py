from __future__ import annotations

from faststream import FastStream

from services.isolation import MIGRATIONS as MIGRATIONS
from services.isolation import handlers
from services.isolation.databases import ServiceDatabases
from services.isolation.settings import IsolationSettings
from shared.db import database_name
from shared.worker import Worker, build_worker, create_app, fail_step_on_dead_letter


def build(settings: IsolationSettings | None = None) -> Worker:
    settings = settings or IsolationSettings()
    worker = build_worker(
        "isolation", settings, on_dead_letter=fail_step_on_dead_letter("isolation")
    )
    databases = ServiceDatabases(
        settings.tenant_database_url or settings.database_url,
        database_name(settings.database_url),
        connections=max(2, settings.tenancies_at_once),
    )
    worker.closers.append(databases.close)
    handlers.register(worker, databases, settings)
    return worker


def create(settings: IsolationSettings | None = None) -> FastStream:
    return create_app(build(settings), MIGRATIONS)
