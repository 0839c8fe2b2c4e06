from __future__ import annotations

from functools import cache
from typing import Any

from faststream import FastStream

from services.onboarding import MIGRATIONS as MIGRATIONS
from services.onboarding import handlers, service
from services.onboarding.councils import CouncilRegister
from services.onboarding.redrive import run_redrive
from services.onboarding.retirement_service import run_retirements
from services.onboarding.settings import OnboardingSettings
from services.onboarding.vesting_day import run_vesting_days
from shared import audit, metrics
from shared.health import CHECK_TIMEOUT
from shared.messaging import DeadLetterHook
from shared.worker import Worker, build_worker, create_app


def build(settings: OnboardingSettings | None = None) -> Worker:
    settings = settings or OnboardingSettings()
    worker = build_worker("onboarding", settings, on_dead_letter=fail_tenancy_on_dead_letter)
    worker.schemas["audit"] = audit.MIGRATIONS  # every lifecycle change is in the audit trail
    # Only the owner of onboarding.tenancies reads it, and only it sees tenancies activate.
    metrics.enable_onboarding_metrics()

    async def tenancies() -> None:
        await metrics.refresh_tenancies(worker.pool, CHECK_TIMEOUT)

    worker.metrics_refreshers.append(tenancies)
    csv_path = settings.councils_csv
    handlers.register(worker, cache(lambda: CouncilRegister.from_csv(csv_path)))
    worker.background.append(
        lambda uow: run_redrive(uow, settings.redrive_after_seconds, settings.redrive_max_attempts)
    )
    if settings.reorganise_automatically:
        worker.background.append(
            lambda uow: run_vesting_days(uow, csv_path, settings.reorganise_check_seconds)
        )
    if settings.reorganise_retire_after_days:
        worker.background.append(
            lambda uow: run_retirements(
                uow, settings.reorganise_retire_after_days, settings.reorganise_check_seconds
            )
        )
    return worker


def create(settings: OnboardingSettings | None = None) -> FastStream:
    settings = settings or OnboardingSettings()
    # Fail at start, with directions, rather than on the first request.
    CouncilRegister.from_csv(settings.councils_csv)
    return create_app(build(settings), MIGRATIONS)


def fail_tenancy_on_dead_letter(worker: Worker) -> DeadLetterHook:
    async def on_dead_letter(envelope: dict[str, Any], reason: str) -> None:
        subject = str(envelope.get("subject", ""))
        async with worker.uow.transaction() as tx:
            await service.fail_if_known(tx, subject, f"dead-lettered: {reason}")

    return on_dead_letter
