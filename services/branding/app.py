from __future__ import annotations

import uuid
from typing import Any

from faststream import FastStream

from services.branding import MIGRATIONS as MIGRATIONS
from services.branding import handlers
from services.branding.domains import DomainCheck, load_check
from services.branding.repository import Requests
from services.branding.service import Publishing
from services.branding.settings import BrandingSettings
from services.branding.theme_folder import ThemeFolder
from shared.assets import AssetStore
from shared.events import BrandChangeRequested, BrandRollbackRequested
from shared.messaging import DeadLetterHook
from shared.worker import Worker, build_worker, create_app, fail_step_on_dead_letter


def build(
    settings: BrandingSettings | None = None, check_domain: DomainCheck | None = None
) -> Worker:
    settings = settings or BrandingSettings()
    worker = build_worker("branding", settings, on_dead_letter=on_dead_letter)
    publishing = Publishing(
        assets=AssetStore(settings.assets_dir),
        themes=ThemeFolder(settings.themes_dir),
        check_domain=check_domain or load_check(settings.domain_check),
    )
    handlers.register(worker, publishing)
    return worker


def on_dead_letter(worker: Worker) -> DeadLetterHook:
    """A dead-lettered change after go-live refuses that change and leaves the live theme
    alone; only a tenancy still being provisioned fails its branding step."""
    fail_step = fail_step_on_dead_letter("branding")(worker)
    changes = {BrandChangeRequested.topic.event_type: "change"}
    changes[BrandRollbackRequested.topic.event_type] = "rollback"

    async def hook(envelope: dict[str, Any], reason: str) -> None:
        kind = changes.get(str(envelope.get("type")))
        if kind is None:
            await fail_step(envelope, reason)
            return
        try:
            request_id = str(uuid.UUID(str(envelope.get("id"))))
            tenancy_id = str(uuid.UUID(str(envelope.get("subject"))))
        except ValueError:
            return  # nothing identifies the request: the dead letter alone tells the story
        async with worker.uow.transaction() as tx:
            requests = Requests(tx.conn)
            await requests.record(request_id, tenancy_id, kind)
            await requests.resolve(request_id, tenancy_id, "refused", problems=[reason])

    return hook


def create(settings: BrandingSettings | None = None) -> FastStream:
    return create_app(build(settings), MIGRATIONS)
