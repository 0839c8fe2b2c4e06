"""The service's application: the SDK's client opened for its lifetime, and the pages."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.headers import SecurityHeaders
from reference.missed_bins import pages
from reference.missed_bins.routing import TenancyRouting
from reference.missed_bins.settings import MissedBinsSettings
from shared import govuk_frontend
from shared.logging import get_logger
from tenancy_sdk import Tenancy, TenancyClient

log = get_logger(__name__)


def build(settings: MissedBinsSettings, client: TenancyClient | None = None) -> FastAPI:
    tenancy = client or TenancyClient(settings)

    @tenancy.on_arrival
    async def arrived(found: Tenancy) -> None:
        log.info("council arrived", tenancy_id=found.id, council=found.council)

    @tenancy.on_departure
    async def left(found: Tenancy) -> None:
        log.info("council left", tenancy_id=found.id, council=found.council)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with tenancy:
            url = f"http://{settings.missed_bins_host}:{settings.missed_bins_port}"
            log.info("missed bins ready", url=url, councils=len(tenancy.tenancies()))
            yield

    app = FastAPI(title=pages.SERVICE_NAME, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.tenancy = tenancy
    app.include_router(pages.router)
    app.include_router(pages.council)
    govuk_frontend.mount(app)
    app.mount("/static", StaticFiles(directory=pages.HERE / "static"), name="static")
    app.add_middleware(TenancyRouting, client=tenancy)
    app.add_middleware(SecurityHeaders)
    return app
