"""The operator API: the CLI's powers over HTTP, for people who hold a token.

Like the CLI it only stores requests and publishes events, and reads state; the workers do the
work. ``python -m api`` serves it; ``make run`` starts it beside the workers.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from faststream.kafka import KafkaBroker

from api import docs, problems, tokens
from api.headers import SecurityHeaders
from api.platform import Platform
from api.routes import audit as audit_routes
from api.routes import billing, catalogue, credentials, reorganisations, tenancies, usage
from api.settings import ApiSettings
from api.throttle import FailedTokens
from api.web import install as install_web
from services.branding.app import MIGRATIONS as BRANDING
from services.metering.app import MIGRATIONS as METERING
from services.onboarding.app import MIGRATIONS as ONBOARDING
from services.onboarding.councils import CouncilRegister
from shared import audit, db, health
from shared.logging import configure_logging, get_logger
from shared.messaging import create_broker
from shared.tracing import configure_tracing, shutdown_tracing

log = get_logger(__name__)
# The API writes requests into these workers' outboxes and reads their state.
SCHEMAS = {
    "onboarding": ONBOARDING,
    "branding": BRANDING,
    "metering": METERING,
    "api": tokens.MIGRATIONS,
    "audit": audit.MIGRATIONS,
}


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    configure_logging("api", settings.log_level, settings.log_format)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        councils = CouncilRegister.from_csv(settings.councils_csv)
        await db.ensure_database(settings.database_url)
        pool = await db.create_pool(settings.database_url)
        broker = create_broker(settings, client_id="tenancy-api")
        configure_tracing("api", settings.otel_exporter_otlp_endpoint, settings.spans_file)
        try:
            for schema, migrations in SCHEMAS.items():
                await db.migrate(pool, schema, migrations)
            await broker.connect()
            failed_tokens = FailedTokens(
                settings.auth_failure_limit, settings.auth_failure_window_seconds
            )
            app.state.platform = Platform(settings, pool, broker, councils, failed_tokens)
            log.info("api ready", url=f"http://{settings.api_host}:{settings.api_port}")
            yield
        finally:
            await broker.stop()
            await pool.close()
            shutdown_tracing()

    app = FastAPI(
        title="Tenancy operator API",
        version="1",
        description=(
            "Join councils to shared services, follow them, bill them and audit it all. "
            "Send a token as `Authorization: Bearer <token>` (`tenancy tokens create`)."
        ),
        lifespan=lifespan,
        docs_url=None,  # docs.install serves it without a CDN
        redoc_url=None,
    )
    app.add_middleware(SecurityHeaders)
    problems.install(app, usage.DOCUMENTED_MODELS)
    routers = (
        catalogue.router,
        tenancies.router,
        billing.router,
        audit_routes.router,
        credentials.router,
        usage.router,
        reorganisations.router,
    )
    for router in routers:
        app.include_router(router)
    docs.install(app)
    # For orchestrators and Prometheus, without a token and outside the OpenAPI document.
    for route in health.routes(_probes(app)):
        app.add_route(route.path, route.endpoint, methods=["GET"], include_in_schema=False)
    # Everything so far is the API's; any other address is the web pages'.
    routes = [*app.routes, *(route for router in routers for route in router.routes)]
    roots = {str(getattr(route, "path", "")).lstrip("/").partition("/")[0] for route in routes}
    install_web(app, api_roots=frozenset(roots - {""}))
    return app


def _probes(app: FastAPI) -> health.Probes:
    def platform() -> Platform | None:
        return getattr(app.state, "platform", None)

    def pool() -> db.Pool | None:
        found = platform()
        return found.pool if found is not None else None

    def broker() -> KafkaBroker | None:
        found = platform()
        return found.broker if found is not None else None

    return health.Probes(pool=pool, broker=broker)
